package partition_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap/zaptest"

	"github.com/mautic-sync/mautic-sync/queue"
	"github.com/mautic-sync/mautic-sync/queue/embedded"
	"github.com/mautic-sync/mautic-sync/queue/partition"
)

const parts = 4

func topo() queue.Topology {
	return queue.Topology{
		Stream: "IN", Subjects: []string{"in.>"}, Duplicates: time.Minute,
		Consumer: "w", AckWait: 3 * time.Second, MaxAckPending: 1000,
		ResultStream: "RES", ResultSubject: "out.result", DLQStream: "DLQ", DLQSubject: "out.dlq",
	}
}

func pt(pinTTL time.Duration) queue.Partitioning {
	return queue.Partitioning{Count: parts, Prefix: "in", PinTTL: pinTTL}
}

type env struct {
	t   *testing.T
	url string
	js  jetstream.JetStream // the test's own connection
}

func setup(t *testing.T, pinTTL time.Duration) *env {
	t.Helper()
	ns, err := embedded.Start(embedded.Options{Port: -1, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	e := &env{t: t, url: ns.ClientURL()}
	_, e.js = e.connect()
	if _, err := queue.EnsurePartitioned(context.Background(), e.js, topo(), pt(pinTTL), true); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) connect() (*nats.Conn, jetstream.JetStream) {
	e.t.Helper()
	return e.connectTo(e.url)
}

func (e *env) connectTo(url string, opts ...nats.Option) (*nats.Conn, jetstream.JetStream) {
	e.t.Helper()
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		e.t.Fatal(err)
	}
	return nc, js
}

func (e *env) publish(n, keys int) {
	e.t.Helper()
	for i := range n {
		if _, err := e.js.Publish(context.Background(), fmt.Sprintf("in.k%d", i%keys), fmt.Appendf(nil, "%d", i)); err != nil {
			e.t.Fatal(err)
		}
	}
}

// replica is one Source with its own connection, fetching in a loop.
type replica struct {
	name   string
	nc     *nats.Conn
	src    *partition.Source
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	events []string // "acquired 2", "lost 1", ...
}

type delivery struct {
	replica string
	seq     uint64
	subject string
	at      time.Time
}

type recorder struct {
	mu  sync.Mutex
	all []delivery
}

func (r *recorder) add(d delivery) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.all = append(r.all, d)
}

func (r *recorder) snapshot() []delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.all)
}

// start runs a replica. handle decides what to do with each message
// (nil: acknowledge it).
func (e *env) start(name string, o partition.Options, rec *recorder, handle func(*partition.Message)) *replica {
	e.t.Helper()
	return e.startAt(e.url, name, o, rec, handle)
}

// startAt is start with the replica's connection to url (a proxy).
func (e *env) startAt(url, name string, o partition.Options, rec *recorder, handle func(*partition.Message), opts ...nats.Option) *replica {
	e.t.Helper()
	nc, js := e.connectTo(url, opts...)
	ctx := context.Background()
	var consumers []jetstream.Consumer
	for i := range parts {
		c, err := js.Consumer(ctx, "IN", queue.PartitionConsumer("w", i))
		if err != nil {
			e.t.Fatal(err)
		}
		consumers = append(consumers, c)
	}
	r := &replica{name: name, nc: nc, done: make(chan struct{})}
	o.Topology, o.Logger = topo(), zaptest.NewLogger(e.t).Named(name)
	if o.Partitioning.Count == 0 {
		o.Partitioning = pt(o.Takeover)
	}
	if o.Mode == partition.Elastic {
		m, err := queue.OpenMembers(ctx, js, queue.MembersBucketConfig("MEMBERS", o.Takeover, 1), true)
		if err != nil {
			e.t.Fatal(err)
		}
		o.Members, o.MemberID = m, name
	}
	o.OnChange = func(p int, what string) {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.events = append(r.events, fmt.Sprintf("%s %d", what, p))
	}
	src, err := partition.New(ctx, js, consumers, o)
	if err != nil {
		e.t.Fatal(err)
	}
	r.src = src
	fctx, cancel := context.WithCancel(ctx)
	r.cancel = cancel
	go func() {
		defer close(r.done)
		for fctx.Err() == nil {
			_ = src.Fetch(fctx, 50, 200*time.Millisecond, func(m *partition.Message) {
				rec.add(delivery{replica: name, seq: m.StreamSeq(), subject: m.Subject(), at: time.Now()})
				if handle != nil {
					handle(m)
					return
				}
				_ = m.Ack(fctx)
			})
		}
	}()
	return r
}

// stop ends the replica cleanly: fetching stops, then Close.
func (r *replica) stop(t *testing.T) {
	r.cancel()
	<-r.done
	if err := r.src.Close(context.Background()); err != nil {
		t.Errorf("%s: close: %v", r.name, err)
	}
}

// kill ends the replica as SIGKILL would: no Close, connection gone.
func (r *replica) kill() {
	r.cancel()
	<-r.done
	r.nc.Close()
	_ = r.src.Close(context.Background()) // stops its goroutines; reaches no server
}

func waitFor(t *testing.T, d time.Duration, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func pending(t *testing.T, js jetstream.JetStream) (total uint64) {
	t.Helper()
	for i := range parts {
		c, err := js.Consumer(context.Background(), "IN", queue.PartitionConsumer("w", i))
		if err != nil {
			t.Fatal(err)
		}
		info, err := c.Info(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		total += info.NumPending + uint64(info.NumAckPending)
	}
	return total
}

// checkOrder: every subject's messages were delivered in stream order,
// and no two replicas delivered messages of one partition at overlapping
// times (each partition has one owner at a time).
func checkOrder(t *testing.T, ds []delivery) {
	t.Helper()
	last := map[string]uint64{}
	for _, d := range ds {
		if d.seq <= last[d.subject] {
			t.Errorf("%s: seq %d delivered after %d", d.subject, d.seq, last[d.subject])
		}
		last[d.subject] = d.seq
	}
}

func TestAssignIsBalancedAndStable(t *testing.T) {
	for n := 1; n <= 12; n++ {
		for m := 1; m <= 5; m++ {
			members := make([]string, m)
			for i := range m {
				members[i] = fmt.Sprintf("pod-%d", i)
			}
			a := partition.Assign(n, members)
			seen := map[int]bool{}
			for _, ps := range a {
				if len(ps) > (n+m-1)/m {
					t.Errorf("n=%d m=%d: a member has %d partitions", n, m, len(ps))
				}
				for _, p := range ps {
					if seen[p] {
						t.Errorf("n=%d m=%d: partition %d assigned twice", n, m, p)
					}
					seen[p] = true
				}
			}
			if len(seen) != n {
				t.Errorf("n=%d m=%d: %d partitions assigned", n, m, len(seen))
			}
			if fmt.Sprint(partition.Assign(n, slices.Clone(members))) != fmt.Sprint(a) {
				t.Errorf("n=%d m=%d: not deterministic", n, m)
			}
		}
	}
}

// TestElasticShareTakeoverAndRelease: two replicas share the partitions;
// one is killed and the other takes its partitions over within the pin
// timeout and a heartbeat; a new replica joins and partitions move to it
// only once released. Order per subject holds throughout.
func TestElasticShareTakeoverAndRelease(t *testing.T) {
	const ttl = 2 * time.Second
	e := setup(t, ttl)
	rec := &recorder{}
	o := partition.Options{Mode: partition.Elastic, Takeover: ttl, AckWait: topo().AckWait}
	a := e.start("a", o, rec, nil)
	b := e.start("b", o, rec, nil)
	waitFor(t, 10*time.Second, "both replicas to want two partitions", func() bool {
		return len(a.src.Wanted()) == 2 && len(b.src.Wanted()) == 2
	})
	e.publish(400, 40)
	waitFor(t, 20*time.Second, "everything acknowledged", func() bool { return pending(t, e.js) == 0 })
	if len(a.src.Owned()) != 2 || len(b.src.Owned()) != 2 {
		t.Fatalf("owned: a %v, b %v; want two each", a.src.Owned(), b.src.Owned())
	}
	aParts := a.src.Owned()

	killed := time.Now()
	a.kill()
	e.publish(400, 40)
	waitFor(t, 20*time.Second, "b to own every partition", func() bool { return len(b.src.Owned()) == parts })
	took := time.Since(killed)
	t.Logf("partitions %v taken over %s after the kill (pin timeout %s)", aParts, took, ttl)
	if took > 2*ttl+2*time.Second {
		t.Errorf("takeover took %s, want under %s", took, 2*ttl+2*time.Second)
	}
	waitFor(t, 20*time.Second, "everything acknowledged", func() bool { return pending(t, e.js) == 0 })

	// A pin is given with a message: ownership shows once messages flow.
	c := e.start("c", o, rec, nil)
	waitFor(t, 10*time.Second, "b and c to want two partitions each", func() bool {
		return len(c.src.Wanted()) == 2 && len(b.src.Wanted()) == 2
	})
	e.publish(400, 40)
	waitFor(t, 20*time.Second, "everything acknowledged", func() bool { return pending(t, e.js) == 0 })
	if got, want := c.src.Owned(), c.src.Wanted(); !slices.Equal(got, want) {
		t.Errorf("c owns %v after joining, want %v", got, want)
	}
	if got := len(b.src.Owned()); got != 2 {
		t.Errorf("b owns %d partitions after c joined, want 2", got)
	}
	b.stop(t)
	left := time.Now()
	e.publish(400, 40)
	waitFor(t, 10*time.Second, "c to own every partition after b left", func() bool { return len(c.src.Owned()) == parts })
	t.Logf("b's partitions moved %s after it left cleanly", time.Since(left))
	waitFor(t, 20*time.Second, "everything acknowledged", func() bool { return pending(t, e.js) == 0 })
	c.stop(t)

	ds := rec.snapshot()
	checkOrder(t, ds)
	seen := map[uint64]bool{}
	for _, d := range ds {
		if seen[d.seq] {
			t.Errorf("seq %d delivered twice (no message was left unacknowledged)", d.seq)
		}
		seen[d.seq] = true
	}
	if len(seen) != 1600 {
		t.Errorf("%d messages delivered, want 1600", len(seen))
	}
}

// TestTakeoverWaitsForTheDeadOwnersMessages: a replica dies holding
// messages; the replica that takes its partitions over delivers the newer
// messages of those subjects only after the old ones came back (after
// AckWait), and the other subjects at once.
func TestTakeoverWaitsForTheDeadOwnersMessages(t *testing.T) {
	const ttl = 2 * time.Second
	e := setup(t, ttl)
	rec := &recorder{}
	o := partition.Options{Mode: partition.Elastic, Takeover: ttl, AckWait: topo().AckWait}
	// a holds everything it gets, unacknowledged, then dies.
	a := e.start("a", o, rec, func(*partition.Message) {})
	waitFor(t, 10*time.Second, "a to want every partition", func() bool { return len(a.src.Wanted()) == parts })
	e.publish(40, 8) // 8 subjects, 5 messages each
	waitFor(t, 10*time.Second, "a to hold the 40 messages", func() bool { return len(rec.snapshot()) == 40 })
	held := rec.snapshot()
	a.kill()
	killed := time.Now()
	e.publish(40, 8)

	rec2 := &recorder{}
	b := e.start("b", o, rec2, nil)
	waitFor(t, 30*time.Second, "everything acknowledged", func() bool { return pending(t, e.js) == 0 })
	b.stop(t)
	ds := rec2.snapshot()
	checkOrder(t, ds)
	first := map[string]time.Time{}
	for _, d := range ds {
		if _, ok := first[d.subject]; !ok {
			first[d.subject] = d.at
		}
	}
	for _, h := range held {
		if d := first[h.subject].Sub(killed); d < topo().AckWait-time.Second {
			t.Errorf("%s: b delivered its first message %s after the kill, before a's unacknowledged ones could come back (AckWait %s)", h.subject, d, topo().AckWait)
		}
	}
	if len(ds) != 80 {
		t.Errorf("b delivered %d messages, want all 80 (40 redelivered)", len(ds))
	}
}

// TestStaticReplicasOwnTheirShare: replica i of 2 owns partitions i, i+2.
func TestStaticReplicasOwnTheirShare(t *testing.T) {
	const ttl = 2 * time.Second
	e := setup(t, ttl)
	rec := &recorder{}
	r0 := e.start("r0", partition.Options{Mode: partition.Static, Index: 0, Replicas: 2, AckWait: topo().AckWait, Takeover: ttl}, rec, nil)
	r1 := e.start("r1", partition.Options{Mode: partition.Static, Index: 1, Replicas: 2, AckWait: topo().AckWait, Takeover: ttl}, rec, nil)
	e.publish(200, 20)
	waitFor(t, 20*time.Second, "everything acknowledged", func() bool { return pending(t, e.js) == 0 })
	if got := r0.src.Owned(); !slices.Equal(got, []int{0, 2}) {
		t.Errorf("replica 0 owns %v, want [0 2]", got)
	}
	if got := r1.src.Owned(); !slices.Equal(got, []int{1, 3}) {
		t.Errorf("replica 1 owns %v, want [1 3]", got)
	}
	p := pt(ttl)
	for _, d := range rec.snapshot() {
		if want := fmt.Sprintf("r%d", p.Of(d.subject)%2); d.replica != want {
			t.Errorf("%s (partition %d) went to %s, want %s", d.subject, p.Of(d.subject), d.replica, want)
		}
	}
	checkOrder(t, rec.snapshot())
	r0.stop(t)
	r1.stop(t)
}

// TestWaitsForTheUnpartitionedConsumer: events stored before the stream
// was partitioned belong to the unpartitioned consumer; the partitioned
// source delivers nothing until it has finished them.
func TestWaitsForTheUnpartitionedConsumer(t *testing.T) {
	ns, err := embedded.Start(embedded.Options{Port: -1, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Shutdown()
	e := &env{t: t, url: ns.ClientURL()}
	_, e.js = e.connect()
	ctx := context.Background()
	legacy, err := queue.Ensure(ctx, e.js, topo(), true) // the unpartitioned set-up
	if err != nil {
		t.Fatal(err)
	}
	e.publish(10, 5) // stored unpartitioned
	// Partition the stream and narrow the old consumer, as provision does.
	s, _ := e.js.Stream(ctx, "IN")
	cfg := s.CachedInfo().Config
	cfg.SubjectTransform = pt(time.Second).Transform()
	if _, err := e.js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	cc := legacy.CachedInfo().Config
	cc.FilterSubject = pt(time.Second).LegacyFilter()
	if _, err := e.js.UpdateConsumer(ctx, "IN", cc); err != nil {
		t.Fatal(err)
	}
	if _, err := queue.EnsurePartitioned(ctx, e.js, topo(), pt(2*time.Second), true); err != nil {
		t.Fatal(err)
	}
	e.publish(10, 5) // partitioned

	nc, js := e.connect()
	defer nc.Close()
	var consumers []jetstream.Consumer
	for i := range parts {
		c, _ := js.Consumer(ctx, "IN", queue.PartitionConsumer("w", i))
		consumers = append(consumers, c)
	}
	src, err := partition.New(ctx, js, consumers, partition.Options{Topology: topo(), Partitioning: pt(2 * time.Second),
		Mode: partition.Static, Index: 0, Replicas: 1, AckWait: 3 * time.Second, Legacy: "w", LegacyPoll: 300 * time.Millisecond,
		Logger: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close(ctx)
	fctx, cancel := context.WithTimeout(ctx, 40*time.Second)
	defer cancel()
	err = src.Fetch(fctx, 100, 100*time.Millisecond, func(*partition.Message) { t.Error("delivered before the unpartitioned consumer finished") })
	if err == nil {
		t.Fatal("Fetch says nothing while the unpartitioned consumer has 10 events to finish")
	}
	t.Log(err)
	// The old consumer finishes its 10.
	b, err := legacy.Fetch(100, jetstream.FetchMaxWait(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for m := range b.Messages() {
		if pt(time.Second).Of(m.Subject()) >= 0 {
			t.Errorf("the narrowed unpartitioned consumer got a partitioned message %s", m.Subject())
		}
		_ = m.Ack()
		n++
	}
	if n != 10 {
		t.Fatalf("the unpartitioned consumer got %d messages, want 10", n)
	}
	time.Sleep(400 * time.Millisecond) // the state is looked up every LegacyPoll
	got := 0
	for got < 10 && fctx.Err() == nil {
		if err := src.Fetch(fctx, 100, 200*time.Millisecond, func(m *partition.Message) { got++; _ = m.Ack(ctx) }); err != nil {
			t.Fatal(err)
		}
	}
	if got != 10 {
		t.Errorf("delivered %d partitioned messages, want 10", got)
	}
}
