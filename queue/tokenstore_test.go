package queue_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/mautic-sync/mautic-sync/mautic"
	"github.com/mautic-sync/mautic-sync/mautic/mautictest"
	"github.com/mautic-sync/mautic-sync/queue"
)

// Two workers (two clients, two stores on one bucket) renew the rotating
// refresh token at the same moment, over and over: no lock-out.
func TestTokenStoreSharedAcrossWorkers(t *testing.T) {
	_, _, js := setup(t)
	ctx := context.Background()
	fake := mautictest.NewServer(mautictest.WithRefreshToken("3_x", "x-secret", "seed-token"))
	defer fake.Close()
	newClient := func() *mautic.Client {
		store, err := queue.OpenTokenStore(ctx, js, "AUTH", "3_x", true)
		if err != nil {
			t.Fatal(err)
		}
		c, err := mautic.NewClient(fake.URL(), mautic.WithRefreshToken("3_x", "x-secret", "seed-token", store))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	a, b := newClient(), newClient()
	for round := range 4 {
		fake.ExpireAllTokens()
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i, c := range []*mautic.Client{a, b} {
			wg.Go(func() {
				_, _, errs[i] = c.BatchUpsert(ctx, []mautic.Contact{{"email": fmt.Sprintf("r%d-%d@x.io", round, i)}})
			})
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("round %d worker %d: %v", round, i, err)
			}
		}
	}
	store, _ := queue.OpenTokenStore(ctx, js, "AUTH", "3_x", false)
	st, rev, err := store.Load(ctx)
	if err != nil || st.RefreshToken == "" || st.RefreshToken == "seed-token" || rev == 0 {
		t.Errorf("stored %+v rev %d, %v", st, rev, err)
	}
	if err := store.Save(ctx, st, rev+5); err != mautic.ErrTokenConflict {
		t.Errorf("Save with a stale revision: %v, want ErrTokenConflict", err)
	}
}
