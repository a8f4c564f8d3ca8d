package queue_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mautic-sync/mautic-sync/mautic"
	"github.com/mautic-sync/mautic-sync/queue"
)

var _ mautic.RateStore = (*queue.RateStore)(nil)

// TestRateStoreSharedCount: several stores (replicas) taking calls at once
// from one window never take more than the limit together; a new window
// starts at zero; Raise lifts a count.
func TestRateStoreSharedCount(t *testing.T) {
	_, _, js := setup(t)
	ctx := context.Background()
	cfg := queue.RateBucketConfig("RATE", time.Hour, 1)
	var stores []*queue.RateStore
	for range 3 {
		s, err := queue.OpenRateStore(ctx, js, cfg, "basic:u@mautic", true)
		if err != nil {
			t.Fatal(err)
		}
		stores = append(stores, s)
	}
	window := time.Now().Truncate(time.Hour)
	var mu sync.Mutex
	taken := 0
	var wg sync.WaitGroup
	for i := range 60 {
		wg.Go(func() {
			_, ok, err := stores[i%3].Take(ctx, window, 25)
			if err != nil {
				t.Error(err)
				return
			}
			if ok {
				mu.Lock()
				taken++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if taken != 25 {
		t.Errorf("%d calls taken by three stores, want the limit 25", taken)
	}
	if n, ok, _ := stores[0].Take(ctx, window.Add(time.Hour), 25); !ok || n != 1 {
		t.Errorf("the next window: count %d taken %v, want 1 true", n, ok)
	}
	if err := stores[1].Raise(ctx, window.Add(time.Hour), 20); err != nil {
		t.Fatal(err)
	}
	if n, ok, _ := stores[2].Take(ctx, window.Add(time.Hour), 21); !ok || n != 21 {
		t.Errorf("after Raise to 20: count %d taken %v, want 21 true", n, ok)
	}
	other, err := queue.OpenRateStore(ctx, js, cfg, "basic:another@mautic", true)
	if err != nil {
		t.Fatal(err)
	}
	if n, ok, _ := other.Take(ctx, window, 25); !ok || n != 1 {
		t.Errorf("another scope shares the bucket but not the count: %d %v", n, ok)
	}
}

// TestMembersClaims: announcements list live members and expire; a claim
// is held by one member at a time, renewed with its revision, and free
// again once given up or expired.
func TestMembersClaims(t *testing.T) {
	_, _, js := setup(t)
	ctx := context.Background()
	m, err := queue.OpenMembers(ctx, js, queue.MembersBucketConfig("MEMBERS", time.Second, 1), true)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"b", "a"} {
		if err := m.Announce(ctx, id, nil); err != nil {
			t.Fatal(err)
		}
	}
	rev, ok, err := m.Claim(ctx, 3, "a")
	if err != nil || !ok {
		t.Fatalf("claim: %v %v", ok, err)
	}
	if l, err := m.List(ctx); err != nil || !slices.Equal(l, []string{"a", "b"}) {
		t.Errorf("members %v (%v), want [a b]: claims are not members", l, err)
	}
	if _, ok, _ := m.Claim(ctx, 3, "b"); ok {
		t.Error("b claimed partition 3 held by a")
	}
	rev2, ok, err := m.Renew(ctx, 3, "a", rev)
	if err != nil || !ok {
		t.Fatalf("renew: %v %v", ok, err)
	}
	if _, ok, _ := m.Renew(ctx, 3, "a", rev); ok {
		t.Error("a stale revision renewed the claim")
	}
	if err := m.Unclaim(ctx, 3, rev2); err != nil {
		t.Fatal(err)
	}
	rev3, ok, err := m.Claim(ctx, 3, "b")
	if err != nil || !ok {
		t.Fatalf("b could not claim a given-up partition: %v %v", ok, err)
	}
	if err := m.Leave(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	if l, _ := m.List(ctx); !slices.Equal(l, []string{"a"}) {
		t.Errorf("members %v after b left, want [a]", l)
	}
	waitFor(t, 5*time.Second, func() bool { l, _ := m.List(ctx); return len(l) == 0 })
	waitFor(t, 5*time.Second, func() bool { _, ok, _ := m.Claim(ctx, 3, "c"); return ok })
	if _, ok, _ := m.Renew(ctx, 3, "b", rev3); ok {
		t.Error("an expired claim was renewed")
	}
}

// TestEnsurePartitioned creates the partitioned stream and a consumer per
// partition; the transform puts one key's messages in one partition; an
// unpartitioned stream is refused with what to do.
func TestEnsurePartitioned(t *testing.T) {
	_, _, js := setup(t)
	ctx := context.Background()
	p := queue.Partitioning{Count: 3, Prefix: "in", PinTTL: 5 * time.Second}
	cons, err := queue.EnsurePartitioned(ctx, js, topo(), p, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(cons) != 3 {
		t.Fatalf("%d consumers, want 3", len(cons))
	}
	for i, c := range cons {
		cfg := c.CachedInfo().Config
		if cfg.Durable != fmt.Sprintf("c-p%d", i) || cfg.FilterSubject != fmt.Sprintf("in.%d.*", i) ||
			cfg.PriorityPolicy != jetstream.PriorityPolicyPinned || !slices.Equal(cfg.PriorityGroups, []string{queue.PriorityGroup}) || cfg.PinnedTTL != 5*time.Second {
			t.Errorf("consumer %d: %+v", i, cfg)
		}
	}
	parts := map[string]int{}
	s, _ := js.Stream(ctx, "IN")
	for i := range 30 {
		key := fmt.Sprintf("k%d", i%10)
		ack, err := js.Publish(ctx, "in."+key, nil)
		if err != nil {
			t.Fatal(err)
		}
		m, err := s.GetMsg(ctx, ack.Sequence)
		if err != nil {
			t.Fatal(err)
		}
		got := p.Of(m.Subject)
		if got < 0 || m.Subject != fmt.Sprintf("in.%d.%s", got, key) {
			t.Fatalf("stored as %s", m.Subject)
		}
		if prev, seen := parts[key]; seen && prev != got {
			t.Errorf("%s in partitions %d and %d", key, prev, got)
		}
		parts[key] = got
	}
	// Bound again: nothing created twice.
	if _, err := queue.EnsurePartitioned(ctx, js, topo(), p, false); err != nil {
		t.Fatal(err)
	}
	other := topo()
	other.Stream, other.Subjects = "IN2", []string{"in2.>"}
	if _, err := queue.Ensure(ctx, js, other, true); err != nil {
		t.Fatal(err)
	}
	p2 := queue.Partitioning{Count: 3, Prefix: "in2", PinTTL: time.Second}
	if _, err := queue.EnsurePartitioned(ctx, js, other, p2, true); err == nil {
		t.Error("an unpartitioned stream was accepted")
	} else {
		t.Log(err)
	}
}
