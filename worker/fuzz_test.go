package worker_test

// Decode tried widely (issue #7). The seed corpus (every file of
// testdata/valid and testdata/invalid, plus the bodies below) runs with
// every `go test`; TestDecodeRandomMutations adds a short, deterministic
// mutation run. For a longer search:
//
//	go test -run '^$' -fuzz=FuzzDecode -fuzztime=5m ./worker/

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/mautic-sync/mautic-sync/worker"
)

// decodeSeeds are the testdata files and a few hand-made edge cases.
func decodeSeeds(t testing.TB) [][]byte {
	t.Helper()
	files, _ := filepath.Glob("testdata/valid/*")
	invalid, _ := filepath.Glob("testdata/invalid/*")
	files = append(files, invalid...)
	if len(files) < 16 {
		t.Fatalf("found %d testdata files, want the valid and invalid examples", len(files))
	}
	var seeds [][]byte
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		seeds = append(seeds, b)
	}
	for _, s := range []string{
		``, `null`, `{}`, `[]`, `"x"`, `{"specversion":"1.0"}`,
		`{"specversion":"1.0","id":"a","source":"/s","type":"contact.upsert","time":"2026-11-25T10:00:00Z","data":{"email":"a@b","fields":{"n":1e999}}}`,
		`{"specversion":"1.0","id":"a","source":"/s","type":"contact.points.add","time":"2026-11-25T10:00:00Z","data":{"mautic_id":2147483647,"delta":-2147483648}}`,
		`{"specversion":"1.0","id":"a","source":"/s","type":"contact.dnc.add","time":"2026-11-25T10:00:00Z","data":{"email":" A@B.C ","reason":1,"channel":"sms"}}`,
		`{"specversion":"1.0","id":"a","id":"b","source":"/s","type":"contact.delete","time":"2026-11-25T10:00:00Z","data":{"email":"x@y","email":null,"mautic_id":3}}`,
		`{"specversion":"1.0","id":"\u0000","source":"/s","type":"contact.segment.remove","time":"2026-11-25T10:00:00+02:00","data":{"email":"x@y","segment_id":1.0}}`,
		`{"specversion":"1.0","id":"a","source":"/s","type":"contact.upsert","time":"2026-11-25T10:00:00Z","data":{"email":"a@b","fields":{"email":"A@B"},"tags":["-x","y"],"overwrite_with_blank":true}} `,
	} {
		seeds = append(seeds, []byte(s))
	}
	return seeds
}

var knownTypes = map[string]bool{
	worker.TypeUpsert: true, worker.TypeDelete: true, worker.TypeSegmentAdd: true, worker.TypeSegmentRemove: true,
	worker.TypeDNCAdd: true, worker.TypeDNCRemove: true, worker.TypePointsAdd: true,
}

// decodeProblem decodes body and checks the contract's promises: either a
// valid event whose fields satisfy the contract, or an *InvalidEventError;
// the same answer twice. It returns what is wrong, or "". A panic is left
// to the caller.
func decodeProblem(body []byte) string {
	ev, err := worker.Decode(body)
	ev2, err2 := worker.Decode(body)
	if (err == nil) != (err2 == nil) || (err != nil && err.Error() != err2.Error()) {
		return fmt.Sprintf("Decode is not deterministic: %v / %v", err, err2)
	}
	if err != nil {
		var ie *worker.InvalidEventError
		if !errors.As(err, &ie) {
			return fmt.Sprintf("error %T %v, want *worker.InvalidEventError", err, err)
		}
		if ev != nil {
			return fmt.Sprintf("an event (%+v) with an error", ev)
		}
		if ie.Problem == "" || err.Error() == "" {
			return fmt.Sprintf("an error without a problem: %#v", ie)
		}
		return ""
	}
	if ev == nil {
		return "nil event and nil error"
	}
	if ev2.ID != ev.ID || ev2.Type != ev.Type || ev2.Identity() != ev.Identity() {
		return fmt.Sprintf("two decodings differ: %+v / %+v", ev, ev2)
	}
	if len(body) > worker.MaxEventSize || !utf8.Valid(body) {
		return fmt.Sprintf("accepted a body of %d bytes, valid UTF-8 %v", len(body), utf8.Valid(body))
	}
	if n := utf8.RuneCountInString(ev.ID); n < 1 || n > 200 {
		return fmt.Sprintf("id of %d characters accepted", n)
	}
	if !knownTypes[ev.Type] {
		return fmt.Sprintf("unknown type %q accepted", ev.Type)
	}
	if ev.Source == "" {
		return "empty source accepted"
	}
	if ev.EmailKey == "" && ev.MauticID <= 0 {
		return fmt.Sprintf("no identity: %+v", ev)
	}
	if ev.MauticID < 0 {
		return fmt.Sprintf("negative mautic_id %d", ev.MauticID)
	}
	if ev.Email != "" {
		at := strings.LastIndexByte(ev.Email, '@')
		if at <= 0 || at == len(ev.Email)-1 || ev.EmailKey != strings.ToLower(ev.Email) || strings.TrimSpace(ev.Email) != ev.Email {
			return fmt.Sprintf("email %q (key %q) accepted", ev.Email, ev.EmailKey)
		}
	}
	wantIdentity := "email:" + ev.EmailKey
	if ev.MauticID > 0 {
		wantIdentity = "id:" + itoa(ev.MauticID)
	}
	if ev.Identity() != wantIdentity {
		return fmt.Sprintf("identity %q, want %q", ev.Identity(), wantIdentity)
	}
	switch ev.Type {
	case worker.TypeSegmentAdd, worker.TypeSegmentRemove:
		if ev.SegmentID <= 0 {
			return fmt.Sprintf("segment id %d accepted", ev.SegmentID)
		}
	case worker.TypePointsAdd:
		if ev.Delta == 0 {
			return "zero delta accepted"
		}
	case worker.TypeDNCAdd, worker.TypeDNCRemove:
		if ev.Reason < 1 || ev.Reason > 3 || strings.TrimSpace(ev.Channel) == "" || strings.ContainsAny(ev.Channel, "/?#") {
			return fmt.Sprintf("DNC reason %d channel %q accepted", ev.Reason, ev.Channel)
		}
	case worker.TypeUpsert:
		for k, v := range ev.Fields {
			switch k {
			case "", "id", "tags", "doNotContact", "overwriteWithBlank":
				return fmt.Sprintf("reserved field key %q accepted", k)
			}
			switch v.(type) {
			case string, json.Number, bool, nil:
			default:
				return fmt.Sprintf("field %q has a %T value", k, v)
			}
		}
		for _, tag := range ev.Tags {
			if strings.TrimSpace(strings.TrimPrefix(tag, "-")) == "" || strings.Contains(tag, ",") {
				return fmt.Sprintf("tag %q accepted", tag)
			}
		}
	}
	return ""
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

func FuzzDecode(f *testing.F) {
	for _, s := range decodeSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if p := decodeProblem(body); p != "" {
			t.Fatal(p)
		}
	})
}

// TestDecodeRandomMutations is a short fuzz run inside every `go test`: a
// few thousand seeded mutations of the seeds (bytes flipped, inserted,
// deleted, JSON tokens spliced in) through the same checks as FuzzDecode.
func TestDecodeRandomMutations(t *testing.T) {
	seeds := decodeSeeds(t)
	r := rand.New(rand.NewPCG(7, 11))
	tokens := []string{`"`, `{`, `}`, `[`, `]`, `,`, `:`, `null`, `true`, `-0`, `1e400`, `99999999999999999999`, `"\u0000"`, `"\ud800"`, "\xff", `"contact.points.add"`, `"mautic_id":`, `"segment_id":`, `"delta":`, `"email":"a@b"`}
	for i := range 4000 {
		b := []byte(string(seeds[r.IntN(len(seeds))]))
		for range 1 + r.IntN(4) {
			pos := 0
			if len(b) > 0 {
				pos = r.IntN(len(b) + 1)
			}
			switch r.IntN(4) {
			case 0: // flip a byte
				if pos < len(b) {
					b[pos] = byte(r.IntN(256))
				}
			case 1: // delete a run
				end := min(len(b), pos+r.IntN(8))
				b = append(b[:pos], b[end:]...)
			default: // splice a token
				tok := tokens[r.IntN(len(tokens))]
				b = append(b[:pos], append([]byte(tok), b[pos:]...)...)
			}
		}
		if p := decodeSafely(b); p != "" {
			t.Fatalf("mutation %d: %s\nbody %q", i, p, b)
		}
	}
}

func decodeSafely(b []byte) (problem string) {
	defer func() {
		if p := recover(); p != nil {
			problem = fmt.Sprintf("panic: %v", p)
		}
	}()
	return decodeProblem(b)
}
