package mautictest_test

import (
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/mautic-sync/mautic-sync/mautic/mautictest"
)

const body429 = `{ "errors": [ { "code": 429, "message": "You exceeded the rate limit of 3 API calls per hour.", "details": [] } ]}`

func wantRateHeaders(t *testing.T, r resp, limit, remaining int, reset time.Time) {
	t.Helper()
	h := r.Header
	if h.Get("X-RateLimit-Limit") != strconv.Itoa(limit) ||
		h.Get("X-RateLimit-Remaining") != strconv.Itoa(remaining) ||
		h.Get("X-RateLimit-Reset") != strconv.FormatInt(reset.Unix(), 10) {
		t.Errorf("rate headers = %s/%s/%s, want %d/%d/%d",
			h.Get("X-RateLimit-Limit"), h.Get("X-RateLimit-Remaining"), h.Get("X-RateLimit-Reset"),
			limit, remaining, reset.Unix())
	}
}

func TestRateLimitFixedWindow(t *testing.T) {
	t.Parallel()
	start := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	clock := newFakeClock(start)
	srv := newServer(t,
		mautictest.WithBasicAuth("u", "p"),
		mautictest.WithRateLimit(3, time.Hour),
		mautictest.WithClock(clock.Now),
	)
	reset := start.Add(time.Hour)
	for i := 1; i <= 3; i++ {
		r := do(t, srv, "GET", "/api/contacts", nil, basic("u", "p"))
		wantStatus(t, r, http.StatusOK)
		wantRateHeaders(t, r, 3, 3-i, reset)
		clock.Advance(time.Minute)
	}
	// 404s from the controller count too.
	r := do(t, srv, "GET", "/api/contacts/1", nil, basic("u", "p"))
	wantStatus(t, r, http.StatusTooManyRequests)
	wantBody(t, r, body429)
	wantRateHeaders(t, r, 3, 0, reset)
	noVersion(t, r)
	if r.Header.Get("Retry-After") != "" {
		t.Error("Mautic sends no Retry-After")
	}

	// Auth failures are neither counted nor limited.
	wantStatus(t, do(t, srv, "GET", "/api/contacts", nil, basic("u", "bad")), http.StatusUnauthorized)

	clock.Advance(time.Hour - 3*time.Minute - time.Second)
	wantStatus(t, do(t, srv, "GET", "/api/contacts", nil, basic("u", "p")), http.StatusTooManyRequests)
	clock.Advance(time.Second)
	r = do(t, srv, "GET", "/api/contacts", nil, basic("u", "p"))
	wantStatus(t, r, http.StatusOK)
	wantRateHeaders(t, r, 3, 2, clock.Now().Add(time.Hour))
}

func TestRateLimitPerToken(t *testing.T) {
	t.Parallel()
	srv := newServer(t, mautictest.WithClientCredentials("cid", "cs"), mautictest.WithRateLimit(3, time.Hour))
	first := token(t, srv, "cid", "cs")
	for range 3 {
		wantStatus(t, do(t, srv, "GET", "/api/contacts", nil, bearer(first)), http.StatusOK)
	}
	wantStatus(t, do(t, srv, "GET", "/api/contacts", nil, bearer(first)), http.StatusTooManyRequests)
	// The token endpoint is not limited, and a new token has a new bucket.
	second := token(t, srv, "cid", "cs")
	r := do(t, srv, "GET", "/api/contacts", nil, bearer(second))
	wantStatus(t, r, http.StatusOK)
	if got := r.Header.Get("X-RateLimit-Remaining"); got != "2" {
		t.Errorf("fresh bucket remaining = %s, want 2", got)
	}
}

func TestRateLimitSwitches(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	r := do(t, srv, "GET", "/api/contacts", nil)
	if r.Header.Get("X-RateLimit-Limit") != "" {
		t.Error("the limiter is off by default")
	}
	srv.SetRateLimit(1, time.Hour)
	wantStatus(t, do(t, srv, "GET", "/api/contacts", nil), http.StatusOK)
	srv.SetRateLimitHeaders(false)
	r = do(t, srv, "GET", "/api/contacts", nil)
	wantStatus(t, r, http.StatusTooManyRequests)
	if r.Header.Get("X-RateLimit-Limit") != "" || r.Header.Get("X-RateLimit-Remaining") != "" {
		t.Error("headers must be omitted")
	}
	srv.SetRateLimit(0, 0)
	wantStatus(t, do(t, srv, "GET", "/api/contacts", nil), http.StatusOK)
}
