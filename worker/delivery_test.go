package worker_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mautic-sync/mautic-sync/mautic/mautictest"
	"github.com/mautic-sync/mautic-sync/queue/contract"
	"github.com/mautic-sync/mautic-sync/worker"
)

// TestFailingContactIsolated: one item makes Mautic fail the whole batch
// (a 500 for any batch that carries it). The other contacts complete while
// it is retried; it is dead-lettered after WORKER_MAX_DELIVERIES, and its
// contact's later event then goes on.
func TestFailingContactIsolated(t *testing.T) {
	h := newHarness(t)
	h.opts.MaxDeliveries = 3
	h.opts.RetryMin, h.opts.RetryMax = 150*time.Millisecond, 300*time.Millisecond
	h.fake.SetHook(func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path != "/api/contacts/batch/new" {
			return false
		}
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		if bytes.Contains(body, []byte("EXPLODE")) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusInternalServerError)
			io.WriteString(w, `{"errors":[{"message":"Looks like I encountered an error (error #500).","code":500,"type":null}]}`)
			return true
		}
		return false
	})
	const others = 60
	poison := h.publish("mautic.contacts.poison", event("p1", worker.TypeUpsert, map[string]any{"email": "poison@example.com", "fields": map[string]any{"city": "EXPLODE"}}))
	h.publish("mautic.contacts.poison", event("p2", worker.TypeSegmentAdd, map[string]any{"email": "poison@example.com", "segment_id": 4}))
	for i := range others {
		h.publish(fmt.Sprintf("mautic.contacts.o%d", i), event(fmt.Sprintf("o%d", i), worker.TypeUpsert, map[string]any{"email": fmt.Sprintf("o%d@example.com", i)}))
	}
	h.start()
	// The others complete while the poison event is still being retried.
	waitFor(t, 20*time.Second, func() error {
		if n := len(h.results()); n < others {
			return fmt.Errorf("%d of %d results", n, others)
		}
		return nil
	})
	if n := len(h.deadLetters()); n != 0 {
		t.Errorf("the poison event was dead-lettered before the others completed (%d dead letters)", n)
	}
	h.waitOutcomes(others + 2)
	dl := h.deadLetters()
	if len(dl) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dl))
	}
	if got := dl[0].Header.Get(contract.HeaderReason); got != worker.ReasonMaxDeliveries {
		t.Errorf("reason %q, want max_deliveries", got)
	}
	if got := dl[0].Header.Get(contract.HeaderStreamSeq); got != strconv.FormatUint(poison, 10) {
		t.Errorf("dead letter for seq %s, want %d", got, poison)
	}
	if got := dl[0].Header.Get(contract.HeaderDeliveries); got != "3" {
		t.Errorf("deliveries %q, want 3", got)
	}
	c := h.fake.ContactsByEmail("poison@example.com")
	if len(c) != 1 || len(c[0].Segments) != 1 || c[0].Fields["city"] == "EXPLODE" {
		t.Errorf("the poison contact's later event did not go on: %+v", c)
	}
}

// TestItemFailureRetriedThenDeadLettered: Mautic answers one item with a
// 5xx status inside a 201 batch, every time.
func TestItemFailureRetriedThenDeadLettered(t *testing.T) {
	h := newHarness(t)
	h.opts.MaxDeliveries = 2
	h.fake.RejectItems(func(item map[string]any) (int, string) {
		if item["email"] == "flaky@example.com" {
			return http.StatusServiceUnavailable, "database is locked"
		}
		return 0, ""
	})
	h.publish("mautic.contacts.f", event("f1", worker.TypeUpsert, map[string]any{"email": "flaky@example.com"}))
	h.publish("mautic.contacts.g", event("g1", worker.TypeUpsert, map[string]any{"email": "good@example.com"}))
	h.start()
	h.waitOutcomes(2)
	dl := h.deadLetters()
	if len(dl) != 1 || dl[0].Header.Get(contract.HeaderReason) != worker.ReasonMaxDeliveries || !strings.Contains(dl[0].Header.Get(contract.HeaderError), "database is locked") {
		t.Fatalf("dead letters %v", dl)
	}
}

// TestOutageLongerThanMaxDeliveries: Mautic is down for far longer than
// max deliveries x retry delay; nothing is dead-lettered, and fetching
// pauses meanwhile.
func TestOutageLongerThanMaxDeliveries(t *testing.T) {
	h := newHarness(t)
	h.opts.MaxDeliveries = 2
	h.opts.RetryMin, h.opts.RetryMax = 10*time.Millisecond, 40*time.Millisecond
	h.fake.SetDown(http.StatusBadGateway)
	for i := range 20 {
		h.publish(fmt.Sprintf("mautic.contacts.x%d", i), event(fmt.Sprintf("x%d", i), worker.TypeUpsert, map[string]any{"email": fmt.Sprintf("x%d@example.com", i)}))
	}
	w := h.start()
	waitFor(t, 10*time.Second, func() error {
		if ok, why := w.Ready(); ok || !strings.Contains(why, "outage") {
			return fmt.Errorf("ready=%v %q", ok, why)
		}
		return nil
	})
	// Many times max deliveries x the retry delay.
	waitFor(t, 20*time.Second, func() error {
		if n := h.fake.RequestCount(); n < 40 {
			return fmt.Errorf("%d requests", n)
		}
		return nil
	})
	if h.outcomeCount() != 0 {
		t.Fatal("outcomes stored during the outage")
	}
	h.fake.SetDown(0)
	h.waitOutcomes(20)
	if n := len(h.deadLetters()); n != 0 {
		t.Errorf("%d dead letters after an outage, want 0", n)
	}
	for _, r := range h.results() {
		if r.Attempts != 1 {
			t.Errorf("event %s delivered %d times: an outage must not burn deliveries", r.EventID, r.Attempts)
		}
	}
}

// TestPointsExactlyOnce: a points event published twice without
// Nats-Msg-Id adjusts points once; the copy's outcome is duplicate, and so
// is the copy of an upsert.
func TestPointsExactlyOnce(t *testing.T) {
	h := newHarness(t)
	s := "mautic.contacts.pts"
	h.publish(s, event("u1", worker.TypeUpsert, map[string]any{"email": "pts@example.com", "fields": map[string]any{"city": "A"}}))
	pts := event("pt1", worker.TypePointsAdd, map[string]any{"email": "pts@example.com", "delta": 4})
	h.publish(s, pts)
	h.publish(s, event("u2", worker.TypeUpsert, map[string]any{"email": "pts@example.com", "fields": map[string]any{"city": "B"}}))
	h.publish(s, pts)
	h.publish(s, event("u1", worker.TypeUpsert, map[string]any{"email": "pts@example.com", "fields": map[string]any{"city": "A"}}))
	h.start()
	h.waitOutcomes(5)
	c := h.fake.ContactsByEmail("pts@example.com")
	if len(c) != 1 || c[0].Points != 4 || c[0].Fields["city"] != "B" {
		t.Fatalf("contact %+v, want points 4 and city B", c)
	}
	outcomes := map[string][]string{}
	for _, r := range h.results() {
		outcomes[r.EventID] = append(outcomes[r.EventID], r.Outcome)
	}
	if got := strings.Join(outcomes["pt1"], ","); got != "applied,duplicate" {
		t.Errorf("pt1 outcomes %s, want applied,duplicate", got)
	}
	if got := strings.Join(outcomes["u1"], ","); got != "applied,duplicate" {
		t.Errorf("u1 outcomes %s, want applied,duplicate", got)
	}
	// Restarting and redelivering everything changes nothing.
	h.stop()
	if err := h.js.DeleteConsumer(t.Context(), h.topo.Stream, h.topo.Consumer); err != nil {
		t.Fatal(err)
	}
	h.start()
	waitFor(t, 10*time.Second, func() error { return h.drained() })
	if c := h.fake.ContactsByEmail("pts@example.com"); c[0].Points != 4 {
		t.Errorf("points %d after a full redelivery, want 4", c[0].Points)
	}
	if n := len(h.results()); n != 5 {
		t.Errorf("%d results after redelivery, want still 5 (de-duplicated)", n)
	}
}

// TestRateLimitPausesUntilReset: with the window used up the worker makes
// no call until it resets and loses nothing. A window that resets within
// AckWait (here 2 s) is waited out holding the messages: none is handed
// back and redelivered.
func TestRateLimitPausesUntilReset(t *testing.T) {
	for _, budget := range []bool{false, true} {
		t.Run(fmt.Sprintf("budget=%v", budget), func(t *testing.T) {
			h := newHarness(t, mautictest.WithRateLimit(8, 2*time.Second))
			h.opts.BatchSize = 1
			h.opts.Concurrency = 2
			if budget {
				h.budget(8, 2*time.Second)
			}
			for i := range 20 {
				h.publish(fmt.Sprintf("mautic.contacts.r%d", i), event(fmt.Sprintf("r%d", i), worker.TypeUpsert, map[string]any{"email": fmt.Sprintf("r%d@example.com", i)}))
			}
			h.start()
			h.waitOutcomes(20)
			if n := len(h.deadLetters()); n != 0 {
				t.Errorf("%d dead letters", n)
			}
			for _, r := range h.results() {
				if r.Attempts != 1 {
					t.Errorf("event %s delivered %d times, want once (held through the reset)", r.EventID, r.Attempts)
				}
			}
			n429 := 0
			for _, r := range h.fake.Requests() {
				if r.Status == http.StatusTooManyRequests {
					n429++
				}
			}
			if budget && n429 != 0 {
				t.Errorf("%d 429s with the budget configured, want 0", n429)
			}
			if !budget && n429 > 3 {
				t.Errorf("%d 429s without a budget, want at most one per window", n429)
			}
		})
	}
}

// TestCopyOfAnUncertainPointsEventIsNotRetried: a points event whose
// earlier attempt was cut off (its intent is in the ledger, by another
// message) is not attempted again by a copy, and the copy's outcome does
// not depend on what became of the contact since: here it was deleted, and
// the copy still says duplicate (uncertain) rather than rejected.
func TestCopyOfAnUncertainPointsEventIsNotRetried(t *testing.T) {
	h := newHarness(t)
	// The original message (stream sequence 99) wrote its intent and was
	// cut off; its redelivery settled as uncertain, leaving the intent.
	if _, created, err := h.ledger().Intend(t.Context(), "pt-cut", worker.LedgerEntry{State: worker.LedgerIntent, Seq: 99, MauticID: 7}); err != nil || !created {
		t.Fatalf("intent: %v %v", created, err)
	}
	s := "mautic.contacts.gone"
	h.publish(s, event("pt-cut", worker.TypePointsAdd, map[string]any{"email": "gone@example.com", "delta": 2}))
	h.start()
	h.waitOutcomes(1)
	res := h.results()
	if len(res) != 1 || res[0].Outcome != worker.OutcomeDuplicate || !res[0].Uncertain {
		t.Fatalf("results %+v (dead letters %d), want one uncertain duplicate", res, len(h.deadLetters()))
	}
	for _, r := range h.fake.Requests() {
		if strings.Contains(r.Path, "/points/") || strings.Contains(r.RawQuery, "gone") {
			t.Errorf("the copy made a call: %s %s?%s", r.Method, r.Path, r.RawQuery)
		}
	}
}

// TestPointsRefusedByTheBudgetAreAppliedLater: a points call that the
// client-side budget refuses (nothing sent) or that Mautic answers 429
// was not applied; it is made once the window allows, and counts exactly
// once, not reported uncertain.
func TestPointsRefusedByTheBudgetAreAppliedLater(t *testing.T) {
	h := newHarness(t)
	h.budget(3, time.Second)
	s := "mautic.contacts.budget"
	h.publish(s, event("bu", worker.TypeUpsert, map[string]any{"email": "budget@example.com", "fields": map[string]any{"city": "A"}}))
	want := 0
	for i := range 4 {
		h.publish(s, event(fmt.Sprintf("bp%d", i), worker.TypePointsAdd, map[string]any{"email": "budget@example.com", "delta": i + 1}))
		want += i + 1
	}
	h.start()
	h.waitOutcomes(5)
	for _, r := range h.results() {
		if r.Uncertain || r.Outcome != worker.OutcomeApplied {
			t.Errorf("%s: %s uncertain %v (%s), want applied", r.EventID, r.Outcome, r.Uncertain, r.Note)
		}
	}
	if c := h.fake.ContactsByEmail("budget@example.com"); len(c) != 1 || c[0].Points != want {
		t.Errorf("contact %+v, want points %d", c, want)
	}
}
