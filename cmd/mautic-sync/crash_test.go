package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mautic-sync/mautic-sync/mautic/mautictest"
	"github.com/mautic-sync/mautic-sync/queue/embedded"
	"github.com/mautic-sync/mautic-sync/worker/workertest"
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

	events := workertest.Generate(r, n, contacts, false)
	seqOf := make([]uint64, len(events))
	for i, e := range events {
		ack, err := js.Publish(ctx, e.Subject, e.Body) // no Nats-Msg-Id: copies are stored
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
