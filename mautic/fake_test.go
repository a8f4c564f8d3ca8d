package mautic_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mautic-sync/mautic-sync/mautic"
	"github.com/mautic-sync/mautic-sync/mautic/mautictest"
)

func TestTokenExpiryCostsOneRequest(t *testing.T) {
	fake := mautictest.NewServer(mautictest.WithClientCredentials("1_c", "s3cret"))
	defer fake.Close()
	c, err := mautic.NewClient(fake.URL(), mautic.WithClientCredentials("1_c", "s3cret"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := range 3 {
		if _, _, err := c.BatchUpsert(ctx, []mautic.Contact{{"email": fmt.Sprintf("a%d@x.io", i)}}); err != nil {
			t.Fatal(err)
		}
	}
	before := fake.RequestCount()
	fake.ExpireAllTokens()
	if _, _, err := c.BatchUpsert(ctx, []mautic.Contact{{"email": "b@x.io"}}); err != nil {
		t.Fatalf("after expiry: %v", err)
	}
	// The refused call, one token request, the repeated call.
	if got := fake.RequestCount() - before; got != 3 {
		t.Errorf("%d requests after expiry, want 3 (refused call, token, retry)", got)
	}
	if got := c.TokenRenewals(); got != 2 {
		t.Errorf("%d token renewals, want 2", got)
	}
	fake.RevokeAllTokens()
	if _, _, err := c.BatchUpsert(ctx, []mautic.Contact{{"email": "c@x.io"}}); err != nil {
		t.Fatalf("after revocation: %v", err)
	}
}

func TestRefreshTokenRotationAcrossTwoWorkers(t *testing.T) {
	fake := mautictest.NewServer(mautictest.WithRefreshToken("2_r", "r-secret", "seed-refresh-token"), mautictest.WithTokenLifetime(time.Hour))
	defer fake.Close()
	store := &mautic.MemoryTokenStore{}
	newClient := func() *mautic.Client {
		c, err := mautic.NewClient(fake.URL(), mautic.WithRefreshToken("2_r", "r-secret", "seed-refresh-token", store))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	a, b := newClient(), newClient()
	ctx := context.Background()
	// Both start at the same moment from the same seed.
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, c := range []*mautic.Client{a, b} {
		wg.Go(func() {
			_, _, errs[i] = c.BatchUpsert(ctx, []mautic.Contact{{"email": fmt.Sprintf("w%d@x.io", i)}})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("worker %d: %v", i, err)
		}
	}
	// Both expire and renew together, several times over.
	for round := range 3 {
		fake.ExpireAllTokens()
		for i, c := range []*mautic.Client{a, b} {
			wg.Go(func() {
				_, _, errs[i] = c.BatchUpsert(ctx, []mautic.Contact{{"email": fmt.Sprintf("r%d-%d@x.io", round, i)}})
			})
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("round %d worker %d: %v", round, i, err)
			}
		}
	}
	st, _, err := store.Load(ctx)
	if err != nil || st.RefreshToken == "" || st.RefreshToken == "seed-refresh-token" {
		t.Errorf("stored token %+v, %v: want a rotated refresh token", st, err)
	}
	// A third worker started later picks up the stored token, not the dead seed.
	if _, _, err := newClient().BatchUpsert(ctx, []mautic.Contact{{"email": "late@x.io"}}); err != nil {
		t.Errorf("late worker: %v", err)
	}
}

func TestDeadRefreshTokenIsAuthError(t *testing.T) {
	fake := mautictest.NewServer(mautictest.WithRefreshToken("2_r", "r-secret", "the-real-one"))
	defer fake.Close()
	c, _ := mautic.NewClient(fake.URL(), mautic.WithRefreshToken("2_r", "r-secret", "not-a-token", &mautic.MemoryTokenStore{}))
	_, _, err := c.BatchUpsert(context.Background(), []mautic.Contact{{"email": "a@x.io"}})
	var ae *mautic.AuthError
	if !errors.As(err, &ae) || !strings.Contains(err.Error(), "MAUTIC_REFRESH_TOKEN") {
		t.Fatalf("error %v, want an *AuthError naming MAUTIC_REFRESH_TOKEN", err)
	}
	if strings.Contains(err.Error(), "r-secret") || strings.Contains(err.Error(), "not-a-token") {
		t.Errorf("error leaks a secret: %v", err)
	}
}

func TestBudgetNeverExceedsWindow(t *testing.T) {
	fake := mautictest.NewServer(mautictest.WithBasicAuth("u", "p"), mautictest.WithRateLimit(10, time.Hour))
	defer fake.Close()
	c, _ := mautic.NewClient(fake.URL(), mautic.WithBasicAuth("u", "p"), mautic.WithRateBudget(6, time.Hour))
	ctx := context.Background()
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok, limited := 0, 0
	for i := range 20 {
		wg.Go(func() {
			_, _, err := c.BatchUpsert(ctx, []mautic.Contact{{"email": fmt.Sprintf("b%d@x.io", i)}})
			mu.Lock()
			defer mu.Unlock()
			var re *mautic.RateLimitError
			switch {
			case err == nil:
				ok++
			case errors.As(err, &re) && re.Local:
				limited++
			default:
				t.Errorf("call %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	if ok != 6 || limited != 14 {
		t.Errorf("%d calls made, %d refused locally; want 6 and 14", ok, limited)
	}
	if n := fake.RequestCount(); n != 6 {
		t.Errorf("%d requests reached Mautic, want 6", n)
	}
	left, reset, on := c.Budget()
	if !on || left != 0 || time.Until(reset) < 59*time.Minute {
		t.Errorf("Budget() = %d, %v, %v", left, reset, on)
	}
}

func TestRateLimitLearnedFromHeaders(t *testing.T) {
	fake := mautictest.NewServer(mautictest.WithBasicAuth("u", "p"), mautictest.WithRateLimit(3, time.Hour))
	defer fake.Close()
	c, _ := mautic.NewClient(fake.URL(), mautic.WithBasicAuth("u", "p"))
	ctx := context.Background()
	var got429 int
	for i := range 6 {
		_, _, err := c.BatchUpsert(ctx, []mautic.Contact{{"email": fmt.Sprintf("h%d@x.io", i)}})
		var re *mautic.RateLimitError
		if errors.As(err, &re) && !re.Local {
			got429++
		}
	}
	if got429 != 0 {
		t.Errorf("%d 429s: the client must stop at Remaining 0", got429)
	}
	if n := fake.RequestCount(); n != 3 {
		t.Errorf("%d requests, want 3", n)
	}
	if r := c.Rate(); r.Limit != 3 || r.Remaining != 0 {
		t.Errorf("Rate() = %+v", r)
	}
}

func TestContactFieldsAndVersion(t *testing.T) {
	fake := mautictest.NewServer(mautictest.WithVersion("6.0.1"), mautictest.WithFields(mautictest.Field{Alias: "loyalty_tier"}))
	defer fake.Close()
	c, _ := mautic.NewClient(fake.URL())
	fields, resp, err := c.ContactFields(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	aliases := map[string]bool{}
	for _, f := range fields {
		aliases[f.Alias] = true
	}
	for _, want := range []string{"email", "firstname", "city", "loyalty_tier"} {
		if !aliases[want] {
			t.Errorf("field %s missing from %d fields", want, len(fields))
		}
	}
	if resp.Version != "6.0.1" || c.Version() != "6.0.1" {
		t.Errorf("version %q", c.Version())
	}
}

func TestObserverSeesEveryRequest(t *testing.T) {
	fake := mautictest.NewServer(mautictest.WithClientCredentials("1_c", "s"))
	defer fake.Close()
	var mu sync.Mutex
	var routes []string
	c, _ := mautic.NewClient(fake.URL(), mautic.WithClientCredentials("1_c", "s"), mautic.WithObserver(func(call mautic.Call) {
		mu.Lock()
		defer mu.Unlock()
		routes = append(routes, fmt.Sprintf("%s %d", call.Route, call.Status))
	}))
	if _, _, err := c.AddToSegment(context.Background(), 3, []int{1}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(routes, ",") != "oauth/v2/token 200,segments/{id}/contacts/add 200" {
		t.Errorf("observed %v", routes)
	}
}

// Calls in flight count against the Remaining Mautic last reported: eight
// concurrent callers on a limit of 12 (learned from one call's headers)
// make exactly the 11 calls left and collect no 429, where each would
// otherwise go out on the same stale Remaining.
func TestRateLimitCountsCallsInFlight(t *testing.T) {
	fake := mautictest.NewServer(mautictest.WithBasicAuth("u", "p"), mautictest.WithRateLimit(12, time.Hour),
		mautictest.WithLatency(20*time.Millisecond, 0))
	defer fake.Close()
	c, _ := mautic.NewClient(fake.URL(), mautic.WithBasicAuth("u", "p"))
	ctx := context.Background()
	if _, _, err := c.BatchUpsert(ctx, []mautic.Contact{{"email": "first@x.io"}}); err != nil {
		t.Fatal(err) // learns limit 12, remaining 11
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok, local, got429 := 0, 0, 0
	for w := range 8 {
		wg.Go(func() {
			for i := range 4 {
				_, _, err := c.BatchUpsert(ctx, []mautic.Contact{{"email": fmt.Sprintf("f%d-%d@x.io", w, i)}})
				var re *mautic.RateLimitError
				mu.Lock()
				switch {
				case err == nil:
					ok++
				case errors.As(err, &re) && re.Local:
					local++
				case errors.As(err, &re):
					got429++
				default:
					t.Errorf("call: %v", err)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if got429 != 0 || ok != 11 || local != 32-11 {
		t.Errorf("%d made, %d refused locally, %d 429s; want 11, 21, 0", ok, local, got429)
	}
	if n := fake.RequestCount(); n != 12 {
		t.Errorf("%d requests reached Mautic, want 12", n)
	}
}
