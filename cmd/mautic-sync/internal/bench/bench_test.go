package bench

import (
	"context"
	"encoding/json"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mautic-sync/mautic-sync/worker"
)

func TestParseMix(t *testing.T) {
	m, err := ParseMix("upsert=80, segment.add=10,contact.points.add=10")
	if err != nil {
		t.Fatal(err)
	}
	if got := m[worker.TypeUpsert]; math.Abs(got-0.8) > 1e-9 {
		t.Errorf("upsert share %v, want 0.8", got)
	}
	if got := m.String(); got != "upsert=80,segment.add=10,points.add=10" {
		t.Errorf("String() = %q", got)
	}
	if m.OnlyUpserts() {
		t.Error("OnlyUpserts of a mixed mix")
	}
	for _, bad := range []string{"", "upsert", "upsert=x", "nope=1", "upsert=0", "upsert=-1"} {
		if _, err := ParseMix(bad); err == nil {
			t.Errorf("ParseMix(%q) accepted", bad)
		}
	}
}

// Every generated event satisfies the contract, and its id tells its
// number and publish time.
func TestGeneratorMakesValidEvents(t *testing.T) {
	mix, _ := ParseMix("upsert=30,delete=10,segment.add=10,segment.remove=10,dnc.add=10,dnc.remove=10,points.add=20")
	g := NewGenerator(mix, 50, 2000, 3, 7)
	seen := map[string]int{}
	for i := range 2000 {
		ev := g.Next(i)
		got, err := worker.Decode(ev.Body)
		if err != nil {
			t.Fatalf("event %d (%s): %v\n%s", i, ev.Type, err, ev.Body)
		}
		if got.Type != ev.Type || got.ID != ev.ID || got.EmailKey != ContactEmail(ev.Contact) {
			t.Fatalf("event %d decoded as %+v", i, got)
		}
		if !strings.HasPrefix(ev.Subject, "mautic.contacts.c") || ev.Contact >= 50 {
			t.Fatalf("event %d: subject %q contact %d", i, ev.Subject, ev.Contact)
		}
		n, at, ok := ParseEventID(ev.ID)
		if !ok || n != i || time.Since(at) > time.Minute {
			t.Fatalf("ParseEventID(%q) = %d %v %v", ev.ID, n, at, ok)
		}
		seen[ev.Type]++
	}
	for _, typ := range Types {
		if seen[typ] == 0 {
			t.Errorf("no %s generated", typ)
		}
	}
	if seen[worker.TypeUpsert] < 450 || seen[worker.TypeUpsert] > 750 {
		t.Errorf("%d upserts of 2000 for a 30%% share", seen[worker.TypeUpsert])
	}
	// As many contacts as events: one event per contact, in order.
	g = NewGenerator(Mix{worker.TypeUpsert: 1}, 10, 10, 1, 1)
	for i := range 10 {
		if c := g.Next(i).Contact; c != i {
			t.Fatalf("event %d is about contact %d", i, c)
		}
	}
	if _, _, ok := ParseEventID("dev-0001"); ok {
		t.Error("ParseEventID accepted a foreign id")
	}
}

func TestHistogramQuantiles(t *testing.T) {
	var h Histogram
	if h.Quantile(0.5) != 0 {
		t.Error("empty histogram has a median")
	}
	for i := 1; i <= 1000; i++ {
		h.Record(time.Duration(i) * time.Millisecond)
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Millisecond}, {0.99, 990 * time.Millisecond}, {1, time.Second}} {
		got := h.Quantile(c.q)
		if math.Abs(float64(got-c.want)) > 0.011*float64(c.want) {
			t.Errorf("q%.2f = %v, want %v within 1%%", c.q, got, c.want)
		}
	}
	if h.Max() != time.Second || h.Count() != 1000 {
		t.Errorf("max %v count %d", h.Max(), h.Count())
	}
	if m := h.Mean(); m < 500*time.Millisecond || m > 501*time.Millisecond {
		t.Errorf("mean %v", m)
	}
}

func TestParseMetrics(t *testing.T) {
	ss := ParseMetrics(`# HELP x y
# TYPE mautic_sync_inflight_calls gauge
mautic_sync_inflight_calls 3
mautic_sync_batch_items_sum{endpoint="contacts/batch/new"} 4000
mautic_sync_batch_items_count{endpoint="contacts/batch/new"} 20
mautic_sync_mautic_calls_total{endpoint="contacts/batch/new",status="429"} 2
mautic_sync_mautic_calls_total{endpoint="fields/contact",status="429"} 1
bad line
`)
	if v, ok := ss.Get("mautic_sync_inflight_calls"); !ok || v != 3 {
		t.Errorf("inflight %v %v", v, ok)
	}
	if v, _ := ss.Get("mautic_sync_batch_items_sum", "endpoint", "contacts/batch/new"); v != 4000 {
		t.Errorf("sum %v", v)
	}
	if v := ss.Sum("mautic_sync_mautic_calls_total", "status", "429"); v != 3 {
		t.Errorf("429s %v", v)
	}
	if n := len(ss.Find(func(n string) bool { return strings.HasSuffix(n, "_count") })); n != 1 {
		t.Errorf("Find found %d", n)
	}
}

// For upserts only, the ceiling is the formula: the rate bound
// limit/window x items per call, the latency bound concurrency x items /
// (perCall + items x perItem).
func TestCeilingOfUpserts(t *testing.T) {
	m := MauticModel{PerCall: 150 * time.Millisecond, PerItem: time.Millisecond, RateLimit: 120, RateWindow: time.Minute, Batch: 200}
	c := m.CeilingAt(Mix{worker.TypeUpsert: 1}, 4)
	if want := 4 * 200 / 0.350; math.Abs(c.LatencyBound-want) > 0.01 {
		t.Errorf("latency bound %v, want %v", c.LatencyBound, want)
	}
	if want := 120.0 / 60 * 200; math.Abs(c.RateBound-want) > 1e-9 {
		t.Errorf("rate bound %v, want %v", c.RateBound, want)
	}
	if c.Bound != c.RateBound {
		t.Errorf("bound %v", c.Bound)
	}
	// An instant Mautic without a limit is unbounded.
	if c := (MauticModel{Batch: 200}).CeilingAt(Mix{worker.TypeUpsert: 1}, 4); !math.IsInf(c.Bound, 1) {
		t.Errorf("instant bound %v", c.Bound)
	}
	// Points need a lookup (a read: perCall over 50 emails) and a single
	// call each.
	p := m.PlanOf(worker.TypePointsAdd)
	if want := 1.0/50 + 1; math.Abs(p.Calls-want) > 1e-9 {
		t.Errorf("points calls %v, want %v", p.Calls, want)
	}
	if want := 3*time.Millisecond + 151*time.Millisecond; p.Busy != want {
		t.Errorf("points busy %v, want %v", p.Busy, want)
	}
}

func TestRouteOf(t *testing.T) {
	for in, want := range map[string]string{
		"/api/contacts/batch/new":           "POST /api/contacts/batch/new",
		"/api/segments/3/contacts/add":      "POST /api/segments/{id}/contacts/add",
		"/api/contacts/42/points/plus/5":    "POST /api/contacts/{id}/points/plus/{id}",
		"/api/segments/3/contact/42/remove": "POST /api/segments/{id}/contact/{id}/remove",
		"/api/contacts/batch/edit":          "POST /api/contacts/batch/edit",
	} {
		if got := RouteOf(http.MethodPost, in); got != want {
			t.Errorf("RouteOf(%q) = %q, want %q", in, got, want)
		}
	}
}

// The local infrastructure counts calls, 429s and calls in flight.
func TestLocalInfraCounts(t *testing.T) {
	inf, err := StartLocal(InfraOptions{Segments: 3, RequestLogLimit: 10, User: "u", Password: "p"})
	if err != nil {
		t.Fatal(err)
	}
	defer inf.Close()
	ctx := context.Background()
	if err := inf.Arm(ctx, Arm{PerCall: 20 * time.Millisecond, RateLimit: 2, RateWindow: time.Minute}); err != nil {
		t.Fatal(err)
	}
	get := func() int {
		req, _ := http.NewRequest(http.MethodGet, inf.MauticURL()+"/api/fields/contact", nil)
		req.SetBasicAuth("u", "p")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	done := make(chan int, 2)
	go func() { done <- get() }()
	go func() { done <- get() }()
	<-done
	<-done
	if s := get(); s != http.StatusTooManyRequests {
		t.Errorf("third call: %d, want 429", s)
	}
	// A client can have its answer before the middleware has recorded the
	// call's end: wait for all three.
	var st InfraStats
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		var err error
		if st, err = inf.Stats(ctx); err != nil {
			t.Fatal(err)
		}
		if st.Calls == 3 || time.Now().After(deadline) {
			break
		}
	}
	if st.Calls != 3 || st.Status429 != 1 || st.MaxInflight != 2 {
		t.Errorf("stats %+v", st)
	}
	if rs := st.Routes["GET /api/fields/contact"]; rs.Calls != 3 || rs.ServiceSeconds < 0.04 {
		t.Errorf("route stats %+v", rs)
	}
	if st.InflightArea < 0.04 || st.CPU <= 0 || st.PeakRSS <= 0 {
		t.Errorf("area %v cpu %v rss %v", st.InflightArea, st.CPU, st.PeakRSS)
	}
	b, _ := json.Marshal(st)
	var back InfraStats
	if err := json.Unmarshal(b, &back); err != nil || back.Calls != 3 {
		t.Errorf("stats do not round-trip through JSON: %v", err)
	}
}

func TestProcStats(t *testing.T) {
	if CPUTime() <= 0 || MaxRSS() <= 0 {
		t.Error("no CPU time or ru_maxrss")
	}
	if PeakRSS() <= 0 || RSS() <= 0 {
		t.Skip("no /proc/self/status VmHWM here")
	}
	if ResetPeakRSS() && PeakRSS() < RSS()/2 {
		t.Errorf("after reset VmHWM %d < VmRSS %d", PeakRSS(), RSS())
	}
}

func TestMachineCPU(t *testing.T) {
	b0, t0, ok := MachineCPU()
	if !ok {
		t.Skip("no /proc/stat here")
	}
	deadline := time.Now().Add(50 * time.Millisecond)
	for time.Now().Before(deadline) {
	}
	b1, t1, _ := MachineCPU()
	if b1 < b0 || t1 <= t0 || b1 > t1 {
		t.Errorf("busy %v -> %v, total %v -> %v", b0, b1, t0, t1)
	}
	if LoadAverage() < 0 {
		t.Error("no load average")
	}
}

func TestRateWindows(t *testing.T) {
	s := func(ms ...int) []int64 {
		var out []int64
		for _, m := range ms {
			out = append(out, int64(m)*int64(time.Millisecond))
		}
		return out
	}
	got := RateWindows(s(0, 5, 9, 10, 11, 25, 26, 40), 10*time.Millisecond)
	want := []int64{0, 10, 25, 40}
	if len(got) != len(want) {
		t.Fatalf("windows %v, want starts %v ms", got, want)
	}
	for i, w := range want {
		if got[i].UnixNano() != w*int64(time.Millisecond) {
			t.Errorf("window %d starts %v, want %d ms", i, got[i], w)
		}
	}
}
