package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mautic-sync/mautic-sync/mautic/mautictest"
	"github.com/mautic-sync/mautic-sync/queue/embedded"
)

// InfraOptions configures the infrastructure the service runs against.
type InfraOptions struct {
	// Segments is the number of segments the fake has (ids 1..Segments).
	Segments int `json:"segments"`
	// RequestLogLimit bounds the fake's request log, to keep memory flat.
	RequestLogLimit int    `json:"request_log_limit"`
	User            string `json:"user"`
	Password        string `json:"password"`
	// StoreDir is JetStream's store; "" for a temporary one.
	StoreDir string `json:"store_dir"`
}

// Arm sets the fake's latency and rate limit and restarts the counters;
// it is called once set-up traffic (pre-created contacts) is done.
type Arm struct {
	PerCall    time.Duration `json:"per_call"`
	PerItem    time.Duration `json:"per_item"`
	RateLimit  int           `json:"rate_limit"`
	RateWindow time.Duration `json:"rate_window"`
}

// RouteStats counts the calls of one route (method and path template).
type RouteStats struct {
	Calls     int64 `json:"calls"`
	Status429 int64 `json:"status_429"`
	// ServiceSeconds is the time the fake took answering them, in total.
	ServiceSeconds float64 `json:"service_seconds"`
}

// InfraStats is a snapshot of the infrastructure's counters (since Arm)
// and of the process that hosts it.
type InfraStats struct {
	At        time.Time             `json:"at"`
	Calls     int64                 `json:"calls"`
	Status429 int64                 `json:"status_429"`
	Status5xx int64                 `json:"status_5xx"`
	Routes    map[string]RouteStats `json:"routes"`
	// InflightArea is the integral of the calls in flight at the fake over
	// time, in call-seconds: its difference between two snapshots divided
	// by their time apart is the mean concurrency Mautic saw.
	InflightArea float64   `json:"inflight_area"`
	MaxInflight  int       `json:"max_inflight"`
	FirstCall    time.Time `json:"first_call"`
	// CPU, PeakRSS and RSS are of the process hosting the infrastructure
	// (this process unless Separate).
	CPU      time.Duration `json:"cpu"`
	PeakRSS  int64         `json:"peak_rss"`
	RSS      int64         `json:"rss"`
	Separate bool          `json:"separate"`
	PID      int           `json:"pid"`
	// CallStarts are the arrival times (Unix nanoseconds) of the calls, in
	// order, at most maxCallStarts of them: with RateWindows they show
	// the rate limiter's windows.
	CallStarts []int64 `json:"call_starts,omitempty"`
}

// maxCallStarts bounds the call times kept.
const maxCallStarts = 200000

// RateWindows replays the fake's fixed-window limiter (a window starts at
// the first call after the previous one ended and lasts window) over call
// arrival times, and returns the windows' start times.
func RateWindows(starts []int64, window time.Duration) []time.Time {
	var out []time.Time
	var reset int64
	for _, t := range starts {
		if len(out) == 0 || t >= reset {
			out = append(out, time.Unix(0, t))
			reset = t + int64(window)
		}
	}
	return out
}

// Infra is a running embedded NATS server and Mautic fake.
type Infra interface {
	NATSURL() string
	MauticURL() string
	Arm(ctx context.Context, a Arm) error
	Stats(ctx context.Context) (InfraStats, error)
	// Separate reports whether it runs in its own process.
	Separate() bool
	Close() error
}

// local runs the infrastructure in this process.
type local struct {
	ns   *embedded.Server
	fake *mautictest.Server
	srv  *http.Server
	url  string
	cnt  *counter
}

// StartLocal starts an embedded NATS server (JetStream, temporary store)
// and the Mautic fake, with basic auth, behind a counting middleware.
func StartLocal(o InfraOptions) (Infra, error) {
	return startLocal(o, nil)
}

func startLocal(o InfraOptions, control func(*local) http.Handler) (*local, error) {
	ns, err := embedded.Start(embedded.Options{Port: -1, StoreDir: o.StoreDir})
	if err != nil {
		return nil, err
	}
	segs := make([]int, max(o.Segments, 1))
	for i := range segs {
		segs[i] = i + 1
	}
	opts := []mautictest.Option{mautictest.WithBasicAuth(o.User, o.Password), mautictest.WithSegments(segs...)}
	if o.RequestLogLimit > 0 {
		opts = append(opts, mautictest.WithRequestLogLimit(o.RequestLogLimit))
	}
	fake := mautictest.NewUnstartedHandler(opts...)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fake.Close()
		ns.Shutdown()
		return nil, err
	}
	l := &local{ns: ns, fake: fake, url: "http://" + ln.Addr().String(), cnt: newCounter(fake.Handler())}
	mux := http.NewServeMux()
	mux.Handle("/", l.cnt)
	if control != nil {
		mux.Handle("/__bench/", control(l))
	}
	l.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = l.srv.Serve(ln) }()
	return l, nil
}

func (l *local) NATSURL() string   { return l.ns.ClientURL() }
func (l *local) MauticURL() string { return l.url }
func (l *local) Separate() bool    { return false }

func (l *local) Arm(_ context.Context, a Arm) error {
	l.fake.SetLatency(a.PerCall, a.PerItem)
	l.fake.SetRateLimit(a.RateLimit, a.RateWindow)
	l.cnt.reset()
	return nil
}

func (l *local) Stats(context.Context) (InfraStats, error) {
	s := l.cnt.snapshot()
	s.CPU, s.PeakRSS, s.RSS, s.PID = CPUTime(), PeakRSS(), RSS(), os.Getpid()
	return s, nil
}

func (l *local) Close() error {
	l.fake.Close() // ends latency waits
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = l.srv.Shutdown(ctx)
	l.ns.Shutdown()
	return nil
}

// counter is the middleware in front of the fake: calls, statuses, time
// taken and calls in flight, per route.
type counter struct {
	next http.Handler

	mu          sync.Mutex
	inflight    int
	maxInflight int
	area        float64 // call-nanoseconds
	last        time.Time
	first       time.Time
	calls, s429 int64
	s5xx        int64
	routes      map[string]*RouteStats
	starts      []int64
}

func newCounter(next http.Handler) *counter {
	return &counter{next: next, routes: map[string]*RouteStats{}, last: time.Now()}
}

func (c *counter) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.maxInflight, c.area, c.last, c.first = c.inflight, 0, time.Now(), time.Time{}
	c.calls, c.s429, c.s5xx = 0, 0, 0
	c.routes = map[string]*RouteStats{}
	c.starts = nil
}

// move records a change of the calls in flight at now.
func (c *counter) moveLocked(now time.Time, delta int) {
	c.area += float64(c.inflight) * float64(now.Sub(c.last))
	c.last = now
	c.inflight += delta
	c.maxInflight = max(c.maxInflight, c.inflight)
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (c *counter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.HasPrefix(r.URL.Path, "/api/") {
		c.next.ServeHTTP(w, r)
		return
	}
	start := time.Now()
	c.mu.Lock()
	if c.first.IsZero() {
		c.first = start
	}
	if len(c.starts) < maxCallStarts {
		c.starts = append(c.starts, start.UnixNano())
	}
	c.moveLocked(start, +1)
	c.mu.Unlock()
	rec := &statusRecorder{ResponseWriter: w}
	c.next.ServeHTTP(rec, r)
	end := time.Now()
	route := RouteOf(r.Method, r.URL.Path)
	c.mu.Lock()
	c.moveLocked(end, -1)
	c.calls++
	rs := c.routes[route]
	if rs == nil {
		rs = &RouteStats{}
		c.routes[route] = rs
	}
	rs.Calls++
	rs.ServiceSeconds += end.Sub(start).Seconds()
	switch {
	case rec.status == http.StatusTooManyRequests:
		c.s429++
		rs.Status429++
	case rec.status >= 500:
		c.s5xx++
	}
	c.mu.Unlock()
}

func (c *counter) snapshot() InfraStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	area := c.area + float64(c.inflight)*float64(now.Sub(c.last))
	s := InfraStats{At: now, Calls: c.calls, Status429: c.s429, Status5xx: c.s5xx, InflightArea: area / 1e9,
		MaxInflight: c.maxInflight, FirstCall: c.first, Routes: map[string]RouteStats{}, CallStarts: slices.Clone(c.starts)}
	for k, v := range c.routes {
		s.Routes[k] = *v
	}
	return s
}

// RouteOf is a route's template: the method and the path with numeric
// segments replaced by {id}.
func RouteOf(method, path string) string {
	parts := strings.Split(path, "/")
	for i, p := range parts {
		if p != "" && strings.Trim(p, "0123456789") == "" {
			parts[i] = "{id}"
		}
	}
	return method + " " + strings.Join(parts, "/")
}

// ChildEnv is the environment variable that makes the process the
// infrastructure's helper process: it holds the InfraOptions as JSON.
const ChildEnv = "MAUTIC_SYNC_BENCH_INFRA"

// hello is the helper process's first line on stdout.
type hello struct {
	NATSURL    string `json:"nats_url"`
	MauticURL  string `json:"mautic_url"`
	ControlURL string `json:"control_url"`
	PID        int    `json:"pid"`
}

// RunChild is the helper process: it starts the infrastructure, prints
// its addresses as one JSON line on stdout and serves until its stdin
// closes (its parent is gone) or it is signalled. It returns the exit code.
func RunChild(spec string, stdin io.Reader, stdout, stderr io.Writer) int {
	var o InfraOptions
	if err := json.Unmarshal([]byte(spec), &o); err != nil {
		fmt.Fprintln(stderr, "bench infra:", err)
		return 2
	}
	l, err := startLocal(o, func(l *local) http.Handler {
		mux := http.NewServeMux()
		mux.HandleFunc("POST /__bench/arm", func(w http.ResponseWriter, r *http.Request) {
			var a Arm
			if err := json.NewDecoder(r.Body).Decode(&a); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			_ = l.Arm(r.Context(), a)
			w.WriteHeader(http.StatusNoContent)
		})
		mux.HandleFunc("GET /__bench/stats", func(w http.ResponseWriter, r *http.Request) {
			s, _ := l.Stats(r.Context())
			s.Separate = true
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(s)
		})
		return mux
	})
	if err != nil {
		fmt.Fprintln(stderr, "bench infra:", err)
		return 1
	}
	defer l.Close()
	b, _ := json.Marshal(hello{NATSURL: l.NATSURL(), MauticURL: l.url, ControlURL: l.url + "/__bench", PID: os.Getpid()})
	fmt.Fprintln(stdout, string(b))

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	gone := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, stdin)
		close(gone)
	}()
	select {
	case <-sig:
	case <-gone:
	}
	return 0
}

// remote is the infrastructure in a helper process.
type remote struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	h     hello
	hc    *http.Client
	done  chan error
}

// StartProcess starts the infrastructure in a helper process: this
// program's executable run with ChildEnv set (the caller's process must
// hand such a process to RunChild early, see cmd/mautic-sync/bench.go).
// The helper ends when Close is called or this process dies (its stdin
// closes).
func StartProcess(ctx context.Context, o InfraOptions, stderr io.Writer) (Infra, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	spec, _ := json.Marshal(o)
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), ChildEnv+"="+string(spec))
	cmd.Stderr = stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: start the infrastructure process: %w", err)
	}
	r := &remote{cmd: cmd, stdin: stdin, hc: &http.Client{Timeout: 30 * time.Second}, done: make(chan error, 1)}
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		if sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		_, _ = io.Copy(io.Discard, out)
	}()
	go func() { r.done <- cmd.Wait() }()
	fail := func(err error) (Infra, error) {
		_ = stdin.Close()
		_ = cmd.Process.Signal(syscall.SIGTERM)
		<-r.done
		return nil, err
	}
	select {
	case line, ok := <-lines:
		if !ok {
			return fail(errors.New("bench: the infrastructure process exited before it was ready"))
		}
		if err := json.Unmarshal([]byte(line), &r.h); err != nil {
			return fail(fmt.Errorf("bench: infrastructure process said %q: %w", line, err))
		}
	case <-time.After(60 * time.Second):
		return fail(errors.New("bench: the infrastructure process was not ready within 60s"))
	case <-ctx.Done():
		return fail(ctx.Err())
	}
	return r, nil
}

func (r *remote) NATSURL() string   { return r.h.NATSURL }
func (r *remote) MauticURL() string { return r.h.MauticURL }
func (r *remote) Separate() bool    { return true }

func (r *remote) Arm(ctx context.Context, a Arm) error {
	b, _ := json.Marshal(a)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.h.ControlURL+"/arm", bytes.NewReader(b))
	if err != nil {
		return err
	}
	resp, err := r.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("bench: arm: HTTP %d", resp.StatusCode)
	}
	return nil
}

func (r *remote) Stats(ctx context.Context) (InfraStats, error) {
	var s InfraStats
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.h.ControlURL+"/stats", nil)
	if err != nil {
		return s, err
	}
	resp, err := r.hc.Do(req)
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return s, fmt.Errorf("bench: stats: HTTP %d", resp.StatusCode)
	}
	err = json.NewDecoder(resp.Body).Decode(&s)
	return s, err
}

func (r *remote) Close() error {
	_ = r.stdin.Close()
	select {
	case <-r.done:
		return nil
	case <-time.After(15 * time.Second):
	}
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.done:
	case <-time.After(10 * time.Second):
		_ = r.cmd.Process.Kill()
		<-r.done
	}
	return nil
}

// ChildPID is the helper process's id (for a profile of it), 0 in process.
func ChildPID(i Infra) int {
	if r, ok := i.(*remote); ok {
		return r.h.PID
	}
	return 0
}
