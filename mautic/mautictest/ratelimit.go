package mautictest

import (
	"net/http"
	"strconv"
	"time"
)

// bucket is one key's fixed window in noxlogic's rate limiter.
type bucket struct {
	calls int
	reset time.Time
}

// rateCheck counts a request that reached a controller and sets the
// X-RateLimit-* headers. It writes the 429 and returns false when the
// key's calls exceed the limit. A window starts at the key's first call and
// ends at first call + window; there is no Retry-After and no
// Mautic-Version on the 429.
func (s *Server) rateCheck(w http.ResponseWriter, key string) bool {
	s.mu.Lock()
	limit, window, headers := s.sw.rateLimit, s.sw.rateWindow, s.sw.rateHeaders
	if limit <= 0 {
		s.mu.Unlock()
		return true
	}
	now := s.now()
	b, ok := s.st.buckets[key]
	if !ok || !now.Before(b.reset) {
		b = &bucket{reset: now.Add(window)}
		s.st.buckets[key] = b
	}
	b.calls++
	calls, reset := b.calls, b.reset
	s.mu.Unlock()

	if headers {
		h := w.Header()
		h.Set("X-RateLimit-Limit", strconv.Itoa(limit))
		h.Set("X-RateLimit-Remaining", strconv.Itoa(max(0, limit-calls)))
		h.Set("X-RateLimit-Reset", strconv.FormatInt(reset.Unix(), 10))
	}
	if calls > limit {
		writeBody(w, http.StatusTooManyRequests, "application/json", rateLimitBody(limit))
		return false
	}
	return true
}
