package mautictest

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"
)

// maxRequestBody bounds how much of a request body the fake reads.
const maxRequestBody = 64 << 20

// Server is a fake Mautic. Create it with NewServer (listening on loopback)
// or NewUnstartedHandler (serve Handler yourself). All methods are safe for
// concurrent use.
type Server struct {
	cfg       config
	ts        *httptest.Server
	openMode  bool
	segments  map[int]segment
	closed    chan struct{}
	closeOnce sync.Once

	mu       sync.Mutex // guards everything below
	sw       switches
	fields   []fieldDef
	st       state
	inflight inflight
}

// NewServer starts a fake Mautic on 127.0.0.1 with a random port. Close it
// when done.
func NewServer(opts ...Option) *Server {
	s := NewUnstartedHandler(opts...)
	s.ts = httptest.NewServer(s.Handler())
	return s
}

// NewUnstartedHandler builds a fake Mautic without a listener: serve
// Handler with any server (dev mode does so on a fixed address). URL returns
// "" for it; Close still stops pending latency waits.
func NewUnstartedHandler(opts ...Option) *Server {
	cfg := defaultConfig()
	for _, o := range opts {
		o(&cfg)
	}
	s := &Server{
		cfg:      cfg,
		openMode: !cfg.basicSet && len(cfg.clients) == 0,
		segments: newSegments(cfg.segments),
		closed:   make(chan struct{}),
		fields:   newFieldList(cfg.fields),
	}
	s.sw = switches{
		apiEnabled:   true,
		basicEnabled: cfg.basicSet || s.openMode,
		perCall:      cfg.perCall,
		perItem:      cfg.perItem,
		rateLimit:    cfg.rateLimit,
		rateWindow:   cfg.rateWindow,
		rateHeaders:  true,
	}
	s.inflight = newInflight()
	s.resetLocked()
	return s
}

// URL is the base URL to give a client as MAUTIC_URL, including the base
// path; "" when the server was built with NewUnstartedHandler.
func (s *Server) URL() string {
	if s.ts == nil {
		return ""
	}
	return s.ts.URL + s.cfg.basePath
}

// Close stops the server: pending latency waits end at once and, for a
// NewServer, the listener closes after in-flight requests finish.
func (s *Server) Close() {
	s.closeOnce.Do(func() { close(s.closed) })
	if s.ts != nil {
		s.ts.Close()
	}
}

// Handler is the fake's http.Handler, including the base path.
func (s *Server) Handler() http.Handler { return http.HandlerFunc(s.serveHTTP) }

// now is the server's clock.
func (s *Server) now() time.Time { return s.cfg.clock() }

// sleep waits d or until the server closes.
func (s *Server) sleep(d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-s.closed:
	}
}

// statusWriter records the request as soon as its status is decided, so
// that a client never sees a response before Requests lists it. It passes
// Flush and Hijack through (also via http.ResponseController) so hooks can
// stream or cut connections.
type statusWriter struct {
	http.ResponseWriter
	status   int
	hijacked bool
	done     bool
	finish   func(status int)
	// release, when set, ends the request's write registration as its
	// response starts: Mautic has committed its writes before it answers,
	// and a client may send its next write the moment it reads the answer.
	release func()
}

// record calls release and finish once.
func (w *statusWriter) record(status int) {
	if !w.done {
		w.done = true
		if w.release != nil {
			w.release()
		}
		w.finish(status)
	}
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
		w.record(code)
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush implements http.Flusher.
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		if w.status == 0 {
			w.WriteHeader(http.StatusOK)
		}
		f.Flush()
	}
}

// Hijack implements http.Hijacker.
func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	h, ok := w.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, http.ErrNotSupported
	}
	w.hijacked = true
	return h.Hijack()
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	body, _ := io.ReadAll(io.LimitReader(r.Body, maxRequestBody))
	_ = r.Body.Close()
	r.Body = io.NopCloser(bytes.NewReader(body))

	rel, inside := s.relPath(r.URL.Path)
	rec := &Request{
		Method:   r.Method,
		Path:     rel,
		RawQuery: r.URL.RawQuery,
		Body:     body,
		Auth:     authKind(r, body),
		Items:    1,
		Start:    start,
	}
	sw := &statusWriter{ResponseWriter: w, finish: func(status int) {
		rec.Status, rec.End = status, time.Now()
		s.record(rec)
	}}
	defer func() {
		if sw.hijacked {
			sw.record(0)
		}
		sw.record(http.StatusOK) // nothing written: net/http's default
	}()
	s.serve(sw, r, rel, inside, body, rec)
}

// relPath strips the base path.
func (s *Server) relPath(p string) (string, bool) {
	bp := s.cfg.basePath
	if bp == "" {
		return p, true
	}
	if p == bp || strings.HasPrefix(p, bp+"/") {
		return strings.TrimPrefix(p, bp), true
	}
	return p, false
}

// serve runs Mautic's gates in order (see the package documentation).
func (s *Server) serve(w http.ResponseWriter, r *http.Request, rel string, inside bool, body []byte, rec *Request) {
	s.mu.Lock()
	hook, down := s.sw.hook, s.sw.down
	s.mu.Unlock()
	if hook != nil && hook(w, r) {
		return
	}
	// The hook may have read the body.
	r.Body = io.NopCloser(bytes.NewReader(body))
	if down != 0 {
		writeHTMLPage(w, down)
		return
	}
	area := apiArea(rel)
	if !inside || area == "" {
		writeHTMLPage(w, http.StatusNotFound)
		return
	}

	s.mu.Lock()
	fail, failing := s.takeFailureLocked(area)
	apiEnabled, basicEnabled := s.sw.apiEnabled, s.sw.basicEnabled
	s.mu.Unlock()
	if failing {
		writeRaw(w, fail.status, fail.body, fail.contentType)
		return
	}
	// ApiSubscriber, before the router.
	if !apiEnabled {
		writeSubscriberError(w, http.StatusForbidden, msgAPIDisabled, "api_disabled")
		return
	}
	if isBasicHeader(r) && !basicEnabled {
		writeSubscriberError(w, http.StatusForbidden, msgBasicDisabled, "access_denied")
		return
	}
	if area == "oauth" {
		s.serveOAuth(w, r, rel, body)
		return
	}

	// Router, then FOSRest's body listener, then the firewall.
	rt, params, allowed := matchRoute(r.Method, strings.TrimPrefix(rel, "/api"))
	if rt == nil {
		s.routeError(w, r, rel, allowed)
		return
	}
	payload, err := decodeBody(r, body)
	if err != nil {
		writeExceptionError(w, http.StatusBadRequest, "")
		return
	}
	key, authErr := s.authenticate(r, payload)
	if authErr != nil {
		authErr.write(w)
		return
	}
	// The rate limiter runs on kernel.controller: every request that gets
	// this far counts.
	if !s.rateCheck(w, key) {
		return
	}
	c := &call{s: s, w: w, r: r, params: params, body: payload, rec: rec}
	s.runController(c, rt)
}

// apiArea classifies a path (without base path) as "api", "oauth" or "".
func apiArea(rel string) string {
	switch {
	case rel == "/api" || strings.HasPrefix(rel, "/api/"):
		return "api"
	case rel == "/oauth" || strings.HasPrefix(rel, "/oauth/"):
		return "oauth"
	}
	return ""
}

// routeError writes the router's 404 or 405 through ExceptionController.
func (s *Server) routeError(w http.ResponseWriter, r *http.Request, rel string, allowed []string) {
	if len(allowed) > 0 {
		w.Header().Set("Allow", strings.Join(allowed, ", "))
		writeExceptionError(w, http.StatusMethodNotAllowed, "")
		return
	}
	msg := `No route found for "` + r.Method + " " + rel + `"`
	if ref := r.Header.Get("Referer"); ref != "" {
		msg += ` (from "` + ref + `")`
	}
	writeExceptionError(w, http.StatusNotFound, msg)
}

// runController runs a matched route: it registers the writes it is about
// to make (for MaxConcurrentWritesPerContact and the duplicate race), waits
// the per-call latency and calls the handler.
func (s *Server) runController(c *call, rt *route) {
	if rt.touch != nil {
		ws := s.beginWrite(c, rt.touch)
		c.ws = ws
		var once sync.Once
		end := func() { once.Do(func() { s.endWrite(ws) }) }
		defer end()
		if sw, ok := c.w.(*statusWriter); ok {
			sw.release = end // before the client can see the answer
		}
	}
	s.mu.Lock()
	perCall := s.sw.perCall
	s.mu.Unlock()
	s.sleep(perCall)
	rt.handle(s, c)
}
