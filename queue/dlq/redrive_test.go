package dlq_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap/zaptest"

	"github.com/mautic-sync/mautic-sync/mautic"
	"github.com/mautic-sync/mautic-sync/mautic/mautictest"
	"github.com/mautic-sync/mautic-sync/queue"
	"github.com/mautic-sync/mautic-sync/queue/dlq"
	"github.com/mautic-sync/mautic-sync/queue/jsworker"
	"github.com/mautic-sync/mautic-sync/worker"
)

// startWorker runs the real pipeline (as serve wires it) against the Mautic
// fake until the test ends.
func startWorker(t *testing.T, js jetstream.JetStream, fake *mautictest.Server) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cons, err := queue.Ensure(ctx, js, topo(), true)
	if err != nil {
		t.Fatal(err)
	}
	mc, err := mautic.NewClient(fake.URL(), mautic.WithBasicAuth("api", "pw"), mautic.WithTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	w, err := worker.New(jsworker.Source(queue.NewSource(cons)), jsworker.Publisher(queue.NewPublisher(js)), mc, worker.Options{
		BatchSize: 50, Linger: 10 * time.Millisecond, Concurrency: 4, MaxHeld: 1000,
		AckWait: 30 * time.Second, RetryMin: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond,
		DrainTimeout: 5 * time.Second, FetchWait: 100 * time.Millisecond,
		ResultSubject: topo().ResultSubject, DLQSubject: topo().DLQSubject,
		Logger: zaptest.NewLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("worker: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("worker did not stop")
		}
	})
}

func waitFor(t *testing.T, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s: %v", timeout, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func streamMsgs(t *testing.T, js jetstream.JetStream, name string) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx := context.Background()
	s, err := js.Stream(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

// settled returns nil once the consumer has nothing pending or unacknowledged.
func settled(js jetstream.JetStream) error {
	cons, err := js.Consumer(context.Background(), topo().Stream, topo().Consumer)
	if err != nil {
		return err
	}
	info, err := cons.Info(context.Background())
	if err != nil {
		return err
	}
	if info.NumPending > 0 || info.NumAckPending > 0 {
		return fmt.Errorf("consumer: %d pending, %d unacknowledged", info.NumPending, info.NumAckPending)
	}
	return nil
}

func event(id, email string) []byte {
	return fmt.Appendf(nil, `{"specversion":"1.0","id":%q,"source":"/test","type":"contact.upsert","time":"2026-11-25T10:00:00Z","data":{"email":%q,"fields":{"firstname":"Ann"}}}`, id, email)
}

// TestRedriveRealDeadLettersInterruptedAndResumed: Mautic refuses some
// items, the real worker dead-letters them as rejected; Mautic is fixed; a
// redrive is interrupted after k messages, a later one is "killed" between
// its publish and its delete, and the re-run finishes. Every dead-lettered
// event is stored in the input stream exactly once more and ends applied,
// and the DLQ is empty.
func TestRedriveRealDeadLettersInterruptedAndResumed(t *testing.T) {
	js := setup(t)
	ctx := context.Background()
	fake := mautictest.NewServer(mautictest.WithBasicAuth("api", "pw"))
	t.Cleanup(fake.Close)
	fake.RejectItems(func(item map[string]any) (int, string) {
		if email, _ := item["email"].(string); strings.HasSuffix(email, "@refused.example") {
			return http.StatusUnprocessableEntity, "email: this domain is blocked."
		}
		return 0, ""
	})
	startWorker(t, js, fake)

	const refused, fine = 7, 3
	var refusedIDs []string
	for i := range refused + fine {
		id, email := fmt.Sprintf("ok-%d", i), fmt.Sprintf("c%d@ok.example", i)
		if i < refused {
			id, email = fmt.Sprintf("ref-%d", i), fmt.Sprintf("c%d@refused.example", i)
			refusedIDs = append(refusedIDs, id)
		}
		if _, err := js.Publish(ctx, fmt.Sprintf("mautic.contacts.k%d", i), event(id, email), jetstream.WithMsgID(id)); err != nil {
			t.Fatal(err)
		}
	}
	q := dlq.New(js, topo().DLQStream)
	waitFor(t, 20*time.Second, func() error {
		if n := len(streamMsgs(t, js, topo().DLQStream)); n != refused {
			return fmt.Errorf("%d dead letters", n)
		}
		return settled(js)
	})
	letters, err := q.List(ctx, dlq.Filter{Reason: "rejected", Subject: "mautic.contacts.*"})
	if err != nil || len(letters) != refused {
		t.Fatalf("listed %d rejected dead letters, %v", len(letters), err)
	}
	for _, d := range letters {
		if d.Status != 422 || !strings.Contains(d.Error, "domain is blocked") || !strings.HasPrefix(d.EventID, "ref-") {
			t.Errorf("dead letter %+v", d)
		}
	}
	inputBefore := len(streamMsgs(t, js, topo().Stream))

	fake.RejectItems(nil) // Mautic fixed

	// First run: interrupted (as by SIGINT) after k messages.
	const k = 3
	rctx, interrupt := context.WithCancel(ctx)
	var done atomic.Int32
	sum, err := q.Redrive(rctx, letters, dlq.RedriveOptions{ExpectStream: topo().Stream, OnMessage: func(r dlq.Redriven) {
		if r.Err != nil {
			t.Errorf("redrive %d: %v", r.Letter.Seq, r.Err)
		}
		if done.Add(1) == k {
			interrupt()
		}
	}})
	if !errors.Is(err, context.Canceled) || sum.Redriven != k {
		t.Fatalf("interrupted run: %+v, %v", sum, err)
	}

	// A second run "killed" after publishing the next one and before deleting it.
	left, err := q.List(ctx, dlq.Filter{Reason: "rejected"})
	if err != nil || len(left) != refused-k {
		t.Fatalf("after the interruption %d dead letters, %v", len(left), err)
	}
	if _, err := js.PublishMsg(ctx, left[0].RedriveMsg()); err != nil {
		t.Fatal(err)
	}

	// The re-run finishes the job.
	sum, err = q.Redrive(ctx, left, dlq.RedriveOptions{ExpectStream: topo().Stream})
	if err != nil || sum != (dlq.RedriveSummary{Redriven: refused - k, Duplicates: 1}) {
		t.Fatalf("re-run: %+v, %v", sum, err)
	}

	// Every refused event applied, once.
	waitFor(t, 20*time.Second, func() error {
		applied := map[string]int{}
		for _, m := range streamMsgs(t, js, topo().ResultStream) {
			var r worker.Result
			if err := json.Unmarshal(m.Data, &r); err != nil {
				return err
			}
			if r.Outcome == worker.OutcomeApplied {
				applied[r.EventID]++
			}
		}
		for _, id := range refusedIDs {
			if applied[id] != 1 {
				return fmt.Errorf("event %s applied %d times (results %v)", id, applied[id], applied)
			}
		}
		return settled(js)
	})
	input := streamMsgs(t, js, topo().Stream)
	if n := len(input) - inputBefore; n != refused {
		t.Errorf("input stream got %d new messages, want %d (one per dead letter)", n, refused)
	}
	redriven := map[string]int{}
	for _, m := range input[inputBefore:] {
		var ev struct{ ID string }
		_ = json.Unmarshal(m.Data, &ev)
		redriven[ev.ID]++
		if id := m.Header.Get("Nats-Msg-Id"); !strings.HasPrefix(id, "redrive-") {
			t.Errorf("redriven message %d has Nats-Msg-Id %q", m.Sequence, id)
		}
	}
	for _, id := range refusedIDs {
		if redriven[id] != 1 {
			t.Errorf("event %s redelivered %d times", id, redriven[id])
		}
	}
	if n := len(streamMsgs(t, js, topo().DLQStream)); n != 0 {
		t.Errorf("DLQ holds %d messages, want 0", n)
	}
	if n := len(fake.Contacts()); n != refused+fine {
		t.Errorf("Mautic holds %d contacts, want %d", n, refused+fine)
	}
}
