package queue

// Ledger bulk operations of 200 ids (a batch's worth): the pipelined Get
// and Put against one request per key (the fallback, and how both worked
// before).
//
//	go test -run '^$' -bench Ledger -benchmem ./queue/
//
// The server runs in the test process, so its CPU time and allocations
// count too. To measure the client alone, run a nats-server with JetStream
// elsewhere and name it:
//
//	LEDGER_BENCH_NATS_URL=nats://127.0.0.1:4222 go test -run '^$' -bench Ledger -benchmem ./queue/

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/mautic-sync/mautic-sync/queue/natstest"
)

const benchIDs = 200

func benchLedger(b *testing.B, bucket string) (*Ledger, []string, map[string]string) {
	b.Helper()
	var js jetstream.JetStream
	if url := os.Getenv("LEDGER_BENCH_NATS_URL"); url != "" {
		nc, err := nats.Connect(url)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(nc.Close)
		if js, err = jetstream.New(nc); err != nil {
			b.Fatal(err)
		}
		_ = js.DeleteKeyValue(context.Background(), bucket)
		b.Cleanup(func() { _ = js.DeleteKeyValue(context.Background(), bucket) })
	} else {
		_, js = ledgerServer(b)
	}
	l := openTestLedger(b, js, bucket)
	ids := testIDs("bench", benchIDs)
	values := make(map[string]string, len(ids))
	for i, id := range ids {
		values[id] = fmt.Sprintf(`{"s":"applied","seq":%d,"mid":%d}`, 1000+i, 5000+i)
	}
	return l, ids, values
}

func BenchmarkLedgerGet(b *testing.B) {
	for _, c := range []struct {
		name string
		get  func(*Ledger, context.Context, []string) (map[string]string, error)
	}{
		{"batch", (*Ledger).Get},
		{"perKey", (*Ledger).getEach},
	} {
		b.Run(c.name, func(b *testing.B) {
			l, ids, values := benchLedger(b, "BENCH_GET")
			// Half the ids known, as after a redelivery.
			half := make(map[string]string)
			for _, id := range ids[:benchIDs/2] {
				half[id] = values[id]
			}
			ctx := context.Background()
			if err := l.Put(ctx, half); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				got, err := c.get(l, ctx, ids)
				if err != nil || len(got) != benchIDs/2 {
					b.Fatalf("got %d, %v", len(got), err)
				}
			}
			if !l.batchGets() {
				b.Fatal("batch gets were turned off")
			}
		})
	}
}

func BenchmarkLedgerPut(b *testing.B) {
	for _, c := range []struct {
		name string
		put  func(*Ledger, context.Context, map[string]string) error
	}{
		{"async", (*Ledger).Put},
		{"perKey", (*Ledger).putEach},
	} {
		b.Run(c.name, func(b *testing.B) {
			l, _, values := benchLedger(b, "BENCH_PUT")
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if err := c.put(l, ctx, values); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// putEach stores values one request per key, maxParallel at a time: how
// Put did it before it was pipelined, kept for the benchmark's comparison.
func (l *Ledger) putEach(ctx context.Context, values map[string]string) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(maxParallel)
	for id, v := range values {
		g.Go(func() error {
			if _, err := l.kv.Put(gctx, ledgerKey(id), []byte(v)); err != nil {
				return fmt.Errorf("queue: ledger put: %w", err)
			}
			return nil
		})
	}
	return g.Wait()
}

// BenchmarkLedgerGetReplicated is Get of 200 ids (half known) on a
// three-replica bucket from a client on a follower's server: the checked
// batch get Get makes there, the per-key leader reads it falls back to,
// and the unchecked batch direct get it makes on one replica (which a
// lagging follower may answer stale).
func BenchmarkLedgerGetReplicated(b *testing.B) {
	c := natstest.StartCluster(b, 3)
	ctx := context.Background()
	_, js := natstest.Connect(b, c.URLs())
	if err := EnsureReplicatedBuckets(ctx, js, 3, LedgerOptions{Bucket: "BENCH_R3", TTL: time.Hour}, ""); err != nil {
		b.Fatal(err)
	}
	wjs, rjs := leaderAndFollower(b, c, "KV_BENCH_R3")
	w, err := OpenLedger(ctx, wjs, LedgerOptions{Bucket: "BENCH_R3"})
	if err != nil {
		b.Fatal(err)
	}
	ids := testIDs("bench", benchIDs)
	half := make(map[string]string)
	for i, id := range ids[:benchIDs/2] {
		half[id] = fmt.Sprintf(`{"s":"applied","seq":%d,"mid":%d}`, 1000+i, 5000+i)
	}
	if err := w.Put(ctx, half); err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name string
		get  func(*Ledger, context.Context, []string) (map[string]string, error)
		prep func(*Ledger)
	}{
		// What Get does on a replicated bucket: the leader's last
		// sequence, then a batch direct get checked against it.
		{"checked", (*Ledger).Get, func(*Ledger) {}},
		// Every id read from the leader (Get's fallback).
		{"leaderOnly", (*Ledger).getLeader, func(*Ledger) {}},
		// A batch direct get taken as it comes (may be stale).
		{"batchDirect", (*Ledger).Get, func(l *Ledger) { l.leader = nil }},
	} {
		b.Run(c.name, func(b *testing.B) {
			l, err := OpenLedger(ctx, rjs, LedgerOptions{Bucket: "BENCH_R3"})
			if err != nil {
				b.Fatal(err)
			}
			c.prep(l)
			b.ReportAllocs()
			for b.Loop() {
				got, err := c.get(l, ctx, ids)
				if err != nil || len(got) != benchIDs/2 {
					b.Fatalf("got %d, %v", len(got), err)
				}
			}
			b.ReportMetric(float64(l.staleBatches.Load())/float64(b.N), "stale/op")
		})
	}
}
