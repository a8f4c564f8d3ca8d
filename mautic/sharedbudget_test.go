package mautic_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/mautic-sync/mautic-sync/mautic"
	"github.com/mautic-sync/mautic-sync/mautic/mautictest"
)

// TestSharedBudgetAcrossClients: three clients (replicas) with one shared
// store stay under the limit together, and none reaches a 429.
func TestSharedBudgetAcrossClients(t *testing.T) {
	fake := mautictest.NewServer(mautictest.WithBasicAuth("u", "p"), mautictest.WithRateLimit(10, time.Hour))
	defer fake.Close()
	store := &mautic.MemoryRateStore{}
	var clients []*mautic.Client
	for range 3 {
		c, err := mautic.NewClient(fake.URL(), mautic.WithBasicAuth("u", "p"), mautic.WithSharedRateBudget(8, time.Hour, store))
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
	}
	ctx := context.Background()
	var mu sync.Mutex
	ok, local := 0, 0
	var wg sync.WaitGroup
	for i := range 30 {
		wg.Go(func() {
			_, _, err := clients[i%3].BatchUpsert(ctx, []mautic.Contact{{"email": fmt.Sprintf("s%d@x.io", i)}})
			mu.Lock()
			defer mu.Unlock()
			var re *mautic.RateLimitError
			switch {
			case err == nil:
				ok++
			case errors.As(err, &re) && re.Local:
				local++
				if !re.Reset.After(time.Now()) {
					t.Errorf("refused locally until %v, not a time ahead", re.Reset)
				}
			default:
				t.Errorf("call %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	if ok != 8 || local != 22 {
		t.Errorf("%d calls made, %d refused locally; want 8 and 22 (one budget for the three clients)", ok, local)
	}
	if n := fake.RequestCount(); n != 8 {
		t.Errorf("Mautic received %d requests, want 8", n)
	}
	for i, c := range clients {
		if left, _, on := c.Budget(); !on || left != 0 {
			t.Errorf("client %d: Budget() = %d, %v; want 0 left", i, left, on)
		}
	}
}

type failingStore struct{}

func (failingStore) Take(context.Context, time.Time, int) (int, bool, error) {
	return 0, false, errors.New("store unreachable")
}
func (failingStore) Raise(context.Context, time.Time, int) error { return nil }

// TestSharedBudgetStoreDown: a call the store cannot count is not made;
// its error is one to retry (not a rate limit, not the event's fault).
func TestSharedBudgetStoreDown(t *testing.T) {
	fake := mautictest.NewServer(mautictest.WithBasicAuth("u", "p"))
	defer fake.Close()
	c, err := mautic.NewClient(fake.URL(), mautic.WithBasicAuth("u", "p"), mautic.WithSharedRateBudget(8, time.Hour, failingStore{}))
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = c.BatchUpsert(context.Background(), []mautic.Contact{{"email": "a@x.io"}})
	if act, _ := mautic.Classify(err); err == nil || act != mautic.Retry {
		t.Errorf("error %v classified %v, want a retry", err, act)
	}
	if n := fake.RequestCount(); n != 0 {
		t.Errorf("%d requests made without the store's count", n)
	}
	if _, err := mautic.NewClient(fake.URL(), mautic.WithSharedRateBudget(8, time.Hour, nil)); !errors.Is(err, mautic.ErrInvalidOption) {
		t.Errorf("a shared budget without a store: %v", err)
	}
}
