package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mautic-sync/mautic-sync/mautic/mautictest"
	"github.com/mautic-sync/mautic-sync/queue/embedded"
	"github.com/mautic-sync/mautic-sync/worker"
)

// TestMain lets the test binary run as the real service in a child
// process, so that tests can kill it with SIGKILL.
func TestMain(m *testing.M) {
	if os.Getenv("MAUTIC_SYNC_TEST_CHILD") == "run" {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
		code := run(ctx, []string{"run"}, os.Stdout, os.Stderr)
		stop()
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// modelContact is what applying each event once, in order, gives.
type modelContact struct {
	city, firstname string
	tags            map[string]bool
	segments        map[int]bool
	dnc             map[string]int
	points          int
	pointEvents     []string // ids of points events applied to it
}

func newModelContact() *modelContact {
	return &modelContact{tags: map[string]bool{}, segments: map[int]bool{}, dnc: map[string]int{}}
}

// model applies events to contacts by email.
type model struct {
	contacts map[string]*modelContact
	applied  map[string]bool // event ids that took effect (or needed nothing)
}

// apply applies one event; it reports false when the event is rejected
// (dead-lettered), which leaves it free to be applied by a later copy.
func (m *model) apply(id, typ string, data map[string]any) bool {
	if m.applied[id] {
		return true // a copy: the ledger skips it
	}
	email := data["email"].(string)
	c := m.contacts[email]
	ensure := func() *modelContact {
		if c == nil {
			c = newModelContact()
			m.contacts[email] = c
		}
		return c
	}
	switch typ {
	case worker.TypeUpsert:
		ensure()
		f := data["fields"].(map[string]any)
		if v, ok := f["city"]; ok {
			c.city = v.(string)
		}
		if v, ok := f["firstname"]; ok {
			c.firstname = v.(string)
		}
		for _, t := range data["tags"].([]string) {
			if name, ok := strings.CutPrefix(t, "-"); ok {
				delete(c.tags, name)
			} else {
				c.tags[t] = true
			}
		}
	case worker.TypeDelete:
		delete(m.contacts, email)
	case worker.TypeSegmentAdd:
		ensure().segments[data["segment_id"].(int)] = true
	case worker.TypeSegmentRemove:
		if c != nil {
			delete(c.segments, data["segment_id"].(int))
		}
	case worker.TypeDNCAdd:
		ensure()
		ch, reason := data["channel"].(string), data["reason"].(int)
		if old, ok := c.dnc[ch]; !ok || old != 1 {
			c.dnc[ch] = reason // an unsubscribe (1) is never overridden
		}
	case worker.TypeDNCRemove:
		if c != nil {
			delete(c.dnc, data["channel"].(string))
		}
	case worker.TypePointsAdd:
		if c == nil {
			return false // no contact: rejected
		}
		c.points += data["delta"].(int)
		c.pointEvents = append(c.pointEvents, id)
	}
	m.applied[id] = true
	return true
}

type genEvent struct {
	subject string
	body    []byte
	id, typ string
	data    map[string]any
}

// generate makes a seeded random stream: many events per contact, every
// type, and copies of earlier events without Nats-Msg-Id.
func generate(r *rand.Rand, n, contacts int) []genEvent {
	var out []genEvent
	cities := []string{"Oslo", "Bergen", "Turku", "Lund", "Riga"}
	names := []string{"Ann", "Bo", "Cy", "Di"}
	tags := []string{"vip", "trial", "gold"}
	for i := range n {
		if i > 10 && r.IntN(12) == 0 { // a copy of an earlier event
			out = append(out, out[r.IntN(len(out))])
			continue
		}
		k := r.IntN(contacts)
		email := fmt.Sprintf("c%d@example.com", k)
		id := fmt.Sprintf("ev-%d", i)
		var typ string
		data := map[string]any{"email": email}
		switch x := r.IntN(100); {
		case x < 35:
			typ = worker.TypeUpsert
			f := map[string]any{"city": cities[r.IntN(len(cities))]}
			if r.IntN(2) == 0 {
				f["firstname"] = names[r.IntN(len(names))]
			}
			var ts []string
			if r.IntN(3) == 0 {
				t := tags[r.IntN(len(tags))]
				if r.IntN(3) == 0 {
					t = "-" + t
				}
				ts = append(ts, t)
			}
			data["fields"], data["tags"] = f, ts
		case x < 43:
			typ = worker.TypeDelete
		case x < 55:
			typ, data["segment_id"] = worker.TypeSegmentAdd, 1+r.IntN(3)
		case x < 62:
			typ, data["segment_id"] = worker.TypeSegmentRemove, 1+r.IntN(3)
		case x < 72:
			typ = worker.TypeDNCAdd
			data["channel"], data["reason"] = []string{"email", "sms"}[r.IntN(2)], 1+r.IntN(3)
		case x < 78:
			typ, data["channel"] = worker.TypeDNCRemove, []string{"email", "sms"}[r.IntN(2)]
		default:
			typ = worker.TypePointsAdd
			d := 1 + r.IntN(5)
			if r.IntN(3) == 0 {
				d = -d
			}
			data["delta"] = d
		}
		wire := map[string]any{}
		for k, v := range data {
			wire[k] = v
		}
		if ts, ok := wire["tags"].([]string); ok && len(ts) == 0 {
			delete(wire, "tags")
		}
		d, _ := json.Marshal(wire)
		body := fmt.Appendf(nil, `{"specversion":"1.0","id":%q,"source":"/model","type":%q,"time":"2026-11-25T10:00:00Z","data":%s}`, id, typ, d)
		out = append(out, genEvent{subject: fmt.Sprintf("mautic.contacts.c%d", k), body: body, id: id, typ: typ, data: data})
	}
	return out
}

// TestCrashSafetyModel publishes a random stream, kills the real service
// (a child process) with SIGKILL at random points, restarts it, and
// compares Mautic's final state with the model; every event must end in
// exactly one outcome. MAUTIC_SYNC_MODEL_EVENTS and MAUTIC_SYNC_MODEL_SEED
// make a larger or another run.
func TestCrashSafetyModel(t *testing.T) {
	if testing.Short() {
		t.Skip("runs child processes")
	}
	n, contacts, kills := 240, 16, 3
	if v, err := strconv.Atoi(os.Getenv("MAUTIC_SYNC_MODEL_EVENTS")); err == nil && v > 0 {
		n, contacts, kills = v, max(16, v/15), max(3, v/200)
	}
	seed := uint64(time.Now().UnixNano())
	if v, err := strconv.ParseUint(os.Getenv("MAUTIC_SYNC_MODEL_SEED"), 10, 64); err == nil {
		seed = v
	}
	t.Logf("seed %d (MAUTIC_SYNC_MODEL_SEED=%d reproduces), %d events, %d contacts, %d kills", seed, seed, n, contacts, kills)
	r := rand.New(rand.NewPCG(seed, seed^0x5eed))

	ns, err := embedded.Start(embedded.Options{Port: -1, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Shutdown()
	fake := mautictest.NewServer(mautictest.WithBasicAuth("u", "model-pass"), mautictest.WithLatency(3*time.Millisecond, 50*time.Microsecond))
	defer fake.Close()
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx := context.Background()

	env := append(os.Environ(),
		"MAUTIC_SYNC_TEST_CHILD=run",
		"NATS_URL="+ns.ClientURL(), "MAUTIC_URL="+fake.URL(), "MAUTIC_ALLOW_INSECURE_HTTP=true",
		"MAUTIC_USERNAME=u", "MAUTIC_PASSWORD=model-pass", "HTTP_ADDR=",
		"BATCH_SIZE=20", "BATCH_LINGER=5ms", "WORKER_RETRY_MIN=20ms", "WORKER_RETRY_MAX=200ms",
		"CONSUMER_ACK_WAIT=5s", "WORKER_MAX_DELIVERIES=50", "LOG_LEVEL=error", "WORKER_DRAIN_TIMEOUT=5s",
	)
	var child *exec.Cmd
	start := func() {
		child = exec.Command(os.Args[0], "-test.run=^$")
		child.Env = env
		child.Stdout, child.Stderr = os.Stderr, os.Stderr
		if err := child.Start(); err != nil {
			t.Fatal(err)
		}
	}
	start()
	defer func() {
		if child != nil && child.ProcessState == nil {
			_ = child.Process.Kill()
			_ = child.Wait()
		}
	}()
	// The child creates the streams; publish once they exist.
	waitFor(t, 20*time.Second, func() error { _, err := js.Stream(ctx, "MAUTIC_CONTACTS"); return err })

	events := generate(r, n, contacts)
	seqOf := make([]uint64, len(events))
	for i, e := range events {
		ack, err := js.Publish(ctx, e.subject, e.body) // no Nats-Msg-Id: copies are stored
		if err != nil {
			t.Fatal(err)
		}
		seqOf[i] = ack.Sequence
	}
	outcomes := func() int { return outcomeCount(ctx, js) }
	for k := range kills {
		target := (k + 1) * len(events) / (kills + 2)
		target += r.IntN(len(events)/(kills+2) + 1)
		waitFor(t, 60*time.Second, func() error {
			if got := outcomes(); got < target {
				return fmt.Errorf("%d of %d outcomes before kill %d", got, target, k+1)
			}
			return nil
		})
		_ = child.Process.Signal(syscall.SIGKILL)
		_ = child.Wait()
		t.Logf("killed after %d outcomes", outcomes())
		start()
	}
	waitFor(t, 90*time.Second, func() error {
		if got := outcomes(); got < len(events) {
			return fmt.Errorf("%d of %d outcomes", got, len(events))
		}
		cons, err := js.Consumer(ctx, "MAUTIC_CONTACTS", "mautic-sync")
		if err != nil {
			return err
		}
		info, err := cons.Info(ctx)
		if err != nil {
			return err
		}
		if info.NumPending+uint64(info.NumAckPending) > 0 {
			return fmt.Errorf("consumer: %d pending, %d unacknowledged", info.NumPending, info.NumAckPending)
		}
		return nil
	})
	_ = child.Process.Signal(syscall.SIGTERM)
	_ = child.Wait()

	checkRun(t, js, fake, events, seqOf)
}

func orNil(s string) string {
	if s == "" {
		return "<nil>"
	}
	return s
}

func deltaOf(events []genEvent, id string) int {
	for _, e := range events {
		if e.id == id {
			return e.data["delta"].(int)
		}
	}
	return 0
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func readAll(t *testing.T, js jetstream.JetStream, stream string, f func(*jetstream.RawStreamMsg)) {
	t.Helper()
	ctx := context.Background()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			continue
		}
		f(m)
	}
}
