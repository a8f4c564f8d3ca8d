package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mautic-sync/mautic-sync/config"
	"github.com/mautic-sync/mautic-sync/mautic/mautictest"
	"github.com/mautic-sync/mautic-sync/queue"
	"github.com/mautic-sync/mautic-sync/queue/natstest"
	"github.com/mautic-sync/mautic-sync/queue/provision"
	"github.com/mautic-sync/mautic-sync/worker/workertest"
)

// child is one replica of the service: the test binary as `run`.
type child struct {
	name   string
	cmd    *exec.Cmd
	exited chan struct{}

	mu     sync.Mutex
	owned  map[int]bool
	wanted []int // its share, as it last logged it
	events []ownership
	tail   []string // its last log lines, for failures
}

type ownership struct {
	child     string
	partition int
	what      string
	at        time.Time
}

// watchLog reads the child's JSON log: the partition ownership changes.
func (c *child) watchLog(r io.Reader, all func(ownership)) {
	s := bufio.NewScanner(r)
	s.Buffer(make([]byte, 64*1024), 1024*1024)
	for s.Scan() {
		line := s.Text()
		var l struct {
			Msg       string `json:"msg"`
			Partition *int   `json:"partition"`
			Wanted    []int  `json:"wanted"`
		}
		_ = json.Unmarshal([]byte(line), &l)
		c.mu.Lock()
		if l.Msg == "partition membership changed" {
			c.wanted = l.Wanted
		}
		c.tail = append(c.tail, line)
		if len(c.tail) > 40 {
			c.tail = c.tail[1:]
		}
		if what, ok := strings.CutPrefix(l.Msg, "partition "); ok && l.Partition != nil {
			o := ownership{child: c.name, partition: *l.Partition, what: what, at: time.Now()}
			c.events = append(c.events, o)
			switch what {
			case "acquired", "acquired again":
				c.owned[o.partition] = true
			case "released", "lost":
				delete(c.owned, o.partition)
			}
			c.mu.Unlock()
			all(o)
			continue
		}
		c.mu.Unlock()
	}
}

func (c *child) done() bool {
	select {
	case <-c.exited:
		return true
	default:
		return false
	}
}

func (c *child) ownedNow() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []int
	for p := range c.owned {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// TestClusterPartitionedModel runs three replicas of the real service (child
// processes) in elastic partitioned mode on a three-node JetStream cluster
// (streams, consumers and buckets with three replicas) and the Mautic fake,
// publishes a random stream, kills one replica with SIGKILL and later one
// NATS node, and checks the model's final state, per-contact order, no
// duplicate contacts nor concurrent writes per contact, one outcome per
// event, and that the killed replica's partitions were taken over within
// the bound. MAUTIC_SYNC_CLUSTER_EVENTS and MAUTIC_SYNC_MODEL_SEED make a
// larger or another run; MAUTIC_SYNC_CLUSTER_LOGS=dir keeps the replicas'
// logs there.
func TestClusterPartitionedModel(t *testing.T) {
	if testing.Short() {
		t.Skip("runs child processes and a NATS cluster")
	}
	const (
		partitions = 6
		takeover   = 3 * time.Second
		// The pins and the membership entry time out after takeover; the
		// others notice within a heartbeat (takeover/4) and pull within a
		// fetch (1s). The rest is slack for a loaded machine.
		takeoverBound = takeover + takeover/4 + time.Second + 4*time.Second
	)
	n, contacts := 600, 40
	if v, err := strconv.Atoi(os.Getenv("MAUTIC_SYNC_CLUSTER_EVENTS")); err == nil && v > 0 {
		n, contacts = v, max(40, v/15)
	}
	seed := uint64(time.Now().UnixNano())
	if v, err := strconv.ParseUint(os.Getenv("MAUTIC_SYNC_MODEL_SEED"), 10, 64); err == nil {
		seed = v
	}
	t.Logf("seed %d (MAUTIC_SYNC_MODEL_SEED=%d reproduces), %d events, %d contacts, %d partitions", seed, seed, n, contacts, partitions)
	r := rand.New(rand.NewPCG(seed, seed^0xc1a5))

	cluster := natstest.StartCluster(t, 3)
	fake := mautictest.NewServer(mautictest.WithBasicAuth("u", "cluster-pass"), mautictest.WithLatency(3*time.Millisecond, 50*time.Microsecond))
	defer fake.Close()
	nc, err := nats.Connect(cluster.URLs(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx := context.Background()

	env := append(os.Environ(),
		"MAUTIC_SYNC_TEST_CHILD=run",
		"NATS_URL="+cluster.URLs(), "NATS_RECONNECT_WAIT=200ms",
		"MAUTIC_URL="+fake.URL(), "MAUTIC_ALLOW_INSECURE_HTTP=true",
		"MAUTIC_USERNAME=u", "MAUTIC_PASSWORD=cluster-pass", "HTTP_ADDR=",
		"BATCH_SIZE=20", "BATCH_LINGER=5ms", "WORKER_RETRY_MIN=20ms", "WORKER_RETRY_MAX=200ms",
		"CONSUMER_ACK_WAIT=5s", "WORKER_MAX_DELIVERIES=50", "LOG_LEVEL=info", "WORKER_DRAIN_TIMEOUT=5s",
		"PARTITIONS="+strconv.Itoa(partitions), "PARTITION_MODE=elastic", "PARTITION_TAKEOVER="+takeover.String(),
		"JETSTREAM_REPLICAS=3",
		// A budget far above the run: the count is shared through JetStream.
		"MAUTIC_RATE_LIMIT=1000000", "MAUTIC_RATE_WINDOW=1h",
	)
	if os.Getenv("MAUTIC_SYNC_CLUSTER_LOGS") != "" {
		env = append(env, "LOG_LEVEL=debug") // every settled event, in the kept logs
	}
	cfg := clusterConfig(t, env)
	if _, err := provision.RunWith(ctx, js, topology(cfg), provisionOptions(cfg), false); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"MAUTIC_CONTACTS", "MAUTIC_SYNC_RESULTS", "MAUTIC_SYNC_DLQ", "KV_MAUTIC_SYNC_MEMBERS", "KV_MAUTIC_SYNC_RATE"} {
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.CachedInfo().Config.Replicas; got != 3 {
			t.Errorf("stream %s has %d replicas, want 3", name, got)
		}
	}

	var (
		evMu    sync.Mutex
		history []ownership
	)
	record := func(o ownership) {
		evMu.Lock()
		defer evMu.Unlock()
		history = append(history, o)
	}
	var children []*child
	start := func(name string) *child {
		c := &child{name: name, owned: map[int]bool{}, exited: make(chan struct{})}
		c.cmd = exec.Command(os.Args[0], "-test.run=^$")
		c.cmd.Env = env
		c.cmd.Stdout = os.Stderr
		pr, pw := io.Pipe()
		c.cmd.Stderr = pw
		var logTo io.Reader = pr
		if dir := os.Getenv("MAUTIC_SYNC_CLUSTER_LOGS"); dir != "" { // keep every replica's log
			f, err := os.Create(dir + "/" + name + ".log")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { f.Close() })
			logTo = io.TeeReader(pr, f)
		}
		go c.watchLog(logTo, record)
		if err := c.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { _ = c.cmd.Wait(); pw.Close(); close(c.exited) }()
		children = append(children, c)
		return c
	}
	defer func() {
		for _, c := range children {
			if !c.done() {
				_ = c.cmd.Process.Kill()
				<-c.exited
			}
		}
		if t.Failed() {
			for _, c := range children {
				c.mu.Lock()
				t.Logf("%s's last log lines:\n%s", c.name, strings.Join(c.tail, "\n"))
				c.mu.Unlock()
			}
		}
	}()
	// The ledger bucket, with three replicas, as an operator would create
	// it (three replicas creating it at once can time out on a loaded
	// machine).
	if err := queue.EnsureReplicatedBuckets(ctx, js, 3, queue.LedgerOptions{Bucket: cfg.Ledger.Bucket, TTL: cfg.Ledger.TTL}, ""); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		start(fmt.Sprintf("w%d", i))
	}
	members, err := queue.OpenMembers(ctx, js, queue.MembersBucketConfig(cfg.Partition.Bucket, takeover, 3), false)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, func() error {
		if l, err := members.List(ctx); err != nil || len(l) != 3 {
			return fmt.Errorf("members %v (%v)", l, err)
		}
		return nil
	})

	// The replicas started one after another: the first may have taken
	// every partition before it saw the others. Publish once the
	// membership has settled (every replica wants its share, and no
	// replica still owns a partition it does not want), so that the
	// partitions are spread while the first part of the stream is worked.
	waitFor(t, 30*time.Second, func() error {
		wantedBy := map[int]string{}
		for _, c := range children {
			c.mu.Lock()
			wanted := slices.Clone(c.wanted)
			c.mu.Unlock()
			if len(wanted) == 0 {
				return fmt.Errorf("%s wants no partition yet", c.name)
			}
			for _, p := range wanted {
				if other, dup := wantedBy[p]; dup {
					return fmt.Errorf("partition %d wanted by %s and %s", p, other, c.name)
				}
				wantedBy[p] = c.name
			}
			for _, p := range c.ownedNow() {
				if !slices.Contains(wanted, p) {
					return fmt.Errorf("%s still owns partition %d, which it no longer wants", c.name, p)
				}
			}
		}
		if len(wantedBy) != partitions {
			return fmt.Errorf("%d of %d partitions wanted", len(wantedBy), partitions)
		}
		return nil
	})

	events := workertest.Generate(r, n, contacts, false)
	seqOf := make([]uint64, len(events))
	publish := func(from, to int) {
		for i := from; i < to; i++ {
			e := events[i]
			var ack *jetstream.PubAck
			var err error
			for range 50 { // a NATS node may be down: retry
				if ack, err = js.Publish(ctx, e.Subject, e.Body); err == nil {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			if err != nil {
				t.Fatal(err)
			}
			seqOf[i] = ack.Sequence
		}
	}
	outcomes := func() int { return outcomeCount(ctx, js) }
	// Three parts: before the replica is killed, while its partitions are
	// taken over, and while it is back and a NATS node goes down.
	cut1, cut2 := len(events)*2/5, len(events)*7/10
	publish(0, cut1)
	// Mid-run, once the partitions are spread over the three replicas.
	waitFor(t, 60*time.Second, func() error {
		for _, c := range children {
			if len(c.ownedNow()) == 0 {
				return fmt.Errorf("%s owns no partition yet", c.name)
			}
		}
		if got := outcomes(); got < cut1/2 {
			return fmt.Errorf("%d of %d outcomes before the kill", got, cut1/2)
		}
		return nil
	})

	// Kill the replica that owns most partitions.
	victim := children[0]
	for _, c := range children {
		if len(c.ownedNow()) > len(victim.ownedNow()) {
			victim = c
		}
	}
	lost := victim.ownedNow()
	killed := time.Now()
	_ = victim.cmd.Process.Signal(syscall.SIGKILL)
	<-victim.exited
	t.Logf("killed %s (owning partitions %v) after %d outcomes", victim.name, lost, outcomes())
	publish(cut1, cut2)

	var takeoverTime time.Duration
	waitFor(t, 30*time.Second, func() error {
		evMu.Lock()
		defer evMu.Unlock()
		var last time.Time
		for _, p := range lost {
			found := false
			for _, o := range history {
				if o.partition == p && o.child != victim.name && strings.HasPrefix(o.what, "acquired") && o.at.After(killed) {
					found, last = true, later(last, o.at)
					break
				}
			}
			if !found {
				return fmt.Errorf("partition %d not taken over yet", p)
			}
		}
		takeoverTime = last.Sub(killed)
		return nil
	})
	t.Logf("partitions %v taken over %s after the SIGKILL (PARTITION_TAKEOVER %s, bound %s)", lost, takeoverTime.Round(time.Millisecond), takeover, takeoverBound)
	if takeoverTime > takeoverBound {
		t.Errorf("takeover took %s, more than %s", takeoverTime, takeoverBound)
	}

	// The replica comes back (a new member): partitions move to it once
	// their owners have given them up.
	back := start(victim.name + "-restarted")
	waitFor(t, 30*time.Second, func() error {
		back.mu.Lock()
		wanted := slices.Clone(back.wanted)
		back.mu.Unlock()
		if len(wanted) == 0 {
			return fmt.Errorf("the restarted replica wants no partition yet")
		}
		for _, c := range children {
			if c == back || c == victim {
				continue
			}
			for _, p := range c.ownedNow() {
				if slices.Contains(wanted, p) {
					return fmt.Errorf("%s still owns partition %d, wanted by the restarted replica", c.name, p)
				}
			}
		}
		return nil
	})
	publish(cut2, cut2+(len(events)-cut2)/2)
	waitFor(t, 30*time.Second, func() error {
		if len(back.ownedNow()) == 0 {
			return fmt.Errorf("the restarted replica owns no partition yet")
		}
		return nil
	})
	// A NATS node goes down mid-run: the consumers it led elect new
	// leaders, which resets their pins; their owners pull them again.
	node := cluster.Servers[1]
	before := outcomes()
	nodeDown := time.Now()
	node.Shutdown()
	t.Logf("shut NATS node %s down after %d outcomes", node.Name(), before)
	publish(cut2+(len(events)-cut2)/2, len(events))

	waitFor(t, 90*time.Second, func() error {
		if got := outcomes(); got < len(events) {
			return fmt.Errorf("%d of %d outcomes", got, len(events))
		}
		for i := range partitions {
			c, err := js.Consumer(ctx, "MAUTIC_CONTACTS", queue.PartitionConsumer("mautic-sync", i))
			if err != nil {
				return err
			}
			info, err := c.Info(ctx)
			if err != nil {
				return err
			}
			if info.NumPending+uint64(info.NumAckPending) > 0 {
				return fmt.Errorf("partition %d: %d pending, %d unacknowledged", i, info.NumPending, info.NumAckPending)
			}
		}
		return nil
	})
	for _, c := range children {
		if !c.done() {
			_ = c.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	for _, c := range children {
		select {
		case <-c.exited:
		case <-time.After(30 * time.Second):
			t.Fatalf("%s did not stop on SIGTERM", c.name)
		}
	}

	// Every replica took part.
	evMu.Lock()
	took := map[string]bool{}
	again := 0
	for _, o := range history {
		if strings.HasPrefix(o.what, "acquired") {
			took[o.child] = true
		}
		if o.at.After(nodeDown) && (o.what == "acquired again" || o.what == "lost") {
			again++
		}
	}
	evMu.Unlock()
	t.Logf("after the NATS node went down, owners took %d partition(s) again (a consumer leader change resets its pin)", again)
	if len(took) < 3 {
		t.Errorf("only %v acquired partitions", took)
	}

	checkRun(t, js, fake, events, seqOf)

	// The replicas counted their Mautic calls in one shared budget: never
	// fewer than Mautic received.
	kv, err := js.KeyValue(ctx, cfg.Mautic.RateBucket)
	if err != nil {
		t.Fatal(err)
	}
	keys, _ := kv.Keys(ctx)
	counted := 0
	for _, k := range keys {
		e, err := kv.Get(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		v, _ := strconv.Atoi(string(e.Value()))
		counted += v
	}
	if reqs := fake.RequestCount(); counted < reqs || counted == 0 {
		t.Errorf("the shared budget counted %d calls, Mautic received %d", counted, reqs)
	} else {
		t.Logf("shared rate budget: %d calls counted by the three replicas together, %d received by Mautic", counted, reqs)
	}
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// clusterConfig loads the configuration the children get from env.
func clusterConfig(t *testing.T, env []string) config.Config {
	t.Helper()
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok && k != "MAUTIC_SYNC_TEST_CHILD" && (strings.HasPrefix(k, "NATS_") || strings.HasPrefix(k, "MAUTIC_") ||
			strings.HasPrefix(k, "PARTITION") || strings.HasPrefix(k, "JETSTREAM_") || strings.HasPrefix(k, "CONSUMER_") ||
			strings.HasPrefix(k, "BATCH_") || strings.HasPrefix(k, "WORKER_") || k == "HTTP_ADDR" || k == "LOG_LEVEL") {
			t.Setenv(k, v)
		}
	}
	cfg, err := config.Load()
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}
