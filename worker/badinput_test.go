package worker_test

// Bad input through the real pipeline (issue #7): each body is either
// applied as the contract documents or dead-lettered as invalid_event with
// a reason naming what is wrong; never a crash, never a hang.

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mautic-sync/mautic-sync/queue/contract"
	"github.com/mautic-sync/mautic-sync/worker"
)

// envelope builds an event body around raw data, with extra raw top-level
// attributes.
func envelope(id, typ, data string, extra ...string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, `{"specversion":"1.0","id":%q,"source":"/bad-input","type":%q,"time":"2026-11-25T10:00:00Z"`, id, typ)
	for _, e := range extra {
		b.WriteString(",")
		b.WriteString(e)
	}
	b.WriteString(`,"data":`)
	b.WriteString(data)
	b.WriteString("}")
	return b.Bytes()
}

// padTo pads body to exactly size bytes with an unknown top-level
// attribute (allowed and ignored by the contract).
func padTo(id string, size int) []byte {
	base := envelope(id, worker.TypeUpsert, `{"email":"`+id+`@example.com","fields":{"city":"Big"}}`, `"padding":""`)
	pad := size - len(base)
	if pad < 0 {
		panic("size too small")
	}
	return envelope(id, worker.TypeUpsert, `{"email":"`+id+`@example.com","fields":{"city":"Big"}}`, `"padding":"`+strings.Repeat("x", pad)+`"`)
}

func nested(depth int) string {
	return strings.Repeat("[", depth) + strings.Repeat("]", depth)
}

// badInputCase is one body and what must become of it.
type badInputCase struct {
	name string
	body []byte
	// applied: the event takes effect (check, when set, looks at Mautic);
	// otherwise it is an invalid_event dead letter whose error contains
	// wantErr.
	applied bool
	wantErr string
	check   func(t *testing.T, f *faultHarness)
}

func badInputCases() []badInputCase {
	big := "123456789012345678901234567890"
	return []badInputCase{
		{name: "size exactly 1 MiB", body: padTo("size-at", worker.MaxEventSize), applied: true,
			check: func(t *testing.T, f *faultHarness) {
				if c := f.fake.ContactsByEmail("size-at@example.com"); len(c) != 1 || c[0].Fields["city"] != "Big" {
					t.Errorf("contact %+v", c)
				}
			}},
		{name: "size 1 MiB + 1 byte", body: padTo("size-over", worker.MaxEventSize+1), wantErr: "over the 1 MiB limit"},
		{name: "10000 nested arrays in a field", body: envelope("deep-field", worker.TypeUpsert, `{"email":"deep@example.com","fields":{"x":`+nested(10000)+`}}`), wantErr: "max depth"},
		{name: "9000 nested arrays in a field", body: envelope("deep-field2", worker.TypeUpsert, `{"email":"deep2@example.com","fields":{"x":`+nested(9000)+`}}`), wantErr: "data.fields.x: must be a string, number, boolean or null"},
		{name: "9000 nested arrays in an unknown attribute", body: envelope("deep-ext", worker.TypeUpsert, `{"email":"deep-ext@example.com","fields":{"city":"Deep"}}`, `"ext":`+nested(9000)), applied: true},
		{name: "100000 nested objects", body: []byte(strings.Repeat(`{"a":`, 100000) + "1" + strings.Repeat("}", 100000)), wantErr: "max depth"},
		{name: "invalid UTF-8 in a field", body: envelope("utf8", worker.TypeUpsert, "{\"email\":\"utf8@example.com\",\"fields\":{\"city\":\"Os\xfflo\"}}"), wantErr: "not valid UTF-8"},
		{name: "raw NUL byte in a string", body: envelope("nul-raw", worker.TypeUpsert, "{\"email\":\"nul@example.com\",\"fields\":{\"city\":\"Os\x00lo\"}}"), wantErr: "invalid character"},
		{name: "NUL byte after the object", body: append(envelope("nul-after", worker.TypeDelete, `{"email":"nul-after@example.com"}`), 0), wantErr: "not a JSON object"},
		{name: "escaped NUL in a field value", body: envelope("nul-escaped", worker.TypeUpsert, `{"email":"nul-esc@example.com","fields":{"city":"Os\u0000lo"}}`), applied: true,
			check: func(t *testing.T, f *faultHarness) {
				if c := f.fake.ContactsByEmail("nul-esc@example.com"); len(c) != 1 {
					t.Errorf("contact %+v", c)
				}
			}},
		{name: "number beyond int64 in a field", body: envelope("bigfield", worker.TypeUpsert, `{"email":"big@example.com","fields":{"note":`+big+`}}`), applied: true,
			check: func(t *testing.T, f *faultHarness) {
				for _, r := range f.fake.Requests() {
					if r.Path == "/api/contacts/batch/new" && bytes.Contains(r.Body, []byte("big@example.com")) {
						if !bytes.Contains(r.Body, []byte(`"note":`+big)) {
							t.Errorf("the number was not passed as written: %s", r.Body)
						}
						return
					}
				}
				t.Error("no upsert sent")
			}},
		{name: "number beyond int64 in segment_id", body: envelope("bigseg", worker.TypeSegmentAdd, `{"email":"bigseg@example.com","segment_id":`+big+`}`), wantErr: "data.segment_id: " + big + " is out of range"},
		{name: "number beyond int64 in delta", body: envelope("bigdelta", worker.TypePointsAdd, `{"email":"bigdelta@example.com","delta":-`+big+`}`), wantErr: "data.delta: -" + big + " is out of range"},
		{name: "exponent in mautic_id", body: envelope("expid", worker.TypeDelete, `{"mautic_id":1e400}`), wantErr: "data.mautic_id"},
		{name: "fraction in delta", body: envelope("fracdelta", worker.TypePointsAdd, `{"email":"frac@example.com","delta":1.5}`), wantErr: "data.delta: must be an integer"},
		{name: "duplicate keys: the last one counts", body: []byte(`{"specversion":"1.0","id":"dup","source":"/bad-input","type":"contact.delete","type":"contact.upsert","time":"2026-11-25T10:00:00Z","data":{"email":"first@example.com","email":"dup@example.com","fields":{"city":"A","city":"B"}}}`), applied: true,
			check: func(t *testing.T, f *faultHarness) {
				if c := f.fake.ContactsByEmail("dup@example.com"); len(c) != 1 || c[0].Fields["city"] != "B" {
					t.Errorf("dup@example.com: %+v, want one contact in city B", c)
				}
				if c := f.fake.ContactsByEmail("first@example.com"); len(c) != 0 {
					t.Errorf("the first duplicate key was used: %+v", c)
				}
			}},
		{name: "unknown attributes", body: envelope("unknown-attrs", worker.TypeUpsert, `{"email":"unknown@example.com","fields":{"city":"U"},"future_option":{"a":[1,2]}}`,
			`"traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"`, `"x_vendor":{"nested":[true,null]}`), applied: true},
		{name: "data is an array", body: envelope("data-array", worker.TypeDelete, `[{"email":"a@example.com"}]`), wantErr: "data: must be a JSON object"},
		{name: "data is a string", body: envelope("data-string", worker.TypeDelete, `"{\"email\":\"a@example.com\"}"`), wantErr: "data: must be a JSON object"},
		{name: "data is a number", body: envelope("data-number", worker.TypeDelete, `42`), wantErr: "data: must be a JSON object"},
		{name: "data is null", body: envelope("data-null", worker.TypeDelete, `null`), wantErr: "data: must be a JSON object"},
		{name: "fields is an array", body: envelope("fields-array", worker.TypeUpsert, `{"email":"fa@example.com","fields":["city"]}`), wantErr: "data.fields"},
		{name: "empty body", body: []byte{}, wantErr: "not a JSON object"},
		{name: "JSON array body", body: []byte(`[1,2,3]`), wantErr: "not a JSON object"},
	}
}

// TestBadInputThroughPipeline publishes every bad body of badInputCases
// to the real pipeline at once (the server's max_payload raised to 2 MiB,
// so that a body over the contract's 1 MiB reaches the worker at all) and
// checks each outcome, within a bound that a hang would break.
func TestBadInputThroughPipeline(t *testing.T) {
	f := newFaultHarness(t, faultConfig{maxPayload: 2 << 20})
	cases := badInputCases()
	seqOf := map[uint64]int{}
	for i, c := range cases {
		seqOf[f.publish("mautic.contacts.bad"+strconv.Itoa(i), c.body)] = i
	}
	w := f.start()
	f.waitAll(len(cases), 30*time.Second)
	results := map[uint64]resultMsg{}
	for _, r := range f.results() {
		results[r.StreamSeq] = r
	}
	dead := map[uint64]string{}
	for _, m := range f.deadLetters() {
		seq, _ := strconv.ParseUint(m.Header.Get(contract.HeaderStreamSeq), 10, 64)
		if m.Header.Get(contract.HeaderReason) != worker.ReasonInvalidEvent {
			t.Errorf("seq %d dead-lettered as %q, want invalid_event", seq, m.Header.Get(contract.HeaderReason))
		}
		if !bytes.Equal(m.Data, cases[seqOf[seq]].body) {
			t.Errorf("%s: the dead letter's body is not the input byte for byte", cases[seqOf[seq]].name)
		}
		dead[seq] = m.Header.Get(contract.HeaderError)
	}
	for _, seq := range slices.Sorted(maps.Keys(seqOf)) {
		c := cases[seqOf[seq]]
		t.Run(c.name, func(t *testing.T) {
			r, isResult := results[seq]
			why, isDead := dead[seq]
			switch {
			case c.applied && !isResult:
				t.Fatalf("dead-lettered (%s), want applied", why)
			case c.applied && r.Outcome != worker.OutcomeApplied:
				t.Fatalf("outcome %q, want applied", r.Outcome)
			case !c.applied && !isDead:
				t.Fatalf("result %+v, want an invalid_event dead letter", r.Result)
			case !c.applied && !strings.Contains(why, c.wantErr):
				t.Errorf("error %q, want it to contain %q", why, c.wantErr)
			}
			if c.check != nil {
				c.check(t, f)
			}
		})
	}
	if ok, why := w.Ready(); !ok {
		t.Errorf("worker not ready after bad input: %s", why)
	}
}

// TestBadInputAtSizeLimitWithDefaultMaxPayload: with NATS' default
// max_payload (1 MiB), a body of exactly 1 MiB can be published (the
// contract allows it), but its dead letter is the body plus headers. An
// invalid body at the limit must still end in an outcome.
func TestBadInputAtSizeLimitWithDefaultMaxPayload(t *testing.T) {
	f := newFaultHarness(t, faultConfig{})
	body := padTo("limit", worker.MaxEventSize)
	body = bytes.Replace(body, []byte(`2026-11-25T10:00:00Z`), []byte(`not-a-time-at-all!!!`), 1) // same size, invalid
	if len(body) != worker.MaxEventSize {
		t.Fatalf("body is %d bytes", len(body))
	}
	f.publish("mautic.contacts.limit", body)
	f.start()
	f.waitAll(1, 15*time.Second)
	if dl := f.deadLetters(); len(dl) != 1 || !strings.Contains(dl[0].Header.Get(contract.HeaderError), "time") {
		t.Errorf("dead letters %v", dl)
	}
}
