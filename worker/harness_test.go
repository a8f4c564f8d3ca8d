package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap/zaptest"

	"github.com/mautic-sync/mautic-sync/mautic"
	"github.com/mautic-sync/mautic-sync/mautic/mautictest"
	"github.com/mautic-sync/mautic-sync/queue"
	"github.com/mautic-sync/mautic-sync/queue/embedded"
	"github.com/mautic-sync/mautic-sync/queue/jsworker"
	"github.com/mautic-sync/mautic-sync/queue/natstest"
	"github.com/mautic-sync/mautic-sync/worker"
)

// harness is a real JetStream server, the Mautic fake and the real client,
// with the worker started and stopped on demand.
type harness struct {
	t    *testing.T
	ns   *embedded.Server
	nc   *nats.Conn
	js   jetstream.JetStream
	fake *mautictest.Server
	mc   *mautic.Client
	topo queue.Topology
	opts worker.Options
	// wrap, when set, wraps the real source the worker gets.
	wrap func(worker.Source) worker.Source

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan error
}

func newHarness(t *testing.T, fakeOpts ...mautictest.Option) *harness {
	t.Helper()
	ns, nc, js := natstest.Start(t)
	custom := []mautictest.Field{{Alias: "seq"}, {Alias: "n"}, {Alias: "last"}}
	for i := range 5 {
		custom = append(custom, mautictest.Field{Alias: fmt.Sprintf("f%d", i)})
	}
	base := []mautictest.Option{mautictest.WithBasicAuth("api", "test-password"), mautictest.WithFields(custom...)}
	fake := mautictest.NewServer(append(base, fakeOpts...)...)
	t.Cleanup(fake.Close)
	mc, err := mautic.NewClient(fake.URL(), mautic.WithBasicAuth("api", "test-password"), mautic.WithTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{
		t: t, ns: ns, nc: nc, js: js, fake: fake, mc: mc,
		topo: queue.Topology{
			Stream: "MAUTIC_CONTACTS", Subjects: []string{"mautic.contacts.>"}, Duplicates: 2 * time.Minute,
			Consumer: "mautic-sync", AckWait: 30 * time.Second, MaxAckPending: 1000,
			ResultStream: "MAUTIC_SYNC_RESULTS", ResultSubject: "mautic.sync.result",
			DLQStream: "MAUTIC_SYNC_DLQ", DLQSubject: "mautic.sync.dlq",
		},
		opts: worker.Options{
			BatchSize: 200, Linger: 20 * time.Millisecond, Concurrency: 4, MaxHeld: 1000,
			AckWait: 30 * time.Second, RetryMin: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond,
			DrainTimeout: 5 * time.Second, FetchWait: 200 * time.Millisecond,
			Logger: zaptest.NewLogger(t),
		},
	}
	h.ensure()
	t.Cleanup(h.stop)
	return h
}

func (h *harness) ensure() jetstream.Consumer {
	h.t.Helper()
	cons, err := queue.Ensure(context.Background(), h.js, h.topo, true)
	if err != nil {
		h.t.Fatal(err)
	}
	return cons
}

func (h *harness) ledger() worker.Ledger {
	h.t.Helper()
	l, err := queue.OpenLedger(context.Background(), h.js, queue.LedgerOptions{Bucket: "LEDGER", TTL: time.Hour, Create: true})
	if err != nil {
		h.t.Fatal(err)
	}
	return jsworker.Ledger(l)
}

// start runs a worker until stop.
func (h *harness) start() *worker.Worker {
	h.t.Helper()
	cons := h.ensure()
	opts := h.opts
	opts.Ledger = h.ledger()
	src := jsworker.Source(queue.NewSource(cons))
	if h.wrap != nil {
		src = h.wrap(src)
	}
	w, err := worker.New(src, jsworker.Publisher(queue.NewPublisher(h.js)), h.mc, opts)
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	h.mu.Lock()
	h.cancel, h.done = cancel, done
	h.mu.Unlock()
	return w
}

// stop ends the worker and waits for Run to return.
func (h *harness) stop() {
	h.mu.Lock()
	cancel, done := h.cancel, h.done
	h.cancel, h.done = nil, nil
	h.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			h.t.Errorf("worker Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		h.t.Error("worker did not stop within 30s")
	}
}

// event builds a contract event body.
func event(id, typ string, data any) []byte {
	d, err := json.Marshal(data)
	if err != nil {
		panic(err)
	}
	return fmt.Appendf(nil, `{"specversion":"1.0","id":%q,"source":"/test","type":%q,"time":"2026-11-25T10:00:00Z","data":%s}`, id, typ, d)
}

// publish stores one input message and returns its stream sequence.
func (h *harness) publish(subject string, body []byte, hdr ...string) uint64 {
	h.t.Helper()
	m := nats.NewMsg(subject)
	m.Data = body
	for i := 0; i+1 < len(hdr); i += 2 {
		m.Header.Set(hdr[i], hdr[i+1])
	}
	ack, err := h.js.PublishMsg(context.Background(), m)
	if err != nil {
		h.t.Fatal(err)
	}
	return ack.Sequence
}

// resultMsg is a stored result with its headers.
type resultMsg struct {
	worker.Result
	MsgID string
}

// results reads every stored result message.
func (h *harness) results() []resultMsg {
	h.t.Helper()
	var out []resultMsg
	for _, m := range h.streamMsgs(h.topo.ResultStream) {
		var r resultMsg
		if err := json.Unmarshal(m.Data, &r.Result); err != nil {
			h.t.Fatalf("result %d is not JSON: %v", m.Sequence, err)
		}
		r.MsgID = m.Header.Get("Nats-Msg-Id")
		out = append(out, r)
	}
	return out
}

// deadLetters reads every stored dead letter.
func (h *harness) deadLetters() []*jetstream.RawStreamMsg {
	return h.streamMsgs(h.topo.DLQStream)
}

func (h *harness) streamMsgs(stream string) []*jetstream.RawStreamMsg {
	h.t.Helper()
	ctx := context.Background()
	s, err := h.js.Stream(ctx, stream)
	if err != nil {
		h.t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		h.t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			h.t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

// outcomeCount is results plus dead letters stored.
func (h *harness) outcomeCount() int {
	n := 0
	for _, name := range []string{h.topo.ResultStream, h.topo.DLQStream} {
		s, err := h.js.Stream(context.Background(), name)
		if err != nil {
			continue
		}
		info, err := s.Info(context.Background())
		if err == nil {
			n += int(info.State.Msgs)
		}
	}
	return n
}

// waitOutcomes polls until n outcomes are stored and the consumer has
// nothing left unacknowledged.
func (h *harness) waitOutcomes(n int) {
	h.t.Helper()
	waitFor(h.t, 20*time.Second, func() error {
		if got := h.outcomeCount(); got < n {
			return fmt.Errorf("%d of %d outcomes stored", got, n)
		}
		return h.drained()
	})
	if got := h.outcomeCount(); got != n {
		h.t.Fatalf("%d outcomes stored, want exactly %d", got, n)
	}
}

// drained reports nil once every input message is acknowledged.
func (h *harness) drained() error {
	cons, err := h.js.Consumer(context.Background(), h.topo.Stream, h.topo.Consumer)
	if err != nil {
		return err
	}
	info, err := cons.Info(context.Background())
	if err != nil {
		return err
	}
	if info.NumPending > 0 || info.NumAckPending > 0 {
		return fmt.Errorf("consumer: %d pending, %d awaiting ack", info.NumPending, info.NumAckPending)
	}
	return nil
}

// waitFor polls f until it returns nil or the deadline passes.
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

// byEventID indexes results by event id, failing on a repeated id.
func byEventID(t *testing.T, rs []resultMsg) map[string]resultMsg {
	t.Helper()
	out := map[string]resultMsg{}
	for _, r := range rs {
		if _, dup := out[r.EventID]; dup && r.Outcome != worker.OutcomeDuplicate {
			t.Errorf("event %s has two results", r.EventID)
		}
		out[r.EventID] = r
	}
	return out
}

// budget replaces the client with one that keeps a client-side budget.
func (h *harness) budget(limit int, window time.Duration) {
	h.t.Helper()
	mc, err := mautic.NewClient(h.fake.URL(), mautic.WithBasicAuth("api", "test-password"), mautic.WithRateBudget(limit, window))
	if err != nil {
		h.t.Fatal(err)
	}
	h.mc = mc
}

func mautictestLatency(perCall time.Duration) []mautictest.Option {
	return []mautictest.Option{mautictest.WithLatency(perCall, 0)}
}

func sourceFor(cons jetstream.Consumer) worker.Source { return jsworker.Source(queue.NewSource(cons)) }

func publisherFor(js jetstream.JetStream) worker.Publisher {
	return jsworker.Publisher(queue.NewPublisher(js))
}
