package worker_test

import (
	"bytes"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mautic-sync/mautic-sync/worker"
)

// leasedSource is the real JetStream source with a lease the test
// controls, as partitioned consumption has one (queue/partition).
type leasedSource struct {
	worker.Source
	mu       sync.Mutex
	fenced   bool
	disowned map[uint64]bool // stream sequences of partitions lost
	denied   map[uint64]int  // Owns answered false, per sequence
}

func (l *leasedSource) Fenced(time.Time) (string, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return "test: ownership unconfirmed", l.fenced
}

func (l *leasedSource) Owns(m worker.Message) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.disowned[m.StreamSeq()] {
		l.denied[m.StreamSeq()]++
		return false
	}
	return true
}

func (l *leasedSource) set(f func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f()
}

func newLeased(h *harness) *leasedSource {
	l := &leasedSource{disowned: map[uint64]bool{}, denied: map[uint64]int{}}
	h.wrap = func(s worker.Source) worker.Source { l.Source = s; return l }
	return l
}

// requestsMentioning returns the arrival indexes of the fake's requests
// whose body contains s.
func requestsMentioning(h *harness, s string) []int {
	var out []int
	for i, r := range h.fake.Requests() {
		if bytes.Contains(r.Body, []byte(s)) {
			out = append(out, i)
		}
	}
	return out
}

// A fenced source (cut off from NATS for half the takeover time) stops
// every Mautic call and the fetching, and says so in Ready; once its
// ownership is confirmed the held events are applied.
func TestFencedSourceMakesNoCalls(t *testing.T) {
	h := newHarness(t)
	lease := newLeased(h)
	lease.set(func() { lease.fenced = true })
	for i := range 5 {
		h.publish(fmt.Sprintf("mautic.contacts.f%d", i), event(fmt.Sprintf("f%d", i), worker.TypeUpsert, map[string]any{"email": fmt.Sprintf("f%d@example.com", i)}))
	}
	w := h.start()
	waitFor(t, 10*time.Second, func() error {
		if ok, why := w.Ready(); ok || !slices.Contains(w.Paused(), worker.PauseFenced) {
			return fmt.Errorf("ready %v (%s), paused %v", ok, why, w.Paused())
		}
		return nil
	})
	before := len(h.fake.Requests())
	if n := len(requestsMentioning(h, "@example.com")); n != 0 {
		t.Fatalf("%d Mautic calls carried events while fenced", n)
	}
	lease.set(func() { lease.fenced = false })
	h.waitOutcomes(5)
	for _, i := range requestsMentioning(h, "@example.com") {
		if i < before {
			t.Errorf("request %d carried events before the fence lifted (at request %d)", i, before)
		}
	}
	if slices.Contains(w.Paused(), worker.PauseFenced) {
		t.Errorf("still paused: %v", w.Paused())
	}
}

// Messages of a partition the replica lost are handed back unapplied;
// other contacts' events go on. A later event of the same contact that
// arrives meanwhile (the partition came back, or it was never lost) waits
// for the handed-back one. When that comes back owned (here: the same
// replica; in a deployment, the new owner) both are applied once, in
// order.
func TestDisownedMessagesHandedBackUnapplied(t *testing.T) {
	h := newHarness(t)
	lease := newLeased(h)
	a1 := h.publish("mautic.contacts.ann", event("a1", worker.TypeUpsert, map[string]any{"email": "ann@example.com", "fields": map[string]any{"city": "Oslo"}}))
	h.publish("mautic.contacts.bo", event("b1", worker.TypeUpsert, map[string]any{"email": "bo@example.com"}))
	lease.set(func() { lease.disowned[a1] = true })
	h.start()
	waitFor(t, 10*time.Second, func() error {
		lease.mu.Lock()
		defer lease.mu.Unlock()
		if lease.denied[a1] == 0 {
			return fmt.Errorf("ann's first event not yet refused (denied %v)", lease.denied)
		}
		if len(byEventID(t, h.results())) != 1 {
			return fmt.Errorf("%d results, want bo's", len(h.results()))
		}
		return nil
	})
	h.publish("mautic.contacts.ann", event("a2", worker.TypeUpsert, map[string]any{"email": "ann@example.com", "fields": map[string]any{"city": "Bergen"}}))
	waitFor(t, 10*time.Second, func() error {
		lease.mu.Lock()
		defer lease.mu.Unlock()
		if lease.denied[a1] < 3 {
			return fmt.Errorf("ann's first event refused %d times, want 3 (a2 had time to overtake it)", lease.denied[a1])
		}
		return nil
	})
	if n := len(requestsMentioning(h, "ann@example.com")); n != 0 {
		t.Fatalf("%d Mautic calls carried ann's events while her first one was disowned", n)
	}
	lease.set(func() { clear(lease.disowned) })
	h.waitOutcomes(3)
	rs := byEventID(t, h.results())
	for _, id := range []string{"a1", "a2", "b1"} {
		if rs[id].Outcome != worker.OutcomeApplied {
			t.Errorf("event %s: outcome %q, want applied", id, rs[id].Outcome)
		}
	}
	if cs := h.fake.ContactsByEmail("ann@example.com"); len(cs) != 1 || cs[0].Fields["city"] != "Bergen" {
		t.Errorf("ann = %+v, want one contact, city Bergen (a2 applied after a1)", cs)
	}
}
