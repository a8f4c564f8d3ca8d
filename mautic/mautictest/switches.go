package mautictest

import (
	"net/http"
	"time"
)

// switches are the runtime settings; each setter takes effect for the next
// request that reads it.
type switches struct {
	apiEnabled   bool
	basicEnabled bool
	down         int
	fail         failure
	failN        int
	perCall      time.Duration
	perItem      time.Duration
	rateLimit    int
	rateWindow   time.Duration
	rateHeaders  bool
	hook         func(http.ResponseWriter, *http.Request) bool
	reject       func(item map[string]any) (int, string)
}

// failure is a canned response set by FailNext.
type failure struct {
	status      int
	body        string
	contentType string
}

// SetAPIEnabled switches Mautic's api_enabled setting. When false, every
// /api and /oauth request answers 403 {"errors":[{"message":"API disabled.
// ...","code":403,"type":"api_disabled"}]}.
func (s *Server) SetAPIEnabled(enabled bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sw.apiEnabled = enabled
}

// SetBasicAuthEnabled switches api_enable_basic_auth. When false, any
// request with an "Authorization: Basic ..." header (including client
// credentials sent that way to the token endpoint) answers 403 "Basic Auth
// disabled. ...". It starts true when WithBasicAuth was given or no
// authentication is configured, false when only OAuth2 clients are.
func (s *Server) SetBasicAuthEnabled(enabled bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sw.basicEnabled = enabled
}

// SetDown makes every request (API or not) answer an HTML error page with
// this status, as a proxy or Mautic's "Site is offline" page would; 503
// gives the maintenance page, other 5xx an nginx-style page. 0 brings the
// server back up.
func (s *Server) SetDown(status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sw.down = status
}

// FailNext makes the next n /api requests answer status with this raw body
// and content type (empty: sniffed by net/http), before authentication and
// without counting against the rate limit. It replaces any pending failures.
func (s *Server) FailNext(n int, status int, body string, contentType string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sw.failN = max(n, 0)
	s.sw.fail = failure{status: status, body: body, contentType: contentType}
}

// takeFailureLocked consumes one FailNext response for an /api request.
func (s *Server) takeFailureLocked(area string) (failure, bool) {
	if area != "api" || s.sw.failN == 0 {
		return failure{}, false
	}
	s.sw.failN--
	return s.sw.fail, true
}

// SetLatency changes the latency set by WithLatency.
func (s *Server) SetLatency(perCall, perItem time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sw.perCall, s.sw.perItem = perCall, perItem
}

// SetRateLimit changes the rate limiter (0 turns it off). Windows already
// started keep their reset time.
func (s *Server) SetRateLimit(limit int, window time.Duration) {
	checkRateLimit(limit, window)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sw.rateLimit, s.sw.rateWindow = limit, window
}

// SetRateLimitHeaders controls the X-RateLimit-Limit, -Remaining and -Reset
// headers sent while the limiter is on (default true). False imitates a
// proxy that strips them; the 429 itself is unchanged.
func (s *Server) SetRateLimitHeaders(enabled bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sw.rateHeaders = enabled
}

// SetHook installs a function called first for every request, before any
// other gate; if it returns true it has written the response and the fake
// does nothing else (the request is still recorded). nil removes it. The
// hook runs without the server's lock and may call the Server's methods.
func (s *Server) SetHook(hook func(w http.ResponseWriter, r *http.Request) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sw.hook = hook
}

// RejectItems installs an extra validator for contact payloads in
// /contacts/new, /contacts/{id}/edit, batch/new and batch/edit. It receives
// a copy of each item before Mautic's own validation; a non-zero status
// fails that item with the message (a single call answers
// {"errors":[{"code":status,"message":message,"details":[]}]}, a batch item
// gets {"code","message","details":[],"type":null}); 0 lets Mautic's
// validation proceed. nil removes it.
func (s *Server) RejectItems(fn func(item map[string]any) (status int, message string)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sw.reject = fn
}
