package mautic_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mautic-sync/mautic-sync/mautic"
)

// TestRateLimitResetNotBelievedBeyondAnHour: Mautic's limiter counts per
// hour, so an X-RateLimit-Reset further ahead (milliseconds, a proxy's own
// header) is not believed: it neither stops calls locally nor reaches the
// caller as a reset time to wait for. A believable one still does both.
func TestRateLimitResetNotBelievedBeyondAnHour(t *testing.T) {
	var status atomic.Int64
	var reset atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("X-RateLimit-Limit", "100")
		w.Header().Set("X-RateLimit-Remaining", "0")
		w.Header().Set("X-RateLimit-Reset", strconv.FormatInt(reset.Load(), 10))
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(int(status.Load()))
		_, _ = w.Write([]byte(`{"fields":[]}`))
	}))
	defer srv.Close()
	ctx := context.Background()
	for _, far := range []time.Time{time.Now().AddDate(100, 0, 0), time.Now().Add(time.Minute * 1000)} {
		mc, err := mautic.NewClient(srv.URL, mautic.WithBasicAuth("u", "p"))
		if err != nil {
			t.Fatal(err)
		}
		reset.Store(far.Unix())
		status.Store(http.StatusOK)
		if _, _, err := mc.ContactFields(ctx); err != nil {
			t.Fatal(err)
		}
		if _, _, err := mc.ContactFields(ctx); err != nil {
			t.Errorf("reset at %s: the next call was refused: %v", far, err)
		}
		status.Store(http.StatusTooManyRequests)
		_, _, err = mc.ContactFields(ctx)
		var rl *mautic.RateLimitError
		if !errors.As(err, &rl) {
			t.Fatalf("429 gave %v", err)
		}
		if !rl.Reset.IsZero() {
			t.Errorf("reset at %s handed to the caller as %s", far, rl.Reset)
		}
		if rl.Rate.Reset.Unix() != far.Unix() {
			t.Errorf("Rate.Reset %s, want the header's %s", rl.Rate.Reset, far)
		}
	}

	// A believable reset still stops calls until it passes.
	mc, err := mautic.NewClient(srv.URL, mautic.WithBasicAuth("u", "p"))
	if err != nil {
		t.Fatal(err)
	}
	reset.Store(time.Now().Add(30 * time.Second).Unix())
	status.Store(http.StatusOK)
	if _, _, err := mc.ContactFields(ctx); err != nil {
		t.Fatal(err)
	}
	_, _, err = mc.ContactFields(ctx)
	var rl *mautic.RateLimitError
	if !errors.As(err, &rl) || !rl.Local || rl.Reset.IsZero() {
		t.Errorf("a used-up window resetting in 30s: %v, want a local RateLimitError with its reset", err)
	}
}
