package mautictest_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mautic-sync/mautic-sync/mautic/mautictest"
)

func TestAPIDisabled(t *testing.T) {
	t.Parallel()
	srv := newServer(t, mautictest.WithClientCredentials("cid", "cs"))
	srv.SetAPIEnabled(false)
	for _, tc := range []struct{ method, path string }{
		{"GET", "/api/contacts"},
		{"POST", "/oauth/v2/token"},
		{"GET", "/api/nowhere"},
	} {
		r := do(t, srv, tc.method, tc.path, nil)
		wantStatus(t, r, http.StatusForbidden)
		wantBody(t, r, bodyAPIDisabled)
		noVersion(t, r)
	}
	srv.SetAPIEnabled(true)
	wantStatus(t, do(t, srv, "GET", "/api/contacts", nil), http.StatusUnauthorized)
}

func TestDownServesHTMLEverywhere(t *testing.T) {
	t.Parallel()
	srv := newServer(t, mautictest.WithBasicAuth("u", "p"))
	srv.SetDown(http.StatusServiceUnavailable)
	for _, path := range []string{"/api/contacts", "/oauth/v2/token", "/s/login"} {
		r := do(t, srv, "GET", path, nil)
		wantStatus(t, r, http.StatusServiceUnavailable)
		if !strings.HasPrefix(r.Header.Get("Content-Type"), "text/html") || !strings.Contains(string(r.Body), "Site is offline") {
			t.Errorf("%s: %s %s", path, r.Header.Get("Content-Type"), r.Body)
		}
		noVersion(t, r)
	}
	srv.SetDown(http.StatusBadGateway)
	r := do(t, srv, "GET", "/api/contacts", nil)
	wantStatus(t, r, http.StatusBadGateway)
	if !strings.Contains(string(r.Body), "502 Bad Gateway") {
		t.Errorf("body = %s", r.Body)
	}
	srv.SetDown(0)
	wantStatus(t, do(t, srv, "GET", "/api/contacts", nil, basic("u", "p")), http.StatusOK)
}

func TestFailNext(t *testing.T) {
	t.Parallel()
	srv := newServer(t, mautictest.WithBasicAuth("u", "p"), mautictest.WithRateLimit(10, time.Hour))
	srv.FailNext(2, http.StatusInternalServerError, "<b>Fatal error</b>: Allowed memory size exhausted", "text/html")
	for range 2 {
		r := do(t, srv, "GET", "/api/contacts", nil) // before auth: no credentials needed
		wantStatus(t, r, http.StatusInternalServerError)
		wantBody(t, r, "<b>Fatal error</b>: Allowed memory size exhausted")
		if r.Header.Get("Content-Type") != "text/html" {
			t.Errorf("content type = %q", r.Header.Get("Content-Type"))
		}
	}
	r := do(t, srv, "GET", "/api/contacts", nil, basic("u", "p"))
	wantStatus(t, r, http.StatusOK)
	if got := r.Header.Get("X-RateLimit-Remaining"); got != "9" {
		t.Errorf("failed requests must not count: remaining %s, want 9", got)
	}
}

func TestHook(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	srv.SetHook(func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Query().Get("boom") == "" {
			return false
		}
		w.WriteHeader(http.StatusTeapot)
		return true
	})
	wantStatus(t, do(t, srv, "GET", "/api/contacts?boom=1", nil), http.StatusTeapot)
	wantStatus(t, do(t, srv, "GET", "/api/contacts", nil), http.StatusOK)
	srv.SetHook(nil)
	wantStatus(t, do(t, srv, "GET", "/api/contacts?boom=1", nil), http.StatusOK)
	if got := srv.Requests()[0].Status; got != http.StatusTeapot {
		t.Errorf("hooked request recorded with status %d", got)
	}
}

func TestHookCanCutTheConnection(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	srv.SetHook(func(w http.ResponseWriter, r *http.Request) bool {
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return false
		}
		conn.Close()
		return true
	})
	if res, err := http.Get(srv.URL() + "/api/contacts"); err == nil {
		res.Body.Close()
		t.Fatal("want a transport error")
	}
	srv.SetHook(nil)
	// The client may see the closed connection before the request is
	// recorded.
	waitFor(t, func() bool { return srv.RequestCount() > 0 })
	if got := srv.Requests()[0].Status; got != 0 {
		t.Errorf("hijacked request recorded with status %d, want 0", got)
	}
}

func TestRoutingErrors(t *testing.T) {
	t.Parallel()
	srv := newServer(t, mautictest.WithBasicAuth("u", "p"))

	r := do(t, srv, "GET", "/api/contacts/abc", nil) // ids must be digits; routing precedes auth
	wantStatus(t, r, http.StatusNotFound)
	wantBody(t, r, `{"errors":[{"message":"No route found for \u0022GET \/api\/contacts\/abc\u0022","code":404,"type":null}]}`)
	noVersion(t, r)

	r = do(t, srv, "GET", "/api/contacts/new", nil)
	wantStatus(t, r, http.StatusMethodNotAllowed)
	wantBody(t, r, `{"errors":[{"message":"Looks like I encountered an error (error #405). If I do it again, please report me to the system administrator!","code":405,"type":null}]}`)
	if r.Header.Get("Allow") != "POST" {
		t.Errorf("Allow = %q", r.Header.Get("Allow"))
	}

	// There is no batch-remove route for segments.
	wantStatus(t, do(t, srv, "POST", "/api/segments/1/contacts/remove", nil), http.StatusNotFound)

	r = do(t, srv, "POST", "/api/contacts/new", raw{"application/json", `{"email":`}, basic("u", "p"))
	wantStatus(t, r, http.StatusBadRequest)
	wantBody(t, r, `{"errors":[{"message":"Looks like I encountered an error (error #400). If I do it again, please report me to the system administrator!","code":400,"type":null}]}`)

	r = do(t, srv, "GET", "/index.php", nil)
	wantStatus(t, r, http.StatusNotFound)
	if !strings.HasPrefix(r.Header.Get("Content-Type"), "text/html") {
		t.Error("non-API paths answer HTML")
	}
}

func TestBasePath(t *testing.T) {
	t.Parallel()
	srv := newServer(t, mautictest.WithBasePath("/mautic/"))
	if !strings.HasSuffix(srv.URL(), "/mautic") {
		t.Fatalf("URL = %q", srv.URL())
	}
	r := do(t, srv, "POST", "/api/contacts/new", map[string]any{"email": "bp@example.com"})
	wantStatus(t, r, http.StatusCreated)
	if got := r.Header.Get("Location"); got != "/mautic/api/contacts/1" {
		t.Errorf("Location = %q", got)
	}
	root := strings.TrimSuffix(srv.URL(), "/mautic")
	wantStatus(t, send(t, root, "GET", "/api/contacts", nil), http.StatusNotFound)
	if got := srv.Requests()[0].Path; got != "/api/contacts/new" {
		t.Errorf("recorded path = %q, want it without the base path", got)
	}
}

func TestRequestsAndReset(t *testing.T) {
	t.Parallel()
	srv := newServer(t, mautictest.WithRequestLogLimit(2))
	newContact(t, srv, map[string]any{"email": "a@example.com"})
	do(t, srv, "GET", "/api/contacts?limit=5", nil, bearer("t"))
	do(t, srv, "DELETE", "/api/contacts/batch/delete?ids=1", nil)
	reqs := srv.Requests()
	if len(reqs) != 2 || srv.RequestCount() != 3 {
		t.Fatalf("log %d count %d, want 2 and 3", len(reqs), srv.RequestCount())
	}
	got := reqs[0]
	if got.Method != "GET" || got.Path != "/api/contacts" || got.RawQuery != "limit=5" || got.Auth != "bearer" ||
		got.Status != 200 || got.Items != 1 || got.End.Before(got.Start) {
		t.Errorf("request = %+v", got)
	}
	srv.Reset()
	if srv.RequestCount() != 0 || len(srv.Contacts()) != 0 || len(srv.Requests()) != 0 {
		t.Error("Reset must forget everything")
	}
	if id := newContact(t, srv, map[string]any{"email": "b@example.com"}); id != 1 {
		t.Errorf("ids restart after Reset, got %d", id)
	}
}

func TestLatency(t *testing.T) {
	t.Parallel()
	srv := newServer(t, mautictest.WithLatency(20*time.Millisecond, 5*time.Millisecond))
	start := time.Now()
	do(t, srv, "POST", "/api/contacts/batch/new", []any{map[string]any{"email": "a@x.io"}, map[string]any{"email": "b@x.io"}})
	if d := time.Since(start); d < 30*time.Millisecond {
		t.Errorf("batch of 2 took %v, want >= 30ms", d)
	}
	srv.SetLatency(0, 0)
	start = time.Now()
	do(t, srv, "GET", "/api/contacts", nil)
	if d := time.Since(start); d > time.Second {
		t.Errorf("latency not removed: %v", d)
	}
}

func TestUnstartedHandler(t *testing.T) {
	t.Parallel()
	srv := mautictest.NewUnstartedHandler(mautictest.WithBasePath("/m"))
	defer srv.Close()
	if srv.URL() != "" {
		t.Errorf("URL = %q, want empty", srv.URL())
	}
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	wantStatus(t, send(t, ts.URL+"/m", "GET", "/api/contacts", nil), http.StatusOK)
}
