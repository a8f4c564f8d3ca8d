package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mautic-sync/mautic-sync/config"
	"github.com/mautic-sync/mautic-sync/mautic/mautictest"
	"github.com/mautic-sync/mautic-sync/queue"
	"github.com/mautic-sync/mautic-sync/queue/embedded"
	"github.com/mautic-sync/mautic-sync/worker/workertest"
)

// TestStaticReplicasInProcess runs two replicas in this process in static
// partitioned mode (as a StatefulSet would: replica i of 2 owns partitions
// i, i+2, ...) with startReplicas, stops one mid-run and starts it again,
// and checks the run against the model.
func TestStaticReplicasInProcess(t *testing.T) {
	ns, err := embedded.Start(embedded.Options{Port: -1, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Shutdown()
	fake := mautictest.NewServer(mautictest.WithBasicAuth("u", "static-pass"), mautictest.WithLatency(2*time.Millisecond, 0))
	defer fake.Close()
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	for k, v := range map[string]string{
		"NATS_URL": ns.ClientURL(), "MAUTIC_URL": fake.URL(), "MAUTIC_ALLOW_INSECURE_HTTP": "true",
		"MAUTIC_USERNAME": "u", "MAUTIC_PASSWORD": "static-pass", "HTTP_ADDR": "",
		"BATCH_SIZE": "20", "BATCH_LINGER": "5ms", "WORKER_RETRY_MIN": "20ms", "WORKER_RETRY_MAX": "200ms",
		"CONSUMER_ACK_WAIT": "5s", "WORKER_DRAIN_TIMEOUT": "5s", "LOG_LEVEL": "error",
		"PARTITIONS": "4", "PARTITION_MODE": "static", "REPLICA_COUNT": "2", "PARTITION_TAKEOVER": "2s",
	} {
		t.Setenv(k, v)
	}
	cfg, err := config.Load()
	if err != nil {
		t.Fatal(err)
	}
	if err := ensureJetStream(ctx, js, cfg); err != nil {
		t.Fatal(err)
	}
	rs, err := startReplicas(ctx, cfg, 2, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rs.Stop() }()

	events := workertest.Generate(rand.New(rand.NewPCG(7, 11)), 200, 16, false)
	seqOf := make([]uint64, len(events))
	publish := func(from, to int) {
		for i := from; i < to; i++ {
			ack, err := js.Publish(ctx, events[i].Subject, events[i].Body)
			if err != nil {
				t.Fatal(err)
			}
			seqOf[i] = ack.Sequence
		}
	}
	outcomes := func() int { return outcomeCount(ctx, js) }
	publish(0, 100)
	waitFor(t, 30*time.Second, func() error {
		if n := outcomes(); n < 50 {
			return fmt.Errorf("%d outcomes", n)
		}
		return nil
	})
	// Replica 1 stops (a rolling restart of its pod): its partitions wait
	// for it; it gave its pins up, so its successor takes them at once.
	if err := rs.Stop(1); err != nil {
		t.Fatal(err)
	}
	publish(100, 200)
	again, err := startReplicas(ctx, cfgWithIndex(cfg, 1), 1, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = again.Stop() }()
	waitFor(t, 60*time.Second, func() error {
		if n := outcomes(); n < len(events) {
			return fmt.Errorf("%d of %d outcomes", n, len(events))
		}
		for i := range 4 {
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
	if err := rs.Stop(); err != nil {
		t.Error(err)
	}
	if err := again.Stop(); err != nil {
		t.Error(err)
	}
	checkRun(t, js, fake, events, seqOf)
}

// cfgWithIndex is cfg as the static replica index of a single replica
// started alone (startReplicas gives replica i index i).
func cfgWithIndex(cfg config.Config, i int) config.Config {
	cfg.Partition.Index = i
	return cfg
}
