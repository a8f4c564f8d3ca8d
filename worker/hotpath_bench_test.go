package worker

// Benchmarks of the per-event hot path: decoding, lanes, grouping and
// merging, batch items and outcome messages. Run with
//
//	go test -run '^$' -bench . -benchmem ./worker/
//
// docs/performance.md records the figures.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// benchBodies are the contract examples of testdata/valid, by file name.
func benchBodies(b *testing.B) map[string][]byte {
	b.Helper()
	files, _ := filepath.Glob("testdata/valid/*.json")
	if len(files) == 0 {
		b.Fatal("no testdata/valid examples")
	}
	out := map[string][]byte{}
	for _, f := range files {
		body, err := os.ReadFile(f)
		if err != nil {
			b.Fatal(err)
		}
		out[strings.TrimSuffix(filepath.Base(f), ".json")] = body
	}
	return out
}

// benchUpsertBody is an upsert of the size the bench command publishes.
func benchUpsertBody(i int) []byte {
	return fmt.Appendf(nil, `{"specversion":"1.0","id":"bench-%d-1764115200000000000","source":"/mautic-sync/bench","type":"contact.upsert","time":"2026-11-26T00:00:00Z","data":{"email":"c%d@bench.example","fields":{"firstname":"Bench","lastname":"Contact %d","city":"Oslo","company":"Acme","position":"Buyer"},"tags":["bench"]}}`, i, i, i)
}

func BenchmarkDecode(b *testing.B) {
	bodies := benchBodies(b)
	bodies["bench-upsert"] = benchUpsertBody(42)
	bodies["invalid-segment-id-string"] = []byte(`{"specversion":"1.0","id":"x","source":"/s","type":"contact.segment.add","time":"2026-11-26T00:00:00Z","data":{"email":"a@b.c","segment_id":"3"}}`)
	for _, name := range []string{"bench-upsert", "upsert", "upsert-by-id", "delete", "segment-add", "segment-remove", "dnc-add", "dnc-remove", "points-add", "invalid-segment-id-string"} {
		body, ok := bodies[name]
		if !ok {
			continue
		}
		wantErr := strings.HasPrefix(name, "invalid")
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Decode(body); (err != nil) != wantErr {
					b.Fatal(err)
				}
			}
		})
	}
}

func benchPending(seq uint64, ev *Event) *pending {
	return &pending{seq: seq, ev: ev, keys: laneKeys("mautic.contacts.c"+strconv.FormatUint(seq, 10), ev)}
}

func benchUpsert(b *testing.B, i int) *Event {
	ev, err := Decode(benchUpsertBody(i))
	if err != nil {
		b.Fatal(err)
	}
	return ev
}

func BenchmarkLaneKeys(b *testing.B) {
	ev := benchUpsert(b, 1)
	b.ReportAllocs()
	for b.Loop() {
		_ = laneKeys("mautic.contacts.c1", ev)
	}
}

// BenchmarkLanes is one event's way through the lanes while the worker
// holds a full window (2000 events of distinct contacts): add, ready,
// followers, remove.
func BenchmarkLanes(b *testing.B) {
	for _, held := range []int{200, 2000} {
		b.Run(fmt.Sprintf("distinct-contacts-held-%d", held), func(b *testing.B) {
			l := newLanes()
			ring := make([]*pending, held)
			for i := range ring {
				ring[i] = benchPending(uint64(i), benchUpsert(b, i))
				l.add(ring[i])
			}
			evs := make([]*Event, held)
			for i := range evs {
				evs[i] = benchUpsert(b, i)
			}
			seq := uint64(held)
			b.ReportAllocs()
			for b.Loop() {
				i := int(seq % uint64(held))
				l.remove(ring[i])
				p := benchPending(seq, evs[i])
				l.add(p)
				if !l.ready(p) {
					b.Fatal("not ready")
				}
				_ = l.followers(p)
				ring[i] = p
				seq++
			}
		})
	}
	b.Run("one-contact-queue-of-50", func(b *testing.B) {
		l := newLanes()
		ev := benchUpsert(b, 7)
		var q []*pending
		for i := range 50 {
			p := &pending{seq: uint64(i), ev: ev, keys: laneKeys("mautic.contacts.c7", ev)}
			l.add(p)
			q = append(q, p)
		}
		seq := uint64(50)
		b.ReportAllocs()
		for b.Loop() {
			woken := l.remove(q[0])
			if len(woken) != 1 {
				b.Fatal("no successor woken")
			}
			q = q[1:]
			p := &pending{seq: seq, ev: ev, keys: q[0].keys}
			l.add(p)
			q = append(q, p)
			seq++
		}
	})
}

func BenchmarkMergeUpserts(b *testing.B) {
	for _, n := range []int{2, 10} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			ps := make([]*pending, n)
			for i := range ps {
				ev := benchUpsert(b, 1)
				ev.Fields["city"] = "City " + strconv.Itoa(i)
				ev.Tags = []string{"bench", "t" + strconv.Itoa(i%3)}
				ps[i] = &pending{seq: uint64(i), ev: ev}
			}
			b.ReportAllocs()
			for b.Loop() {
				_ = mergeUpserts(ps)
			}
		})
	}
}

func BenchmarkNewOp(b *testing.B) {
	head := benchPending(1, benchUpsert(b, 1))
	b.Run("single", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = newOp(head, nil)
		}
	})
	var followers []*pending
	for i := range 4 {
		ev := benchUpsert(b, 1)
		ev.ID = "f" + strconv.Itoa(i)
		followers = append(followers, &pending{seq: uint64(2 + i), ev: ev, keys: head.keys})
	}
	b.Run("merging-4-followers", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if o := newOp(head, followers); len(o.events) != 5 {
				b.Fatal("not merged")
			}
		}
	})
}

func BenchmarkContactItem(b *testing.B) {
	upsert := newOp(benchPending(1, benchUpsert(b, 1)), nil)
	dnc, err := Decode(benchBodies(b)["dnc-add"])
	if err != nil {
		b.Fatal(err)
	}
	dncOp := newOp(benchPending(2, dnc), nil)
	for name, o := range map[string]*op{"upsert": upsert, "dnc-add": dncOp} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = o.contactItem()
			}
		})
	}
	b.Run("ignoredFields", func(b *testing.B) {
		known := map[string]bool{"firstname": true, "lastname": true, "city": true, "company": true, "position": true, "email": true}
		b.ReportAllocs()
		for b.Loop() {
			_ = ignoredFields(upsert.ev, known)
		}
	})
}

// benchMsg is a delivered message for the outcome builders.
type benchMsg struct {
	data   []byte
	header map[string][]string
}

func (m benchMsg) Data() []byte                             { return m.data }
func (m benchMsg) Header() map[string][]string              { return m.header }
func (m benchMsg) Subject() string                          { return "mautic.contacts.c42" }
func (m benchMsg) StreamSeq() uint64                        { return 123456 }
func (m benchMsg) NumDelivered() uint64                     { return 1 }
func (m benchMsg) Ack(context.Context) error                { return nil }
func (m benchMsg) Term(context.Context) error               { return nil }
func (m benchMsg) Nak(context.Context, time.Duration) error { return nil }
func (m benchMsg) InProgress(context.Context) error         { return nil }

func BenchmarkOutcome(b *testing.B) {
	out := outboxConfig{resultSubject: "mautic.sync.result", dlqSubject: "mautic.sync.dlq", version: func() string { return "5.1.0" }}
	body := benchUpsertBody(42)
	ev := benchUpsert(b, 42)
	m := benchMsg{data: body, header: map[string][]string{"Nats-Msg-Id": {ev.ID}, "Traceparent": {"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}}}
	now := time.Now()
	b.Run("resultMessage", func(b *testing.B) {
		v := applied(201, 42)
		b.ReportAllocs()
		for b.Loop() {
			_ = out.resultMessage(m, ev, v, now)
		}
	})
	b.Run("resultMessage-ignored-fields", func(b *testing.B) {
		v := applied(201, 42)
		v.ignored = []IgnoredField{{Field: "score", Kind: "numeric_zero", Reason: "Mautic ignores a numeric 0 on create and update (mautic/mautic#15030)"}}
		b.ReportAllocs()
		for b.Loop() {
			_ = out.resultMessage(m, ev, v, now)
		}
	})
	b.Run("deadLetter", func(b *testing.B) {
		v := rejected(422, "Mautic contacts/batch/new refused the item (HTTP 422): email: c42@bench is invalid.")
		b.ReportAllocs()
		for b.Loop() {
			_ = out.deadLetter(m, v, now)
		}
	})
}
