package worker_test

// Helpers for the fault, bad-input and leak tests (fault_test.go,
// badinput_test.go, leak_test.go): a harness whose NATS server can be
// restarted on the same port and store, whose worker may reach NATS
// through a proxy that cuts connections, whose logs and metrics are
// observed; a model of what a stream of events must leave in Mautic (the
// idea of cmd/mautic-sync/crash_test.go); and fault hooks for the fake.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mautic-sync/mautic-sync/mautic"
	"github.com/mautic-sync/mautic-sync/mautic/mautictest"
	"github.com/mautic-sync/mautic-sync/queue"
	"github.com/mautic-sync/mautic-sync/queue/contract"
	"github.com/mautic-sync/mautic-sync/queue/embedded"
	"github.com/mautic-sync/mautic-sync/queue/jsworker"
	"github.com/mautic-sync/mautic-sync/queue/natstest"
	"github.com/mautic-sync/mautic-sync/worker"
	"github.com/mautic-sync/mautic-sync/worker/workertest"
)

// faultConfig varies the fault harness.
type faultConfig struct {
	// restartable gives the NATS server a fixed port, so that it can be
	// stopped and started again on the same port and store.
	restartable bool
	// maxPayload is the server's max_payload (0: NATS' default, 1 MiB).
	maxPayload int32
	// proxy makes the worker reach NATS through a tcpProxy.
	proxy bool
	// ackWait is the consumer's AckWait (default 30s).
	ackWait  time.Duration
	fakeOpts []mautictest.Option
	// wrapSource, when set, wraps the worker's Source (to simulate lost
	// acknowledgements).
	wrapSource func(worker.Source) worker.Source
}

// faultHarness is a harness with the extras above. The worker uses wjs
// (through the proxy when there is one); the test reads with js.
type faultHarness struct {
	*harness
	port       int
	storeDir   string
	maxPayload int32
	proxy      *tcpProxy
	wnc        *queue.Conn
	wjs        jetstream.JetStream
	logs       *observer.ObservedLogs
	reg        *prometheus.Registry
	wrapSource func(worker.Source) worker.Source
}

// natsReconnect are the options of the test's own connection: quick
// reconnection, forever.
func natsReconnect() []nats.Option {
	return []nats.Option{nats.ReconnectWait(50 * time.Millisecond), nats.MaxReconnects(-1), nats.ReconnectJitter(0, 0)}
}

func newFaultHarness(t *testing.T, cfg faultConfig) *faultHarness {
	t.Helper()
	f := &faultHarness{port: -1, storeDir: t.TempDir(), maxPayload: cfg.maxPayload, wrapSource: cfg.wrapSource}
	if cfg.restartable {
		f.port = natstest.FreePort(t)
	}
	ns := startNATS(t, f.port, f.storeDir, f.maxPayload)
	f.harness = &harness{t: t, ns: ns}
	t.Cleanup(func() { f.ns.Shutdown() }) // the current server, after any restart
	f.port = ns.Addr().(*net.TCPAddr).Port

	core, logs := observer.New(zapcore.DebugLevel)
	f.logs = logs
	logger := zaptest.NewLogger(t, zaptest.Level(zapcore.InfoLevel), zaptest.WrapOptions(zap.WrapCore(func(c zapcore.Core) zapcore.Core {
		return zapcore.NewTee(c, core)
	})))

	// The test's own connection.
	nc, err := nats.Connect(ns.ClientURL(), natsReconnect()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	if f.js, err = jetstream.New(nc); err != nil {
		t.Fatal(err)
	}
	f.nc = nc
	// The worker's, made as serve.go makes it (reconnecting forever, with
	// a scaled-down wait), directly or through the proxy.
	url := ns.ClientURL()
	if cfg.proxy {
		f.proxy = newTCPProxy(t, ns.Addr().String())
		url = "nats://" + f.proxy.addr()
	}
	wnc, err := queue.Connect(context.Background(), queue.ConnOptions{URL: url, ReconnectWait: 50 * time.Millisecond, MaxReconnects: -1}, logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(wnc.Close)
	f.wnc = wnc
	// As serve.go does: an outcome whose publish acknowledgement is lost
	// fails after a while instead of waiting forever.
	if f.wjs, err = jetstream.New(wnc.Conn, jetstream.WithPublishAsyncTimeout(3*time.Second)); err != nil {
		t.Fatal(err)
	}

	custom := []mautictest.Field{{Alias: "seq"}, {Alias: "n"}, {Alias: "last"}, {Alias: "note"}}
	base := []mautictest.Option{mautictest.WithBasicAuth("api", "test-password"), mautictest.WithFields(custom...)}
	f.fake = mautictest.NewServer(append(base, cfg.fakeOpts...)...)
	t.Cleanup(f.fake.Close)
	f.useClient(mautic.WithBasicAuth("api", "test-password"), mautic.WithTimeout(10*time.Second))

	ackWait := cfg.ackWait
	if ackWait == 0 {
		ackWait = 30 * time.Second
	}
	f.topo = queue.Topology{
		Stream: "MAUTIC_CONTACTS", Subjects: []string{"mautic.contacts.>"}, Duplicates: 2 * time.Minute,
		Consumer: "mautic-sync", AckWait: ackWait, MaxAckPending: 1000,
		ResultStream: "MAUTIC_SYNC_RESULTS", ResultSubject: "mautic.sync.result",
		DLQStream: "MAUTIC_SYNC_DLQ", DLQSubject: "mautic.sync.dlq",
	}
	f.reg = prometheus.NewRegistry()
	f.opts = worker.Options{
		BatchSize: 20, Linger: 10 * time.Millisecond, Concurrency: 4, MaxHeld: 1000,
		AckWait: ackWait, RetryMin: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond,
		DrainTimeout: 5 * time.Second, FetchWait: 200 * time.Millisecond,
		Logger: logger, Metrics: worker.NewMetrics(f.reg),
	}
	f.ensure()
	t.Cleanup(f.stop)
	return f
}

// useClient replaces the Mautic client; options without an auth option
// get none.
func (f *faultHarness) useClient(opts ...mautic.Option) {
	f.t.Helper()
	mc, err := mautic.NewClient(f.fake.URL(), opts...)
	if err != nil {
		f.t.Fatal(err)
	}
	f.mc = mc
}

// start runs a worker wired as serve.go wires it (ledger and recovery on
// the worker's own connection) until stop.
func (f *faultHarness) start() *worker.Worker {
	f.t.Helper()
	ctx := context.Background()
	cons, err := queue.Ensure(ctx, f.wjs, f.topo, true)
	if err != nil {
		f.t.Fatal(err)
	}
	l, err := queue.OpenLedger(ctx, f.wjs, queue.LedgerOptions{Bucket: "LEDGER", TTL: time.Hour, Create: true})
	if err != nil {
		f.t.Fatal(err)
	}
	opts := f.opts
	opts.Ledger = jsworker.Ledger(l)
	opts.Recovery = jsworker.Recovery(f.wjs, cons)
	src := jsworker.Source(queue.NewSource(cons))
	if f.wrapSource != nil {
		src = f.wrapSource(src)
	}
	w, err := worker.New(src, jsworker.Publisher(queue.NewPublisher(f.wjs)), f.mc, opts)
	if err != nil {
		f.t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(runCtx) }()
	f.mu.Lock()
	f.cancel, f.done = cancel, done
	f.mu.Unlock()
	return w
}

// stopNATS shuts the server down (its store stays).
func (f *faultHarness) stopNATS() { f.ns.Shutdown() }

// startNATS starts the server again on the same port and store.
func (f *faultHarness) startNATS() {
	f.t.Helper()
	f.ns = startNATS(f.t, f.port, f.storeDir, f.maxPayload)
}

// logged counts the observed log entries whose message contains msg.
func (f *faultHarness) logged(msg string) int {
	return f.logs.FilterMessageSnippet(msg).Len()
}

// counter sums the samples of a metric whose labels include want.
func (f *faultHarness) counter(name string, want map[string]string) float64 {
	f.t.Helper()
	mfs, err := f.reg.Gather()
	if err != nil {
		f.t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for k, v := range want {
				if have[k] != v {
					continue metric
				}
			}
			if c := m.GetCounter(); c != nil {
				sum += c.GetValue()
			}
		}
	}
	return sum
}

// waitAll waits until n outcomes are stored and nothing is left
// unacknowledged, then checks there are exactly n.
func (f *faultHarness) waitAll(n int, timeout time.Duration) {
	f.t.Helper()
	waitFor(f.t, timeout, func() error {
		if got := f.outcomeCount(); got < n {
			return fmt.Errorf("%d of %d outcomes stored", got, n)
		}
		return f.drained()
	})
	if got := f.outcomeCount(); got != n {
		f.t.Errorf("%d outcomes stored, want exactly %d", got, n)
	}
}

// waitOutcomesAtLeast waits until at least n outcomes are stored.
func (f *faultHarness) waitOutcomesAtLeast(n int, timeout time.Duration) {
	f.t.Helper()
	waitFor(f.t, timeout, func() error {
		if got := f.outcomeCount(); got < n {
			return fmt.Errorf("%d of %d outcomes stored", got, n)
		}
		return nil
	})
}

// startNATS starts a JetStream server as queue/embedded does; with
// maxPayload set it configures max_payload, which embedded.Options does
// not offer.
func startNATS(t *testing.T, port int, storeDir string, maxPayload int32) *embedded.Server {
	t.Helper()
	if maxPayload == 0 {
		var ns *embedded.Server
		var err error
		// The port was free a moment ago; the old server's listener may
		// need a moment to close.
		waitFor(t, 10*time.Second, func() error {
			ns, err = embedded.Start(embedded.Options{Port: port, StoreDir: storeDir})
			return err
		})
		return ns
	}
	ns, err := server.NewServer(&server.Options{
		ServerName: "mautic-sync-embedded", Host: "127.0.0.1", Port: port,
		JetStream: true, StoreDir: storeDir, NoSigs: true, NoLog: true, MaxPayload: maxPayload,
	})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		t.Fatal("NATS server not ready")
	}
	return &embedded.Server{Server: ns}
}

// tcpProxy forwards TCP connections to a target and can cut them all and
// refuse new ones for a while: the network between the worker and NATS
// failing while both stay up.
type tcpProxy struct {
	t      *testing.T
	ln     net.Listener
	target string

	mu    sync.Mutex
	down  bool
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func newTCPProxy(t *testing.T, target string) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{t: t, ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *tcpProxy) addr() string { return p.ln.Addr().String() }

func (p *tcpProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		down := p.down
		p.mu.Unlock()
		if down {
			_ = c.Close()
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		p.mu.Lock()
		p.conns[c], p.conns[up] = struct{}{}, struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(c, up)
		go p.pipe(up, c)
	}
}

func (p *tcpProxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	_, _ = io.Copy(dst, src)
	_ = dst.Close()
	_ = src.Close()
	p.mu.Lock()
	delete(p.conns, dst)
	delete(p.conns, src)
	p.mu.Unlock()
}

// cut closes every connection and refuses new ones until restore.
func (p *tcpProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.conns {
		_ = c.Close()
	}
}

func (p *tcpProxy) restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = false
}

func (p *tcpProxy) close() {
	_ = p.ln.Close()
	p.cut()
	p.wg.Wait()
}

// innerHeader marks a request a hook passes back to the fake, so that the
// hook lets it through.
const innerHeader = "X-Test-Inner"

// processThenDelay lets the fake handle a request at once and holds its
// response back for d: Mautic did the work but answered too late, as a
// slow PHP worker behind a proxy does.
func processThenDelay(fake *mautictest.Server, w http.ResponseWriter, r *http.Request, d time.Duration) {
	body, _ := io.ReadAll(r.Body)
	inner := r.Clone(context.WithoutCancel(r.Context()))
	inner.Body = io.NopCloser(bytes.NewReader(body))
	inner.Header.Set(innerHeader, "1")
	rec := httptest.NewRecorder()
	fake.Handler().ServeHTTP(rec, inner)
	select {
	case <-time.After(d):
	case <-r.Context().Done():
		return // the client gave up: nothing to write to
	}
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	_, _ = w.Write(rec.Body.Bytes())
}

// lockedRand is a seeded source safe for the fake's handler goroutines.
type lockedRand struct {
	mu sync.Mutex
	r  *rand.Rand
}

func newLockedRand(seed uint64) *lockedRand {
	return &lockedRand{r: rand.New(rand.NewPCG(seed, seed^0xfa17))}
}

func (l *lockedRand) float() float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.r.Float64()
}

// testSeed is a seed for a test's randomness, logged so that a failure can
// be repeated with MAUTIC_SYNC_FAULT_SEED.
func testSeed(t *testing.T) uint64 {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if v, err := strconv.ParseUint(os.Getenv("MAUTIC_SYNC_FAULT_SEED"), 10, 64); err == nil {
		seed = v
	}
	t.Logf("seed %d (MAUTIC_SYNC_FAULT_SEED=%d repeats this run)", seed, seed)
	return seed
}

// readyWatch records the reasons a worker gives for not being ready while
// it runs.
type readyWatch struct {
	mu      sync.Mutex
	reasons []string
	stop    chan struct{}
	done    chan struct{}
}

func watchReady(t *testing.T, w *worker.Worker) *readyWatch {
	rw := &readyWatch{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(rw.done)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-rw.stop:
				return
			case <-tick.C:
			}
			if ok, why := w.Ready(); !ok {
				rw.mu.Lock()
				if !slices.Contains(rw.reasons, why) {
					rw.reasons = append(rw.reasons, why)
				}
				rw.mu.Unlock()
			}
		}
	}()
	t.Cleanup(rw.end)
	return rw
}

func (rw *readyWatch) end() {
	select {
	case <-rw.stop:
	default:
		close(rw.stop)
	}
	<-rw.done
}

// saw reports whether some not-ready reason contained s.
func (rw *readyWatch) saw(s string) bool {
	rw.mu.Lock()
	defer rw.mu.Unlock()
	for _, r := range rw.reasons {
		if strings.Contains(r, s) {
			return true
		}
	}
	return false
}

func (rw *readyWatch) String() string {
	rw.mu.Lock()
	defer rw.mu.Unlock()
	return strings.Join(rw.reasons, " | ")
}

// ---- the model ----

// modelContact is what applying each event once, in order, gives.
// lossySource wraps a Source; the first drop Term calls of its messages
// report success without reaching NATS, as a Term written to a connection
// that breaks before the server reads it.
type lossySource struct {
	worker.Source
	drop atomic.Int64
}

func (s *lossySource) Fetch(ctx context.Context, max int, wait time.Duration, deliver func(worker.Message)) error {
	return s.Source.Fetch(ctx, max, wait, func(m worker.Message) { deliver(lossyMsg{m, s}) })
}

type lossyMsg struct {
	worker.Message
	src *lossySource
}

func (m lossyMsg) Term(ctx context.Context) error {
	if m.src.drop.Add(-1) >= 0 {
		return nil
	}
	return m.Message.Term(ctx)
}

// publishEvents publishes events (no Nats-Msg-Id) and returns their
// stream sequences.
func (f *faultHarness) publishEvents(events []workertest.Event) []uint64 {
	f.t.Helper()
	seqs := make([]uint64, len(events))
	for i, e := range events {
		seqs[i] = f.publish(e.Subject, e.Body)
	}
	return seqs
}

// checkModel checks the end state against the model: exactly one outcome
// per input message; a dead letter only for an invalid body
// (invalid_event) or a points event with no contact (rejected); and every
// contact in the fake as the events, applied once in order, imply. lost
// are dead letters read before the test deleted the dead-letter stream.
func (f *faultHarness) checkModel(events []workertest.Event, seqs []uint64, lost ...*jetstream.RawStreamMsg) {
	t := f.t
	t.Helper()
	outcomeOf := map[uint64]string{}
	uncertain := map[string]bool{}
	for _, r := range f.results() {
		if prev, dup := outcomeOf[r.StreamSeq]; dup {
			t.Errorf("seq %d has two outcomes: %s and %s", r.StreamSeq, prev, r.Outcome)
		}
		outcomeOf[r.StreamSeq] = r.Outcome
		if r.Uncertain {
			uncertain[r.EventID] = true
		}
	}
	for _, m := range append(f.deadLetters(), lost...) {
		seq, _ := strconv.ParseUint(m.Header.Get(contract.HeaderStreamSeq), 10, 64)
		if prev, dup := outcomeOf[seq]; dup {
			t.Errorf("seq %d has two outcomes: %s and a dead letter", seq, prev)
		}
		outcomeOf[seq] = "dead_letter:" + m.Header.Get(contract.HeaderReason) + " (" + m.Header.Get(contract.HeaderError) + ")"
	}
	if len(outcomeOf) != len(events) {
		t.Errorf("%d input messages with an outcome, want %d", len(outcomeOf), len(events))
	}

	m := workertest.NewModel()
	for i, e := range events {
		got, ok := outcomeOf[seqs[i]]
		switch {
		case !ok:
			t.Errorf("event %s (seq %d): no outcome", e.ID, seqs[i])
		case e.Invalid:
			if !strings.HasPrefix(got, "dead_letter:"+worker.ReasonInvalidEvent) {
				t.Errorf("invalid body %s (seq %d): outcome %q, want an invalid_event dead letter", e.ID, seqs[i], got)
			}
		case !m.Apply(e.ID, e.Type, e.Data):
			if !strings.HasPrefix(got, "dead_letter:"+worker.ReasonRejected) {
				t.Errorf("event %s (%s, seq %d): outcome %q, want a rejected dead letter", e.ID, e.Type, seqs[i], got)
			}
		case strings.HasPrefix(got, "dead_letter"):
			t.Errorf("event %s (%s, seq %d): outcome %q, but the fault was not the event's: want a result", e.ID, e.Type, seqs[i], got)
		}
	}

	workertest.CheckState(t, m, f.fake, events, uncertain)
}

// streamSnapshot reads every message of a stream, tolerating its absence.
func (f *faultHarness) streamSnapshot(name string) []*jetstream.RawStreamMsg {
	f.t.Helper()
	if _, err := f.js.Stream(context.Background(), name); errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil
	}
	return f.streamMsgs(name)
}
