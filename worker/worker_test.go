package worker_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mautic-sync/mautic-sync/queue/contract"
	"github.com/mautic-sync/mautic-sync/worker"
)

func TestEveryEventTypeApplied(t *testing.T) {
	h := newHarness(t)
	h.start()
	jane := "mautic.contacts.jane"
	h.publish(jane, event("e1", worker.TypeUpsert, map[string]any{"email": "Jane@Example.com", "fields": map[string]any{"firstname": "Jane", "city": "Oslo"}, "tags": []string{"vip", "trial"}}))
	h.waitOutcomes(1)
	janeID := h.fake.ContactsByEmail("jane@example.com")[0].ID

	h.publish(jane, event("e2", worker.TypeSegmentAdd, map[string]any{"email": "jane@example.com", "segment_id": 3}))
	h.publish(jane, event("e3", worker.TypeDNCAdd, map[string]any{"email": "jane@example.com", "reason": 2, "comments": "bounce"}))
	h.publish(jane, event("e4", worker.TypePointsAdd, map[string]any{"email": "jane@example.com", "delta": 7}))
	h.publish(jane, event("e5", worker.TypePointsAdd, map[string]any{"mautic_id": janeID, "delta": -2}))
	h.publish(jane, event("e6", worker.TypeUpsert, map[string]any{"mautic_id": janeID, "fields": map[string]any{"city": "Bergen"}, "tags": []string{"-trial"}}))
	h.publish("mautic.contacts.bob", event("e7", worker.TypeSegmentAdd, map[string]any{"email": "bob@example.com", "segment_id": 2}))
	h.publish("mautic.contacts.bob", event("e8", worker.TypeDNCAdd, map[string]any{"email": "bob@example.com"}))
	h.waitOutcomes(8)

	c, ok := h.fake.Contact(janeID)
	if !ok {
		t.Fatal("Jane is gone")
	}
	if c.Fields["city"] != "Bergen" || c.Fields["firstname"] != "Jane" {
		t.Errorf("Jane's fields %v", c.Fields)
	}
	if !slices.Equal(c.Tags, []string{"vip"}) {
		t.Errorf("Jane's tags %v, want [vip]", c.Tags)
	}
	if !slices.Equal(c.Segments, []int{3}) {
		t.Errorf("Jane's segments %v, want [3]", c.Segments)
	}
	if len(c.DNC) != 1 || c.DNC[0].Reason != 2 || c.DNC[0].Channel != "email" {
		t.Errorf("Jane's DNC %+v", c.DNC)
	}
	if c.Points != 5 {
		t.Errorf("Jane's points %d, want 5", c.Points)
	}
	bob := h.fake.ContactsByEmail("bob@example.com")
	if len(bob) != 1 || !slices.Equal(bob[0].Segments, []int{2}) || len(bob[0].DNC) != 1 || bob[0].DNC[0].Reason != 3 {
		t.Errorf("Bob (created bare by segment add, then DNC manual): %+v", bob)
	}

	// Removals and delete.
	h.publish(jane, event("e9", worker.TypeDNCRemove, map[string]any{"email": "jane@example.com"}))
	h.publish(jane, event("e10", worker.TypeSegmentRemove, map[string]any{"email": "jane@example.com", "segment_id": 3}))
	h.publish("mautic.contacts.bob", event("e11", worker.TypeDelete, map[string]any{"email": "bob@example.com"}))
	h.waitOutcomes(11)
	c, _ = h.fake.Contact(janeID)
	if len(c.DNC) != 0 || len(c.Segments) != 0 {
		t.Errorf("after removals Jane has DNC %+v segments %v", c.DNC, c.Segments)
	}
	if n := len(h.fake.ContactsByEmail("bob@example.com")); n != 0 {
		t.Errorf("Bob still exists (%d)", n)
	}

	rs := byEventID(t, h.results())
	for i := 1; i <= 11; i++ {
		id := "e" + strconv.Itoa(i)
		r, ok := rs[id]
		if !ok {
			t.Errorf("no result for %s", id)
			continue
		}
		if r.Outcome != worker.OutcomeApplied {
			t.Errorf("%s outcome %q, want applied", id, r.Outcome)
		}
		if r.Attempts != 1 || r.ProcessedAt == "" || r.Status == 0 || r.MsgID != "result-"+strconv.FormatUint(r.StreamSeq, 10) {
			t.Errorf("%s result %+v", id, r)
		}
	}
	if rs["e1"].MauticID != janeID || rs["e1"].Status != http.StatusCreated {
		t.Errorf("e1 result %+v, want mautic_id %d status 201", rs["e1"], janeID)
	}
	if len(h.deadLetters()) != 0 {
		t.Errorf("%d dead letters, want 0", len(h.deadLetters()))
	}
}

func TestUnknownContactsCountAsDone(t *testing.T) {
	h := newHarness(t)
	h.start()
	h.publish("mautic.contacts.a", event("u1", worker.TypeDelete, map[string]any{"email": "ghost@example.com"}))
	h.publish("mautic.contacts.b", event("u2", worker.TypeSegmentRemove, map[string]any{"email": "ghost2@example.com", "segment_id": 1}))
	h.publish("mautic.contacts.c", event("u3", worker.TypeDelete, map[string]any{"mautic_id": 999}))
	h.publish("mautic.contacts.d", event("u4", worker.TypeDNCRemove, map[string]any{"email": "ghost3@example.com"}))
	h.publish("mautic.contacts.e", event("u5", worker.TypePointsAdd, map[string]any{"email": "ghost4@example.com", "delta": 1}))
	h.publish("mautic.contacts.f", event("u6", worker.TypeUpsert, map[string]any{"mautic_id": 998, "fields": map[string]any{"city": "X"}}))
	h.waitOutcomes(6)
	rs := byEventID(t, h.results())
	for _, id := range []string{"u1", "u2", "u3", "u4"} {
		if rs[id].Outcome != worker.OutcomeUnchanged {
			t.Errorf("%s: %+v, want unchanged", id, rs[id])
		}
	}
	dl := h.deadLetters()
	if len(dl) != 2 {
		t.Fatalf("%d dead letters, want 2 (points and edit of unknown contacts)", len(dl))
	}
	for _, m := range dl {
		if m.Header.Get(contract.HeaderReason) != worker.ReasonRejected || m.Header.Get(contract.HeaderStatus) != "404" {
			t.Errorf("dead letter headers %v", m.Header)
		}
	}
	if n := len(h.fake.Contacts()); n != 0 {
		t.Errorf("%d contacts created, want none", n)
	}
}

func TestOrderKeptWithinOneBatch(t *testing.T) {
	h := newHarness(t)
	// Publish before the worker starts, so all events arrive together.
	s := "mautic.contacts.k"
	h.publish(s, event("o1", worker.TypeUpsert, map[string]any{"email": "k@example.com", "fields": map[string]any{"city": "A"}}))
	h.publish(s, event("o2", worker.TypeSegmentAdd, map[string]any{"email": "k@example.com", "segment_id": 1}))
	h.publish(s, event("o3", worker.TypeDelete, map[string]any{"email": "k@example.com"}))
	// A second contact: upsert, delete, upsert again must end existing.
	s2 := "mautic.contacts.m"
	h.publish(s2, event("o4", worker.TypeUpsert, map[string]any{"email": "m@example.com", "fields": map[string]any{"city": "A"}}))
	h.publish(s2, event("o5", worker.TypeDelete, map[string]any{"email": "m@example.com"}))
	h.publish(s2, event("o6", worker.TypeUpsert, map[string]any{"email": "m@example.com", "fields": map[string]any{"city": "C"}}))
	h.start()
	h.waitOutcomes(6)
	if n := len(h.fake.ContactsByEmail("k@example.com")); n != 0 {
		t.Errorf("k@example.com: %d contacts, want 0 (upsert, segment add, delete must end deleted)", n)
	}
	m := h.fake.ContactsByEmail("m@example.com")
	if len(m) != 1 || m[0].Fields["city"] != "C" {
		t.Errorf("m@example.com: %+v, want one contact in city C", m)
	}
	if got := h.fake.MaxConcurrentWritesPerContact(); got > 1 {
		t.Errorf("%d concurrent writes for one contact, want at most 1", got)
	}
}

func TestOrderKeptAcrossBatchesUnderLoad(t *testing.T) {
	h := newHarness(t, mautictestLatency(2*time.Millisecond)...)
	h.opts.BatchSize = 10
	const contacts, perContact = 20, 10
	for i := range perContact {
		for c := range contacts {
			s := fmt.Sprintf("mautic.contacts.c%d", c)
			h.publish(s, event(fmt.Sprintf("c%d-%d", c, i), worker.TypeUpsert,
				map[string]any{"email": fmt.Sprintf("c%d@example.com", c), "fields": map[string]any{"seq": strconv.Itoa(i + 1)}}))
			if i%3 == 2 {
				h.publish(s, event(fmt.Sprintf("c%d-%d-p", c, i), worker.TypePointsAdd,
					map[string]any{"email": fmt.Sprintf("c%d@example.com", c), "delta": 1}))
			}
		}
	}
	h.start()
	h.waitOutcomes(contacts*perContact + contacts*3)
	for c := range contacts {
		got := h.fake.ContactsByEmail(fmt.Sprintf("c%d@example.com", c))
		if len(got) != 1 {
			t.Fatalf("contact %d: %d copies, want 1", c, len(got))
		}
		if got[0].Fields["seq"] != strconv.Itoa(perContact) || got[0].Points != 3 {
			t.Errorf("contact %d ends with seq %v points %d, want %d and 3", c, got[0].Fields["seq"], got[0].Points, perContact)
		}
	}
	if got := h.fake.MaxConcurrentWritesPerContact(); got > 1 {
		t.Errorf("%d concurrent writes for one contact, want at most 1", got)
	}
}

func TestRepeatedUpsertsMergeIntoOneItem(t *testing.T) {
	h := newHarness(t)
	s := "mautic.contacts.merge"
	for i := range 5 {
		h.publish(s, event(fmt.Sprintf("m%d", i), worker.TypeUpsert, map[string]any{
			"email": "merge@example.com", "fields": map[string]any{"f" + strconv.Itoa(i): "v", "last": strconv.Itoa(i)}, "tags": []string{"t" + strconv.Itoa(i)},
		}))
	}
	h.start()
	h.waitOutcomes(5)
	items := 0
	for _, r := range h.fake.Requests() {
		if r.Path == "/api/contacts/batch/new" {
			items += r.Items
		}
	}
	if items != 1 {
		t.Errorf("%d batch items sent for 5 upserts of one contact, want 1", items)
	}
	c := h.fake.ContactsByEmail("merge@example.com")
	if len(c) != 1 || c[0].Fields["last"] != "4" || c[0].Fields["f0"] != "v" || c[0].Fields["f4"] != "v" || len(c[0].Tags) != 5 {
		t.Errorf("merged contact %+v", c)
	}
	rs := byEventID(t, h.results())
	for i := range 5 {
		if r := rs[fmt.Sprintf("m%d", i)]; r.Outcome != worker.OutcomeApplied || r.MauticID != c[0].ID {
			t.Errorf("m%d result %+v", i, r)
		}
	}
}

func TestBatchWithFailedItemsGivesEachItsOutcome(t *testing.T) {
	h := newHarness(t)
	h.fake.RejectItems(func(item map[string]any) (int, string) {
		if item["firstname"] == "Refuse" {
			return http.StatusUnprocessableEntity, "firstname: this value is not allowed."
		}
		return 0, ""
	})
	for i := range 6 {
		name := "Ok"
		if i == 0 || i == 3 {
			name = "Refuse"
		}
		h.publish(fmt.Sprintf("mautic.contacts.b%d", i), event(fmt.Sprintf("b%d", i), worker.TypeUpsert,
			map[string]any{"email": fmt.Sprintf("b%d@example.com", i), "fields": map[string]any{"firstname": name}}))
	}
	h.start()
	h.waitOutcomes(6)
	if n := len(h.results()); n != 4 {
		t.Errorf("%d results, want 4", n)
	}
	dl := h.deadLetters()
	if len(dl) != 2 {
		t.Fatalf("%d dead letters, want 2", len(dl))
	}
	for _, m := range dl {
		if m.Header.Get(contract.HeaderReason) != worker.ReasonRejected || m.Header.Get(contract.HeaderStatus) != "422" ||
			!strings.Contains(m.Header.Get(contract.HeaderError), "not allowed") {
			t.Errorf("dead letter headers %v", m.Header)
		}
	}
	if n := len(h.fake.Contacts()); n != 4 {
		t.Errorf("%d contacts, want 4", n)
	}
}

func TestInvalidEventsDeadLetteredByteForByte(t *testing.T) {
	h := newHarness(t)
	files, _ := filepath.Glob("testdata/invalid/*")
	bodies := map[uint64][]byte{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		seq := h.publish("mautic.contacts.bad", b, "X-Producer", "test-suite", "Nats-Msg-Id", filepath.Base(f),
			"Nats-Expected-Stream", "MAUTIC_CONTACTS")
		bodies[seq] = b
	}
	h.start()
	h.waitOutcomes(len(files))
	dl := h.deadLetters()
	if len(dl) != len(files) {
		t.Fatalf("%d dead letters, want %d", len(dl), len(files))
	}
	for _, m := range dl {
		seq, _ := strconv.ParseUint(m.Header.Get(contract.HeaderStreamSeq), 10, 64)
		want, ok := bodies[seq]
		if !ok {
			t.Errorf("dead letter for unknown seq %d", seq)
			continue
		}
		if string(m.Data) != string(want) {
			t.Errorf("seq %d: body changed:\n got %q\nwant %q", seq, m.Data, want)
		}
		checks := map[string]string{
			contract.HeaderReason:     worker.ReasonInvalidEvent,
			contract.HeaderSubject:    "mautic.contacts.bad",
			contract.HeaderDeliveries: "1",
			"X-Producer":              "test-suite",
			"Nats-Msg-Id":             "dlq-" + strconv.FormatUint(seq, 10),
			"Nats-Expected-Stream":    "", // a publish directive, not copied
		}
		for k, v := range checks {
			if got := m.Header.Get(k); got != v {
				t.Errorf("seq %d: header %s = %q, want %q", seq, k, got, v)
			}
		}
		if m.Header.Get(contract.HeaderError) == "" || m.Header.Get(contract.HeaderStatus) != "" {
			t.Errorf("seq %d: error %q status %q", seq, m.Header.Get(contract.HeaderError), m.Header.Get(contract.HeaderStatus))
		}
		if _, err := time.Parse(time.RFC3339, m.Header.Get(contract.HeaderFailedAt)); err != nil {
			t.Errorf("seq %d: Failed-At: %v", seq, err)
		}
	}
	for _, r := range h.fake.Requests() {
		if r.Path != "/api/fields/contact" {
			t.Errorf("Mautic request %s %s for invalid events, want none", r.Method, r.Path)
		}
	}
}

func TestOutcomeStoredBeforeAck(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	// The result stream refuses publishes: it is gone.
	if err := h.js.DeleteStream(ctx, h.topo.ResultStream); err != nil {
		t.Fatal(err)
	}
	cons, err := h.js.Consumer(ctx, h.topo.Stream, h.topo.Consumer)
	if err != nil {
		t.Fatal(err)
	}
	w, err := worker.New(sourceFor(cons), publisherFor(h.js), h.mc, h.opts)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(runCtx) }()
	defer func() {
		cancel()
		<-done
	}()
	h.publish("mautic.contacts.x", event("x1", worker.TypeUpsert, map[string]any{"email": "x@example.com"}))
	// Mautic was called, but the input must stay unacknowledged.
	waitFor(t, 10*time.Second, func() error {
		if len(h.fake.ContactsByEmail("x@example.com")) == 0 {
			return fmt.Errorf("not applied yet")
		}
		return nil
	})
	for range 20 { // a while of retries: still unacknowledged
		info, err := cons.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.NumAckPending != 1 {
			t.Fatalf("input acknowledged (%d pending acks) while its outcome cannot be stored", info.NumAckPending)
		}
		time.Sleep(20 * time.Millisecond) // observing a steady state, not synchronising
	}
	// The stream comes back: the outcome is stored, then the input acked.
	if _, err := h.js.CreateStream(ctx, jetstream.StreamConfig{Name: h.topo.ResultStream, Subjects: []string{h.topo.ResultSubject}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, func() error {
		if n := len(h.results()); n != 1 {
			return fmt.Errorf("%d results", n)
		}
		return h.drained()
	})
}

func TestRestartNeitherLosesNorRepeats(t *testing.T) {
	h := newHarness(t, mautictestLatency(5*time.Millisecond)...)
	h.opts.BatchSize = 5
	h.opts.Concurrency = 1
	const n = 60
	for i := range n {
		h.publish(fmt.Sprintf("mautic.contacts.r%d", i%15), event(fmt.Sprintf("r%d", i), worker.TypeUpsert,
			map[string]any{"email": fmt.Sprintf("r%d@example.com", i%15), "fields": map[string]any{"n": strconv.Itoa(i)}}))
	}
	h.start()
	waitFor(t, 10*time.Second, func() error {
		if h.outcomeCount() < 10 {
			return fmt.Errorf("%d outcomes", h.outcomeCount())
		}
		return nil
	})
	h.stop()
	mid := h.outcomeCount()
	if mid >= n {
		t.Logf("all %d done before the stop; the restart still must not repeat any", n)
	}
	h.start()
	h.waitOutcomes(n)
	rs := h.results()
	seen := map[string]bool{}
	for _, r := range rs {
		if seen[r.EventID] {
			t.Errorf("event %s has two results", r.EventID)
		}
		seen[r.EventID] = true
	}
	if len(seen) != n {
		t.Errorf("%d events with results, want %d", len(seen), n)
	}
	for c := range 15 {
		got := h.fake.ContactsByEmail(fmt.Sprintf("r%d@example.com", c))
		want := strconv.Itoa(n - 15 + c)
		if len(got) != 1 || got[0].Fields["n"] != want {
			t.Errorf("contact r%d: %+v, want one with n=%s", c, got, want)
		}
	}
}

func TestDrainFinishesInFlightWithinBound(t *testing.T) {
	h := newHarness(t, mautictestLatency(300*time.Millisecond)...)
	h.opts.BatchSize = 5
	h.opts.Concurrency = 2
	for i := range 40 {
		h.publish(fmt.Sprintf("mautic.contacts.d%d", i), event(fmt.Sprintf("d%d", i), worker.TypeUpsert,
			map[string]any{"email": fmt.Sprintf("d%d@example.com", i)}))
	}
	h.start()
	waitFor(t, 10*time.Second, func() error {
		if h.fake.RequestCount() == 0 {
			return fmt.Errorf("no call yet")
		}
		return nil
	})
	start := time.Now()
	h.stop()
	if d := time.Since(start); d > h.opts.DrainTimeout+2*time.Second {
		t.Errorf("drain took %s, bound is %s", d, h.opts.DrainTimeout)
	}
	// Everything not finished was handed back: a new worker completes the rest.
	h.start()
	h.waitOutcomes(40)
	if n := len(h.fake.Contacts()); n != 40 {
		t.Errorf("%d contacts, want 40", n)
		dumpOutcomes(t, h)
	}
}

// A drain while Mautic keeps failing (down, or refusing the credentials)
// does not wait out WORKER_DRAIN_TIMEOUT retrying calls that cannot
// succeed: a failed call is not repeated once the drain starts, and its
// messages are handed back at once.
func TestDrainDuringFaultIsPrompt(t *testing.T) {
	h := newHarness(t)
	h.opts.DrainTimeout = 20 * time.Second
	h.opts.RetryMin, h.opts.RetryMax = 50*time.Millisecond, 10*time.Second
	h.fake.SetDown(http.StatusServiceUnavailable)
	for i := range 10 {
		h.publish(fmt.Sprintf("mautic.contacts.p%d", i), event(fmt.Sprintf("p%d", i), worker.TypeUpsert, map[string]any{"email": fmt.Sprintf("p%d@example.com", i)}))
	}
	h.start()
	waitFor(t, 10*time.Second, func() error {
		if n := h.fake.RequestCount(); n < 4 {
			return fmt.Errorf("%d failed calls so far", n)
		}
		return nil
	})
	start := time.Now()
	h.stop()
	if d := time.Since(start); d > h.opts.DrainTimeout/2 {
		t.Errorf("drain took %s during an outage; want it prompt, far under WORKER_DRAIN_TIMEOUT %s", d, h.opts.DrainTimeout)
	}
	h.fake.SetDown(0)
	h.start()
	h.waitOutcomes(10)
}

func TestOutageIsRetriedNotDeadLettered(t *testing.T) {
	h := newHarness(t)
	h.fake.SetDown(http.StatusServiceUnavailable)
	w := h.start()
	h.publish("mautic.contacts.o", event("o1", worker.TypeUpsert, map[string]any{"email": "o@example.com"}))
	waitFor(t, 10*time.Second, func() error {
		if h.fake.RequestCount() < 3 {
			return fmt.Errorf("%d requests", h.fake.RequestCount())
		}
		return nil
	})
	if h.outcomeCount() != 0 {
		t.Fatal("an outcome was stored during the outage")
	}
	h.fake.SetDown(0)
	h.waitOutcomes(1)
	if len(h.deadLetters()) != 0 {
		t.Error("an outage dead-lettered an event")
	}
	if ok, why := w.Ready(); !ok {
		t.Errorf("not ready after recovery: %s", why)
	}
}

func TestAuthFaultFlipsReadiness(t *testing.T) {
	h := newHarness(t)
	h.fake.SetBasicAuthEnabled(false)
	w := h.start()
	h.publish("mautic.contacts.a", event("a1", worker.TypeUpsert, map[string]any{"email": "a@example.com"}))
	waitFor(t, 10*time.Second, func() error {
		if ok, why := w.Ready(); ok || !strings.Contains(why, "auth") {
			return fmt.Errorf("ready=%v %q", ok, why)
		}
		return nil
	})
	h.fake.SetBasicAuthEnabled(true)
	h.waitOutcomes(1)
	waitFor(t, 5*time.Second, func() error {
		if ok, why := w.Ready(); !ok {
			return fmt.Errorf("not ready: %s", why)
		}
		return nil
	})
	if len(h.deadLetters()) != 0 {
		t.Error("an auth fault dead-lettered an event")
	}
}

func dumpOutcomes(t *testing.T, h *harness) {
	for _, r := range h.results() {
		t.Logf("result %+v", r.Result)
	}
	for _, m := range h.deadLetters() {
		t.Logf("dlq %v %s", m.Header, m.Data)
	}
}
