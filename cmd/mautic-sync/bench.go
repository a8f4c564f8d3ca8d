package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"runtime/pprof"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/mautic-sync/mautic-sync/cmd/mautic-sync/internal/bench"
	"github.com/mautic-sync/mautic-sync/config"
	"github.com/mautic-sync/mautic-sync/mautic"
	"github.com/mautic-sync/mautic-sync/queue"
	"github.com/mautic-sync/mautic-sync/worker"
)

// The bench command's helper process (the embedded NATS server and the
// Mautic fake, kept out of the measured process) is this same executable
// started with bench.ChildEnv set. It is taken over here, before main or a
// test binary's TestMain runs.
func init() {
	if spec := os.Getenv(bench.ChildEnv); spec != "" {
		os.Exit(bench.RunChild(spec, os.Stdin, os.Stdout, os.Stderr))
	}
}

// benchOptions are the bench command's flags.
type benchOptions struct {
	mode           string
	events         int
	rate           float64
	duration       time.Duration
	contacts       int
	mix            bench.Mix
	mixText        string
	segments       int
	precreate      string
	callLatency    time.Duration
	itemLatency    time.Duration
	rateLimit      int
	rateWindow     time.Duration
	budget         int
	concurrency    int
	batch          int
	linger         time.Duration
	maxAckPending  int
	infra          string
	refs           string
	timeout        time.Duration
	seed           uint64
	jsonOut        bool
	outFile        string
	cpuProfile     string
	memProfile     string
	logLevel       string
	sampleInterval time.Duration
	// replicas are the replica counts of --replicas: nil runs one
	// unpartitioned service; one count runs that many partitioned
	// replicas; several run the scenario once per count (a sweep).
	replicas   []int
	replicaN   int // this run's replicas (0: one unpartitioned service)
	partitions int
	args       []string
}

func cmdBench(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, code := parseBenchFlags(args, stderr)
	if code >= 0 {
		return code
	}
	o.args = args
	if len(o.replicas) > 1 {
		return cmdBenchSweep(ctx, o, stdout, stderr)
	}
	if len(o.replicas) == 1 {
		o.replicaN = o.replicas[0]
	}
	rep, err := runBench(ctx, o, stderr)
	if rep != nil {
		if o.outFile != "" {
			b, _ := json.MarshalIndent(rep, "", "  ")
			if werr := os.WriteFile(o.outFile, append(b, '\n'), 0o644); werr != nil {
				fmt.Fprintln(stderr, "mautic-sync bench:", werr)
			}
		}
		if o.jsonOut {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			_ = enc.Encode(rep)
		} else {
			rep.print(stdout)
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, "mautic-sync bench:", err)
		return exitFailure
	}
	if rep.Incomplete {
		return exitFailure
	}
	return exitOK
}

// parseBenchFlags returns the options, or an exit code >= 0 to stop with.
func parseBenchFlags(args []string, stderr io.Writer) (benchOptions, int) {
	var o benchOptions
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.mode, "mode", "backlog", "backlog: publish --events first, then start the service and time the drain; rate: publish at --rate for --duration while the service runs")
	fs.IntVar(&o.events, "events", 100000, "events to publish (rate mode: default --rate x --duration)")
	fs.Float64Var(&o.rate, "rate", 0, "events per second to publish (rate mode)")
	fs.DurationVar(&o.duration, "duration", 0, "rate mode: how long to publish; backlog mode: stop measuring after this long (0: drain everything)")
	fs.IntVar(&o.contacts, "contacts", 0, "distinct contacts (default: as many as events, so each event is about its own contact)")
	fs.StringVar(&o.mixText, "mix", "upsert=100", "event mix in percent, e.g. upsert=80,segment.add=10,points.add=10 (types: upsert, delete, segment.add, segment.remove, dnc.add, dnc.remove, points.add)")
	fs.IntVar(&o.segments, "segments", 3, "segment ids (1..N) used by segment events")
	fs.StringVar(&o.precreate, "precreate", "auto", "create every contact in the fake before the run: true, false, or auto (when the mix has other types than upsert)")
	fs.DurationVar(&o.callLatency, "call-latency", 0, "the fake's latency per call (mautictest.WithLatency perCall)")
	fs.DurationVar(&o.itemLatency, "item-latency", 0, "the fake's latency per item written (WithLatency perItem)")
	fs.IntVar(&o.rateLimit, "rate-limit", 0, "the fake's rate limit: calls per --rate-window (0: none)")
	fs.DurationVar(&o.rateWindow, "rate-window", time.Hour, "window of --rate-limit and of --budget")
	fs.IntVar(&o.budget, "budget", 0, "the service's client-side budget MAUTIC_RATE_LIMIT, per --rate-window (0: none)")
	fs.IntVar(&o.concurrency, "concurrency", 0, "WORKER_CONCURRENCY: Mautic calls in flight (0: the adaptive default)")
	fs.IntVar(&o.batch, "batch", 200, "BATCH_SIZE")
	fs.DurationVar(&o.linger, "linger", 100*time.Millisecond, "BATCH_LINGER")
	fs.IntVar(&o.maxAckPending, "max-ack-pending", defaultMaxAckPending(), "CONSUMER_MAX_ACK_PENDING (the worker's window; default: the service's)")
	fs.StringVar(&o.infra, "infra", "process", "where NATS and the fake run: process (a helper process, so that CPU and RSS are the service's own) or inprocess")
	fs.StringVar(&o.refs, "refs", "raw,floor", "references measured on the same messages after the run: raw (consume+ack), floor (consume, ledger get+put, outcome publish, ack); empty for none")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Minute, "give up after this long")
	fs.Uint64Var(&o.seed, "seed", 1, "random seed of the event generator")
	fs.BoolVar(&o.jsonOut, "json", false, "print the report as JSON instead of a table")
	fs.StringVar(&o.outFile, "out", "", "also write the JSON report to this file")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the service process while it runs")
	fs.StringVar(&o.memProfile, "memprofile", "", "write a heap profile of the service process at the end of the run")
	fs.StringVar(&o.logLevel, "log-level", "error", "LOG_LEVEL of the service (its logs go to stderr)")
	fs.DurationVar(&o.sampleInterval, "sample-interval", 200*time.Millisecond, "how often the service's /metrics and RSS are sampled")
	replicasText := fs.String("replicas", "", "run N replicas of the service in partitioned mode (PARTITION_MODE, elastic by default; the budget shared as MAUTIC_RATE_SHARED=auto does); a list (1,2,3,4) runs the scenario once per count on fresh infrastructure and prints a table (empty: one unpartitioned service)")
	fs.IntVar(&o.partitions, "partitions", 0, "PARTITIONS with --replicas (at least the largest count; default: the count, or for a list the least common multiple of the counts when at most 64, so that every count gets an even share)")
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: mautic-sync bench [flags]

Measures the real service (the same serve() as 'run') on an embedded NATS
server (JetStream, temporary store) and the Mautic fake with configurable
latency and rate limit. Reports events/s, Mautic calls per event, items per
batch call, publish-to-outcome latency, CPU per 10k events, peak RSS and 429s,
next to references measured in the same run: raw JetStream consume-and-ack of
the same messages, and the theoretical ceiling of the configured Mautic.

Examples:
  mautic-sync bench --events 100000
  mautic-sync bench --events 50000 --call-latency 150ms --item-latency 1ms
  mautic-sync bench --events 100000 --duration 60s --rate-limit 20 --rate-window 10s --budget 20
  mautic-sync bench --mode rate --rate 20 --duration 60s --call-latency 150ms --item-latency 1ms
  mautic-sync bench --replicas 1,2,3,4 --events 48000 --call-latency 150ms --item-latency 1ms \
      --concurrency 1 --rate-limit 75 --rate-window 10s --refs ''

With --replicas N the N replicas run in this process, partitioned (each with
its own NATS connection, Mautic client, worker and /metrics); in backlog mode
the clock starts once every replica consumes its share of the partitions.

Other service settings come from the environment as for 'run'.

`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return o, flagExit(err)
	}
	fail := func(format string, a ...any) (benchOptions, int) {
		fmt.Fprintf(stderr, "mautic-sync bench: "+format+"\n", a...)
		return o, exitConfig
	}
	if fs.NArg() > 0 {
		return fail("unexpected arguments %q", fs.Args())
	}
	mix, err := bench.ParseMix(o.mixText)
	if err != nil {
		return fail("%v", err)
	}
	o.mix = mix
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	switch o.mode {
	case "backlog":
	case "rate":
		if o.rate <= 0 || o.duration <= 0 {
			return fail("--mode rate needs --rate and --duration")
		}
		if !set["events"] {
			o.events = int(math.Round(o.rate * o.duration.Seconds()))
		}
	default:
		return fail("--mode must be backlog or rate, got %q", o.mode)
	}
	if o.events < 1 {
		return fail("--events must be at least 1")
	}
	if o.contacts == 0 {
		o.contacts = o.events
	}
	if o.infra != "process" && o.infra != "inprocess" {
		return fail("--infra must be process or inprocess, got %q", o.infra)
	}
	for r := range strings.SplitSeq(o.refs, ",") {
		if r = strings.TrimSpace(r); r != "" && r != "raw" && r != "floor" {
			return fail("--refs: unknown reference %q (raw, floor)", r)
		}
	}
	if o.precreate != "auto" && o.precreate != "true" && o.precreate != "false" {
		return fail("--precreate must be true, false or auto")
	}
	if o.budget > 0 && o.rateWindow <= 0 || o.rateLimit > 0 && o.rateWindow <= 0 {
		return fail("--rate-window must be positive")
	}
	if *replicasText != "" {
		counts, err := parseReplicaCounts(*replicasText)
		if err != nil {
			return fail("--replicas: %v", err)
		}
		o.replicas = counts
		most := slices.Max(counts)
		if o.partitions == 0 {
			o.partitions = defaultPartitions(counts)
		}
		if o.partitions < most || o.partitions > config.MaxPartitions {
			return fail("--partitions must be between the largest replica count (%d) and %d, got %d", most, config.MaxPartitions, o.partitions)
		}
		if len(counts) > 1 && (o.cpuProfile != "" || o.memProfile != "") {
			return fail("--cpuprofile and --memprofile take one replica count")
		}
	} else if o.partitions != 0 {
		return fail("--partitions needs --replicas")
	}
	return o, -1
}

// parseReplicaCounts reads --replicas: a count or a comma-separated list.
func parseReplicaCounts(text string) ([]int, error) {
	var counts []int
	for f := range strings.SplitSeq(text, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > config.MaxPartitions {
			return nil, fmt.Errorf("%q is not a replica count (1 to %d)", strings.TrimSpace(f), config.MaxPartitions)
		}
		counts = append(counts, n)
	}
	return counts, nil
}

// defaultPartitions is --partitions when not given: the count itself, or
// for a list the least common multiple of the counts (1,2,3,4: 12), so
// that every count divides the partitions evenly and each run differs
// only in its replicas; above 64 partitions, the largest count.
func defaultPartitions(counts []int) int {
	l := 1
	for _, n := range counts {
		l = l / gcd(l, n) * n
		if l > 64 {
			return slices.Max(counts)
		}
	}
	return l
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

func (o benchOptions) wantRef(name string) bool {
	for r := range strings.SplitSeq(o.refs, ",") {
		if strings.TrimSpace(r) == name {
			return true
		}
	}
	return false
}

// benchReport is what a run measured.
type benchReport struct {
	Machine    machineInfo  `json:"machine"`
	Date       string       `json:"date"`
	Command    string       `json:"command"`
	Settings   benchSetting `json:"settings"`
	Incomplete bool         `json:"incomplete,omitempty"`
	Note       string       `json:"note,omitempty"`

	Published int64   `json:"events_published"`
	PublishS  float64 `json:"publish_seconds"`
	Outcomes  int64   `json:"outcomes"`
	// Extra counts outcomes for an event that already had one (should be 0).
	Extra    int64            `json:"extra_outcomes"`
	ByResult map[string]int64 `json:"by_outcome"`
	Seconds  float64          `json:"seconds"`
	// EventsPerS is outcomes / seconds, from the service's start to the
	// last outcome (or --duration).
	EventsPerS float64 `json:"events_per_s"`
	// SteadyEventsPerS is the rate between the 10% and 90% outcome marks.
	SteadyEventsPerS float64 `json:"steady_events_per_s,omitempty"`

	Mautic      mauticFigures             `json:"mautic"`
	LatencyMs   latencyFigures            `json:"latency_ms"`
	LatencyType map[string]latencyFigures `json:"latency_ms_by_type,omitempty"`
	CPU         cpuFigures                `json:"cpu"`
	Memory      memFigures                `json:"memory"`
	Concurrency concFigures               `json:"concurrency"`
	Refs        refFigures                `json:"references"`
	Ratios      map[string]float64        `json:"ratios"`

	// With --replicas: each replica's figures, and the warm-up before the
	// clock started (backlog mode: until every replica consumed its share
	// of the partitions).
	Replicas       []replicaFigures `json:"replicas,omitempty"`
	WarmupS        float64          `json:"warmup_seconds,omitempty"`
	WarmupOutcomes int64            `json:"warmup_outcomes,omitempty"`
}

// replicaFigures is one replica's part of a --replicas run.
type replicaFigures struct {
	Index int `json:"index"`
	// Outcomes are the events this replica settled first (over the whole
	// run, the warm-up included); Share is its part of all outcomes.
	Outcomes int64   `json:"outcomes"`
	Share    float64 `json:"share"`
	// Settled is its concurrency (fixed, or the mean of its limit gauge
	// over the steady part), InflightMean its mean calls in flight.
	Settled      float64 `json:"settled_concurrency"`
	InflightMean float64 `json:"worker_inflight_mean"`
	// PartitionsWanted and PartitionsOwned are its gauges at the end of
	// the measurement (mautic_sync_partitions_wanted, _owned).
	PartitionsWanted float64 `json:"partitions_wanted"`
	PartitionsOwned  float64 `json:"partitions_owned"`
	MetricsAddr      string  `json:"metrics_addr,omitempty"`
}

type machineInfo struct {
	// LoadAtStart is the 1-minute load average before the run.
	LoadAtStart float64 `json:"load_at_start"`
	// OtherCores is the CPU other processes used during the run, in cores:
	// the machine's busy time (/proc/stat) minus this process's and the
	// helper process's. Above about 0.2 the figures are disturbed.
	OtherCores float64 `json:"other_processes_cores"`
	NumCPU     int     `json:"nproc"`
	GOMAXPROCS int     `json:"gomaxprocs"`
	CPUModel   string  `json:"cpu_model"`
	GoVersion  string  `json:"go_version"`
	Kernel     string  `json:"kernel"`
}

type benchSetting struct {
	Mode          string  `json:"mode"`
	Events        int     `json:"events"`
	Rate          float64 `json:"rate,omitempty"`
	Duration      string  `json:"duration,omitempty"`
	Contacts      int     `json:"contacts"`
	Mix           string  `json:"mix"`
	Precreated    bool    `json:"precreated"`
	CallLatency   string  `json:"call_latency"`
	ItemLatency   string  `json:"item_latency"`
	RateLimit     int     `json:"rate_limit,omitempty"`
	RateWindow    string  `json:"rate_window,omitempty"`
	Budget        int     `json:"budget,omitempty"`
	Concurrency   int     `json:"concurrency"`
	Batch         int     `json:"batch"`
	Linger        string  `json:"linger"`
	MaxAckPending int     `json:"max_ack_pending"`
	Infra         string  `json:"infra"`
	// Replicas > 0: that many replicas on Partitions partitions;
	// BudgetShared says whether --budget is one budget for all of them
	// (MAUTIC_RATE_SHARED) or each replica's own.
	Replicas      int    `json:"replicas,omitempty"`
	Partitions    int    `json:"partitions,omitempty"`
	PartitionMode string `json:"partition_mode,omitempty"`
	Takeover      string `json:"partition_takeover,omitempty"`
	BudgetShared  bool   `json:"budget_shared,omitempty"`
}

type mauticFigures struct {
	// Calls are the /api requests the fake received during the run
	// (field-list reads and 429s included).
	Calls         int64   `json:"calls"`
	CallsPerEvent float64 `json:"calls_per_event"`
	// ItemsPerBatchCall is the mean items of the batch calls (batch new,
	// edit, delete, segment add), from the service's
	// mautic_sync_batch_items histogram.
	ItemsPerBatchCall float64                     `json:"items_per_batch_call"`
	ByEndpoint        map[string]endpointFigures  `json:"by_endpoint"`
	Routes            map[string]bench.RouteStats `json:"routes"`
	Status429         int64                       `json:"status_429"`
	Status5xx         int64                       `json:"status_5xx"`
	// Rate-limited runs: the limiter's windows as replayed from the call
	// times, their mean period (the window plus the time the client
	// waited past each reset), 429s per window, and the events/s over the
	// complete windows (the steady rate, free of where the run's end falls).
	Windows            float64 `json:"rate_windows,omitempty"`
	WindowPeriodS      float64 `json:"rate_window_period_s,omitempty"`
	CallsPerWindow     float64 `json:"calls_per_complete_window,omitempty"`
	Per429Window       float64 `json:"status_429_per_window,omitempty"`
	SteadyWindowEvents float64 `json:"events_per_s_over_complete_windows,omitempty"`
}

type endpointFigures struct {
	Calls         float64 `json:"calls"`
	MeanItems     float64 `json:"mean_items"`
	MeanLatencyMs float64 `json:"mean_latency_ms,omitempty"`
}

type latencyFigures struct {
	Count uint64  `json:"count"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	Max   float64 `json:"max"`
	Mean  float64 `json:"mean"`
}

type cpuFigures struct {
	// ServiceS is this process's CPU (getrusage user+sys) during the run:
	// the service, plus the infrastructure when it runs in process.
	ServiceS      float64 `json:"service_s"`
	ServicePer10k float64 `json:"service_per_10k_events_s"`
	InfraS        float64 `json:"infra_s,omitempty"`
	InfraPer10k   float64 `json:"infra_per_10k_events_s,omitempty"`
	AllocPerEvent float64 `json:"alloc_bytes_per_event"`
	GCCycles      uint64  `json:"gc_cycles"`
	ServiceScope  string  `json:"service_scope"`
}

type memFigures struct {
	// PeakRSSMiB is the service process's VmHWM over the run (reset at its
	// start when the kernel allows, else ru_maxrss since the process began).
	PeakRSSMiB        float64 `json:"peak_rss_mib"`
	PeakRSSSource     string  `json:"peak_rss_source"`
	SampledMaxRSSMiB  float64 `json:"sampled_max_rss_mib"`
	PeakHeapMiB       float64 `json:"sampled_max_heap_mib"`
	InfraPeakRSSMiB   float64 `json:"infra_peak_rss_mib,omitempty"`
	BenchOverheadNote string  `json:"note"`
}

type concFigures struct {
	Mode string `json:"mode"` // fixed or adaptive
	// Settled is the concurrency the ceiling is computed for: the fixed
	// value, else the mean of Source over the steady part of the run.
	Settled float64 `json:"settled"`
	Source  string  `json:"source"`
	// WorkerInflightMean/Max sample mautic_sync_inflight_calls.
	WorkerInflightMean float64 `json:"worker_inflight_mean"`
	WorkerInflightMax  float64 `json:"worker_inflight_max"`
	// LimitMean/Max/Last sample the worker's concurrency-limit gauge when
	// it exports one.
	LimitGauge string  `json:"limit_gauge,omitempty"`
	LimitMean  float64 `json:"limit_mean,omitempty"`
	LimitMax   float64 `json:"limit_max,omitempty"`
	LimitLast  float64 `json:"limit_last,omitempty"`
	// AtMautic is the mean of the calls in flight at the fake (time
	// weighted, exact) and its maximum.
	AtMauticMean float64 `json:"at_mautic_mean"`
	AtMauticMax  int     `json:"at_mautic_max"`
}

type refFigures struct {
	RawAckEventsPerS    float64 `json:"raw_ack_events_per_s,omitempty"`
	RawAckCPUPer10k     float64 `json:"raw_ack_cpu_per_10k_events_s,omitempty"`
	FloorEventsPerS     float64 `json:"floor_events_per_s,omitempty"`
	FloorCPUPer10k      float64 `json:"floor_cpu_per_10k_events_s,omitempty"`
	CeilingLatencyBound float64 `json:"mautic_latency_bound_events_per_s"`
	CeilingRateBound    float64 `json:"mautic_rate_bound_events_per_s"`
	Ceiling             float64 `json:"mautic_ceiling_events_per_s"`
	CeilingCalls        float64 `json:"ideal_calls_per_event"`
	CeilingBusyMs       float64 `json:"ideal_mautic_ms_per_event"`
	CeilingNote         string  `json:"ceiling_note"`
}

// tally counts outcomes as the observer reports them; its observers are
// safe for concurrent use (a worker's, or several replicas').
type tally struct {
	n      int64 // events expected
	seen   []atomic.Uint64
	unique atomic.Int64
	extra  atomic.Int64
	other  atomic.Int64 // outcomes of messages that are not bench events
	first  atomic.Int64 // unix nanoseconds
	last   atomic.Int64
	t10    atomic.Int64
	t90    atomic.Int64
	all    *done
	// byReplica counts each replica's first outcomes (--replicas).
	byReplica []atomic.Int64

	mu       sync.Mutex
	byResult map[string]int64
	lat      bench.Histogram
	latType  map[string]*bench.Histogram
}

type done struct {
	once sync.Once
	ch   chan struct{}
}

func (d *done) close() { d.once.Do(func() { close(d.ch) }) }

func newTally(n, replicas int) *tally {
	t := &tally{n: int64(n), seen: make([]atomic.Uint64, (n+63)/64), all: &done{ch: make(chan struct{})},
		byReplica: make([]atomic.Int64, replicas), byResult: map[string]int64{}, latType: map[string]*bench.Histogram{}}
	for _, typ := range bench.Types {
		t.latType[typ] = &bench.Histogram{}
	}
	return t
}

func (t *tally) observe(s worker.Settled) { t.record(s, -1) }

// observer is replica i's observer.
func (t *tally) observer(i int) func(worker.Settled) {
	return func(s worker.Settled) { t.record(s, i) }
}

// record counts an outcome reported by replica i (-1: the one service).
func (t *tally) record(s worker.Settled, replica int) {
	now := time.Now()
	i, pub, ok := bench.ParseEventID(s.EventID)
	if !ok || int64(i) >= t.n {
		t.other.Add(1)
		return
	}
	bit := uint64(1) << (i % 64)
	if t.seen[i/64].Or(bit)&bit != 0 {
		t.extra.Add(1)
		return
	}
	if replica >= 0 && replica < len(t.byReplica) {
		t.byReplica[replica].Add(1)
	}
	ns := now.UnixNano()
	t.first.CompareAndSwap(0, ns)
	for last := t.last.Load(); ns > last && !t.last.CompareAndSwap(last, ns); last = t.last.Load() {
	}
	n := t.unique.Add(1)
	if n == max(1, t.n/10) {
		t.t10.Store(ns)
	}
	if n == max(1, t.n*9/10) {
		t.t90.Store(ns)
	}
	d := now.Sub(pub)
	t.lat.Record(d)
	if h := t.latType[s.EventType]; h != nil {
		h.Record(d)
	}
	key := s.Outcome
	if s.Reason != "" {
		key += ":" + s.Reason
	}
	t.mu.Lock()
	t.byResult[key]++
	t.mu.Unlock()
	if n == t.n {
		t.all.close()
	}
}

// sample is one look at the service during the run. inflight and limit
// are summed over the replicas; hasLimit when every replica exports one.
type sample struct {
	at       time.Time
	progress int64
	inflight float64
	limit    float64
	hasLimit bool
	rss      int64
	heap     uint64
	replicas []replicaSample
}

// replicaSample is one replica's /metrics in a sample.
type replicaSample struct {
	ok              bool
	inflight, limit float64
	hasLimit        bool
	owned, wanted   float64 // mautic_sync_partitions_owned, _wanted
}

// readReplica reads the gauges the bench samples from a scrape.
func readReplica(ss bench.Samples) (replicaSample, string) {
	r := replicaSample{ok: true}
	r.inflight, _ = ss.Get("mautic_sync_inflight_calls")
	name := ""
	if g := ss.Find(isLimitGauge); len(g) > 0 {
		r.limit, r.hasLimit, name = g[0].Value, true, g[0].Name
	}
	r.owned, _ = ss.Get("mautic_sync_partitions_owned")
	r.wanted, _ = ss.Get("mautic_sync_partitions_wanted")
	return r, name
}

// baseline is the counters the run's figures are differences from.
type baseline struct {
	infra     bench.InfraStats
	ms        runtimeCounters
	machine   time.Duration
	machineOK bool
	cpu       time.Duration
}

func takeBaseline(ctx context.Context, infra bench.Infra) (baseline, error) {
	var b baseline
	var err error
	if b.infra, err = infra.Stats(ctx); err != nil {
		return b, err
	}
	b.ms = readRuntime()
	b.machine, _, b.machineOK = bench.MachineCPU()
	b.cpu = bench.CPUTime()
	return b, nil
}

// waitReplicas waits until every replica has stopped (after their context
// ended), at most limit, and returns their errors other than the
// context's.
func waitReplicas(rs *replicaSet, limit time.Duration, stderr io.Writer) error {
	done := make(chan []error, 1)
	go func() {
		var errs []error
		for i := range rs.Len() {
			if err := rs.wait(i); err != nil && !errors.Is(err, context.Canceled) {
				errs = append(errs, fmt.Errorf("replica %d: %w", i, err))
			}
		}
		done <- errs
	}()
	select {
	case errs := <-done:
		return errors.Join(errs...)
	case <-time.After(limit):
		fmt.Fprintln(stderr, "mautic-sync bench: the service did not stop in time")
		return nil
	}
}

// exitError is what a replica stopping during the run means.
func exitError(ex replicaExit, replicas int) error {
	what := "the service"
	if replicas > 0 {
		what = fmt.Sprintf("replica %d", ex.Index)
	}
	if ex.Err == nil {
		return errors.New(what + " stopped")
	}
	if replicas > 0 {
		return fmt.Errorf("%s: %w", what, ex.Err)
	}
	return ex.Err
}

// scrapeAll scrapes every replica's /metrics (nil for one that failed).
func scrapeAll(ctx context.Context, urls []string) []bench.Samples {
	hc := &http.Client{Timeout: 5 * time.Second}
	defer hc.CloseIdleConnections()
	out := make([]bench.Samples, len(urls))
	var wg sync.WaitGroup
	for i, u := range urls {
		wg.Go(func() { out[i], _ = bench.Scrape(ctx, hc, u) })
	}
	wg.Wait()
	return out
}

// claimsSettled reports whether the elastic assignment has settled, from
// the members bucket (queue.Members: a key m.<id> per live member, p.<i>
// holding the id of partition i's claimant): n members, every partition
// claimed by one of them, each holding its even share (within one). A
// replica gives a claim up only once it holds nothing of the partition,
// so that then every replica consumes its own share.
func claimsSettled(ctx context.Context, kv jetstream.KeyValue, n, partitions int) (bool, error) {
	keys, err := kv.Keys(ctx)
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	members := map[string]int{}
	var claims []string
	for _, k := range keys {
		if id, ok := strings.CutPrefix(k, "m."); ok {
			members[id] = 0
		} else if strings.HasPrefix(k, "p.") {
			claims = append(claims, k)
		}
	}
	if len(members) != n || len(claims) != partitions {
		return false, nil
	}
	for _, k := range claims {
		e, err := kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		id := string(e.Value())
		if _, ok := members[id]; !ok {
			return false, nil
		}
		members[id]++
	}
	for _, c := range members {
		if c < partitions/n || c > (partitions+n-1)/n {
			return false, nil
		}
	}
	return true, nil
}

// partitionState describes each partition consumer (its messages left and
// unacknowledged, its pinned client) and, in elastic mode, its claimant:
// what a run that did not finish left behind.
func partitionState(ctx context.Context, js jetstream.JetStream, cfg config.Config) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	kv, _ := js.KeyValue(ctx, cfg.Partition.Bucket)
	var parts []string
	for i := range cfg.Partition.Count {
		name := queue.PartitionConsumer(cfg.Consumer.Name, i)
		c, err := js.Consumer(ctx, cfg.Stream.Name, name)
		if err != nil {
			parts = append(parts, fmt.Sprintf("p%d: %v", i, err))
			continue
		}
		info, err := c.Info(ctx)
		if err != nil {
			parts = append(parts, fmt.Sprintf("p%d: %v", i, err))
			continue
		}
		st := fmt.Sprintf("p%d: %d pending, %d unacknowledged", i, info.NumPending, info.NumAckPending)
		for _, g := range info.PriorityGroups {
			if g.PinnedClientID != "" {
				st += ", pinned " + g.PinnedClientID
			}
		}
		if kv != nil {
			if e, err := kv.Get(ctx, "p."+strconv.Itoa(i)); err == nil {
				st += ", claimed by " + string(e.Value())
			} else {
				st += ", unclaimed"
			}
		}
		parts = append(parts, st)
	}
	return "partitions: " + strings.Join(parts, "; ")
}

// awaitAssignment waits until the elastic assignment of n replicas has
// settled (true), or every event had its outcome or limit passed (false),
// or a replica stopped (its error).
func awaitAssignment(ctx context.Context, js jetstream.JetStream, cfg config.Config, n int, limit time.Duration, all <-chan struct{}, exited <-chan replicaExit) (bool, error) {
	deadline := time.After(limit)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var kv jetstream.KeyValue
	for {
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-all:
			return false, nil
		case <-deadline:
			return false, nil
		case ex := <-exited:
			return false, exitError(ex, n)
		case <-tick.C:
		}
		if kv == nil {
			var err error
			if kv, err = js.KeyValue(ctx, cfg.Partition.Bucket); err != nil {
				continue // the replicas create it
			}
		}
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		ok, err := claimsSettled(qctx, kv, n, cfg.Partition.Count)
		cancel()
		if err != nil && ctx.Err() == nil {
			continue
		}
		if ok {
			return true, nil
		}
	}
}

func runBench(ctx context.Context, o benchOptions, stderr io.Writer) (*benchReport, error) {
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()

	rep := &benchReport{
		Machine: machine(),
		Date:    time.Now().UTC().Format(time.RFC3339),
		Command: strings.TrimSpace("mautic-sync bench " + strings.Join(o.args, " ")),
		Ratios:  map[string]float64{},
	}
	precreate := o.precreate == "true" || o.precreate == "auto" && !o.mix.OnlyUpserts()
	rep.Settings = benchSetting{Mode: o.mode, Events: o.events, Rate: o.rate, Contacts: o.contacts, Mix: o.mix.String(),
		Precreated: precreate, CallLatency: o.callLatency.String(), ItemLatency: o.itemLatency.String(),
		RateLimit: o.rateLimit, Budget: o.budget, Concurrency: o.concurrency, Batch: o.batch, Linger: o.linger.String(),
		MaxAckPending: o.maxAckPending, Infra: o.infra}
	if o.duration > 0 {
		rep.Settings.Duration = o.duration.String()
	}
	if o.rateLimit > 0 || o.budget > 0 {
		rep.Settings.RateWindow = o.rateWindow.String()
	}

	// The infrastructure.
	user, password := "bench", randomHex(12)
	iopts := bench.InfraOptions{Segments: max(o.segments, 10), RequestLogLimit: 1000, User: user, Password: password}
	var (
		infra bench.Infra
		err   error
	)
	if o.infra == "process" {
		infra, err = bench.StartProcess(ctx, iopts, stderr)
	} else {
		pprof.Do(ctx, pprof.Labels("part", "infra"), func(context.Context) { infra, err = bench.StartLocal(iopts) })
	}
	if err != nil {
		return nil, err
	}
	defer infra.Close()

	cfg, err := benchServiceConfig(o, infra, user, password)
	if err != nil {
		return nil, err
	}
	log, err := newLogger(cfg.Log, stderr)
	if err != nil {
		return nil, err
	}
	defer func() { _ = log.Sync() }()
	if o.replicaN > 0 {
		rep.Settings.Replicas, rep.Settings.Partitions = o.replicaN, cfg.Partition.Count
		rep.Settings.PartitionMode, rep.Settings.Takeover = cfg.Partition.Mode, cfg.Partition.Takeover.String()
		rep.Settings.BudgetShared = cfg.ShareRateBudget()
	}

	// The load generator's connection; the topology exists before the
	// backlog is published.
	var pubErrs atomic.Int64
	nc, err := nats.Connect(cfg.NATS.URL, nats.Name("mautic-sync bench load"))
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(8192),
		jetstream.WithPublishAsyncErrHandler(func(jetstream.JetStream, *nats.Msg, error) { pubErrs.Add(1) }))
	if err != nil {
		return nil, err
	}
	if o.replicaN > 0 {
		// The partitioned stream (its subject transform spreads the events
		// over the partitions as they are published), the partition
		// consumers and the buckets.
		err = ensureJetStream(ctx, js, cfg)
	} else {
		_, err = queue.Ensure(ctx, js, topology(cfg), true)
	}
	if err != nil {
		return nil, err
	}
	if precreate {
		if err := precreateContacts(ctx, cfg.Mautic.URL, user, password, o.contacts); err != nil {
			return nil, fmt.Errorf("pre-creating contacts: %w", err)
		}
	}
	if err := infra.Arm(ctx, bench.Arm{PerCall: o.callLatency, PerItem: o.itemLatency, RateLimit: o.rateLimit, RateWindow: o.rateWindow}); err != nil {
		return nil, err
	}

	gen := bench.NewGenerator(o.mix, o.contacts, o.events, o.segments, o.seed)
	t := newTally(o.events, o.replicaN)
	if o.mode == "backlog" {
		start := time.Now()
		if err := publishBacklog(ctx, js, gen, o.events); err != nil {
			return nil, err
		}
		rep.PublishS = time.Since(start).Seconds()
		rep.Published = int64(o.events)
	}

	// The measured run.
	runtime.GC()
	debug.FreeOSMemory()
	rssReset := bench.ResetPeakRSS()
	rep.Machine.LoadAtStart = bench.LoadAverage()
	base, err := takeBaseline(ctx, infra)
	if err != nil {
		return nil, err
	}
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return nil, err
		}
	}
	profiling := o.cpuProfile != ""
	stopProfile := func() {
		if profiling {
			pprof.StopCPUProfile()
			profiling = false
		}
	}
	defer stopProfile()

	// The service: one serve() (unpartitioned), or --replicas of it.
	t0 := time.Now()
	runCtx, stopService := context.WithCancel(ctx)
	defer stopService()
	var rs *replicaSet
	pprof.Do(runCtx, pprof.Labels("part", "service"), func(ctx context.Context) {
		rs, err = startReplicasEach(ctx, cfg, max(o.replicaN, 1), log, func(i int) func(worker.Settled) {
			if o.replicaN == 0 {
				return t.observe
			}
			return t.observer(i)
		})
	})
	if err != nil {
		return nil, err
	}
	stopped := false
	stopReplicas := func() error {
		if stopped {
			return nil
		}
		stopped = true
		stopService()
		return waitReplicas(rs, cfg.Worker.DrainTimeout+10*time.Second, stderr)
	}
	defer func() { _ = stopReplicas() }()
	urls := make([]string, rs.Len())
	for i := range urls {
		urls[i] = "http://" + rs.Addr(i) + "/metrics"
	}

	// Sample the service's gauges and memory.
	smp := startSampler(runCtx, urls, o.sampleInterval, &t.unique)

	// Backlog mode with elastic replicas: the clock starts once every
	// replica consumes its share of the partitions. The membership settles
	// within a few heartbeats (PARTITION_TAKEOVER/4 apart), but the first
	// replicas to start take every partition and give the others' up only
	// once they have settled what they hold of them.
	warm := int64(0)
	if o.replicaN > 0 && o.mode == "backlog" && cfg.Partition.Mode == "elastic" {
		limit := max(30*time.Second, 6*cfg.Partition.Takeover)
		ok, err := awaitAssignment(runCtx, js, cfg, o.replicaN, limit, t.all.ch, rs.Exited())
		switch {
		case err != nil:
			return nil, err
		case ok:
			if base, err = takeBaseline(ctx, infra); err != nil {
				return nil, err
			}
			warm = t.unique.Load()
			rep.WarmupS, rep.WarmupOutcomes = time.Since(t0).Seconds(), warm
			t0 = time.Now()
			if warm > int64(o.events)/2 {
				rep.Note = fmt.Sprintf("the warm-up took %d of the %d events: the measured part is short, publish more", warm, o.events)
			}
		default:
			rep.Note = "the partition assignment did not settle before the backlog ran out or within " + limit.String() + "; timed from the start"
		}
	}

	// Rate mode: publish while the service runs.
	published := make(chan error, 1)
	var pubCount atomic.Int64
	if o.mode == "rate" {
		go pprof.Do(runCtx, pprof.Labels("part", "load"), func(ctx context.Context) {
			published <- publishPaced(ctx, js, gen, o.events, o.rate, &pubCount)
		})
	} else {
		pubCount.Store(int64(o.events))
		published <- nil
	}

	// Wait for every outcome, the end of --duration, or the timeout.
	var durationEnd <-chan time.Time
	if o.mode == "backlog" && o.duration > 0 {
		durationEnd = time.After(o.duration)
	}
	var serveErr error
	tEnd := time.Time{}
	cut, cutCount := false, int64(0)
wait:
	for {
		select {
		case <-t.all.ch:
			tEnd = time.Unix(0, t.last.Load())
			break wait
		case <-durationEnd:
			tEnd, cut, cutCount = time.Now(), true, t.unique.Load()
			break wait
		case err := <-published:
			if err != nil {
				serveErr = fmt.Errorf("publishing: %w", err)
				break wait
			}
		case ex := <-rs.Exited():
			serveErr = exitError(ex, o.replicaN)
			break wait
		case <-ctx.Done():
			tEnd = time.Now()
			rep.Incomplete = true
			rep.Note = "timed out before every event had its outcome"
			if o.replicaN > 0 {
				rep.Note += "; " + partitionState(context.WithoutCancel(ctx), js, cfg)
			}
			break wait
		}
	}
	cpu1 := bench.CPUTime()
	machine1, _, _ := bench.MachineCPU()
	t1 := time.Now()
	ms1 := readRuntime()
	peak := bench.PeakRSS()
	peakSource := "VmHWM, reset when the service started"
	if !rssReset || peak < 0 {
		peak, peakSource = bench.MaxRSS(), "ru_maxrss since the process began (VmHWM could not be reset)"
	}
	infra1, ierr := infra.Stats(context.WithoutCancel(ctx))
	stopProfile()
	if o.memProfile != "" {
		if err := writeHeapProfile(o.memProfile); err != nil {
			fmt.Fprintln(stderr, "mautic-sync bench: heap profile:", err)
		}
	}
	finals := scrapeAll(context.WithoutCancel(ctx), urls)
	var scraped bench.Samples
	for _, f := range finals {
		scraped = append(scraped, f...)
	}
	all, limitName := smp.stop()
	if err := stopReplicas(); serveErr == nil {
		serveErr = err
	}
	if serveErr != nil {
		return nil, serveErr
	}
	if ierr != nil {
		return nil, ierr
	}
	if n := pubErrs.Load(); n > 0 {
		return nil, fmt.Errorf("%d publishes failed", n)
	}

	// Figures of the run.
	if tEnd.IsZero() {
		tEnd = time.Now()
	}
	infra0, ms0, machine0, machineOK, cpu0 := base.infra, base.ms, base.machine, base.machineOK, base.cpu
	elapsed := tEnd.Sub(t0)
	outcomes := t.unique.Load()
	if cut {
		outcomes = cutCount // outcomes while the service drains after the cut are not the run's
	}
	measured := outcomes - warm // the outcomes since the clock started
	rep.Published = pubCount.Load()
	rep.Outcomes = outcomes
	rep.Extra = t.extra.Load()
	rep.ByResult = t.byResult
	rep.Seconds = elapsed.Seconds()
	if elapsed > 0 {
		rep.EventsPerS = float64(measured) / elapsed.Seconds()
	}
	if t10, t90 := t.t10.Load(), t.t90.Load(); t10 > 0 && t90 > t10 {
		rep.SteadyEventsPerS = float64(t.n*9/10-max(1, t.n/10)) / time.Duration(t90-t10).Seconds()
	}
	if cut {
		rep.Note = fmt.Sprintf("measured for --duration %s; %d of %d events had their outcome by then", o.duration, outcomes, o.events)
	} else if !rep.Incomplete && outcomes < int64(o.events) {
		rep.Incomplete = true
		rep.Note = fmt.Sprintf("%d of %d events had their outcome", outcomes, o.events)
	}
	rep.LatencyMs = latencyOf(&t.lat)
	rep.LatencyType = map[string]latencyFigures{}
	for typ, h := range t.latType {
		if h.Count() > 0 {
			rep.LatencyType[strings.TrimPrefix(typ, "contact.")] = latencyOf(h)
		}
	}

	// Mautic.
	m := mauticFiguresOf(o, infra0, infra1, scraped, all, measured, tEnd) // scraped is nil when it failed
	rep.Mautic = m

	// CPU and memory.
	scope := "the service process: serve() and the bench's own sampling and outcome counting"
	if !infra.Separate() {
		scope = "the whole process: the service, the embedded NATS server and the Mautic fake (--infra inprocess)"
	}
	rep.CPU = cpuFigures{ServiceS: (cpu1 - cpu0).Seconds(), ServiceScope: scope, GCCycles: ms1.gc - ms0.gc}
	if measured > 0 {
		rep.CPU.ServicePer10k = rep.CPU.ServiceS / float64(measured) * 10000
		rep.CPU.AllocPerEvent = float64(ms1.alloc-ms0.alloc) / float64(measured)
	}
	if machineOK && elapsed > 0 {
		other := (machine1 - machine0 - (cpu1 - cpu0)).Seconds()
		if infra.Separate() {
			other -= (infra1.CPU - infra0.CPU).Seconds()
		}
		rep.Machine.OtherCores = math.Round(max(other, 0)/t1.Sub(t0).Seconds()*100) / 100
	}
	if infra.Separate() {
		rep.CPU.InfraS = (infra1.CPU - infra0.CPU).Seconds()
		if measured > 0 {
			rep.CPU.InfraPer10k = rep.CPU.InfraS / float64(measured) * 10000
		}
	}
	rep.Memory = memFigures{PeakRSSMiB: mib(peak), PeakRSSSource: peakSource,
		BenchOverheadNote: "includes the bench's outcome bookkeeping (1 bit per event, histograms) and metric sampling"}
	if infra.Separate() {
		rep.Memory.InfraPeakRSSMiB = mib(infra1.PeakRSS)
	} else {
		rep.Memory.BenchOverheadNote += "; in process, also the embedded NATS server and the fake"
	}
	for _, s := range all {
		rep.Memory.SampledMaxRSSMiB = math.Max(rep.Memory.SampledMaxRSSMiB, mib(s.rss))
		rep.Memory.PeakHeapMiB = math.Max(rep.Memory.PeakHeapMiB, mib(int64(s.heap)))
	}

	// Concurrency.
	rep.Concurrency = concurrencyOf(o, all, limitName, t.n, infra0, infra1, tEnd)
	if c := rep.Concurrency; c.Settled > 0 && (o.callLatency > 0 || o.itemLatency > 0) {
		rep.Ratios["slot_use_at_mautic"] = c.AtMauticMean / c.Settled
	}
	if o.replicaN > 0 {
		rep.Replicas = replicaFiguresOf(o, t, all, finals, urls, tEnd)
	}

	// References.
	if err := references(ctx, o, rep, infra, cfg); err != nil {
		return rep, err
	}
	return rep, nil
}

// benchServiceConfig is the service's configuration: the defaults and the
// environment (config.Parse), then the infrastructure's addresses and the
// flags.
func benchServiceConfig(o benchOptions, infra bench.Infra, user, password string) (config.Config, error) {
	cfg, err := config.Parse()
	if err != nil {
		return cfg, err
	}
	cfg.NATS.URL = infra.NATSURL()
	cfg.Mautic.URL = infra.MauticURL()
	cfg.Mautic.Username, cfg.Mautic.Password = user, password
	cfg.Mautic.ClientID, cfg.Mautic.ClientSecret, cfg.Mautic.RefreshToken = "", "", ""
	cfg.Mautic.AllowInsecureHTTP = true // the fake listens on loopback
	cfg.Mautic.RateLimit = o.budget
	if o.budget > 0 {
		cfg.Mautic.RateWindow = o.rateWindow
	}
	cfg.Batch.Size, cfg.Batch.Linger = o.batch, o.linger
	cfg.Worker.Concurrency = o.concurrency
	cfg.Consumer.MaxAckPending = o.maxAckPending
	cfg.HTTP.Addr = loopbackAddr(0)
	cfg.Log.Level, cfg.Log.Format = o.logLevel, "console"
	cfg.CreateStreams = true
	if o.replicaN > 0 {
		// PARTITION_MODE, PARTITION_TAKEOVER and MAUTIC_RATE_SHARED come
		// from the environment (elastic, 10s, auto: with basic auth the
		// replicas share one budget); startReplicas places static ones.
		cfg.Partition.Count = o.partitions
		cfg.Partition.Index, cfg.Partition.Replicas = -1, 0
		if cfg.Partition.Mode == "static" {
			cfg.Partition.Replicas = o.replicaN
		}
	}
	if err := cfg.Validate(); err != nil {
		return cfg, fmt.Errorf("settings: %w", err)
	}
	return cfg, nil
}

// references computes the Mautic ceiling for the settled concurrency and
// measures the NATS references on the run's messages, with the worker's
// ratio to each.
func references(ctx context.Context, o benchOptions, rep *benchReport, infra bench.Infra, cfg config.Config) error {
	m := rep.Mautic
	model := bench.MauticModel{PerCall: o.callLatency, PerItem: o.itemLatency, RateLimit: o.rateLimit, RateWindow: o.rateWindow, Batch: min(o.batch, 200)}
	ceil := model.CeilingAt(o.mix, rep.Concurrency.Settled)
	rep.Refs.CeilingLatencyBound = finite(ceil.LatencyBound)
	rep.Refs.CeilingRateBound = finite(ceil.RateBound)
	rep.Refs.Ceiling = finite(ceil.Bound)
	rep.Refs.CeilingCalls = ceil.CallsPerEvent
	rep.Refs.CeilingBusyMs = ceil.BusyPerEvent.Seconds() * 1000
	rep.Refs.CeilingNote = fmt.Sprintf("ideal client for the mix: full batches of %d (lookups %d), %.4g calls and %.4g ms of Mautic time per event; latency bound at concurrency %.2f; 0 means unbounded",
		model.Batch, min(model.Batch, 50), ceil.CallsPerEvent, ceil.BusyPerEvent.Seconds()*1000, rep.Concurrency.Settled)
	if rep.Refs.CeilingRateBound > 0 && m.SteadyWindowEvents > 0 {
		rep.Ratios["complete_windows_vs_rate_bound"] = m.SteadyWindowEvents / rep.Refs.CeilingRateBound
	}
	if rep.Refs.Ceiling > 0 {
		rep.Ratios["vs_mautic_ceiling"] = rep.EventsPerS / rep.Refs.Ceiling
		if rep.SteadyEventsPerS > 0 {
			rep.Ratios["steady_vs_mautic_ceiling"] = rep.SteadyEventsPerS / rep.Refs.Ceiling
		}
	}
	stream := cfg.Stream.Name
	if o.wantRef("raw") && rep.Published > 0 {
		r, err := pprofDo(ctx, "raw", func(ctx context.Context) (refResult, error) {
			return measureRef(ctx, infra, cfg, stream, int(rep.Published), "raw")
		})
		if err != nil {
			return fmt.Errorf("raw reference: %w", err)
		}
		rep.Refs.RawAckEventsPerS, rep.Refs.RawAckCPUPer10k = r.perS, r.cpuPer10k
		if r.perS > 0 {
			rep.Ratios["vs_raw_ack"] = rep.EventsPerS / r.perS
		}
	}
	if o.wantRef("floor") && rep.Published > 0 {
		r, err := pprofDo(ctx, "floor", func(ctx context.Context) (refResult, error) {
			return measureRef(ctx, infra, cfg, stream, int(rep.Published), "floor")
		})
		if err != nil {
			return fmt.Errorf("floor reference: %w", err)
		}
		rep.Refs.FloorEventsPerS, rep.Refs.FloorCPUPer10k = r.perS, r.cpuPer10k
		if r.perS > 0 {
			rep.Ratios["vs_floor"] = rep.EventsPerS / r.perS
		}
	}
	return nil
}

func pprofDo[T any](ctx context.Context, part string, f func(context.Context) (T, error)) (T, error) {
	var (
		v   T
		err error
	)
	pprof.Do(ctx, pprof.Labels("part", part), func(ctx context.Context) { v, err = f(ctx) })
	return v, err
}

// sampler looks at the service every interval while it runs: its
// calls in flight and concurrency limit (from /metrics), its memory, and
// the outcomes counted so far.
type sampler struct {
	cancel  context.CancelFunc
	done    chan struct{}
	samples []sample
	limit   string // the name of the concurrency-limit gauge, when exported
}

func startSampler(ctx context.Context, urls []string, every time.Duration, progress *atomic.Int64) *sampler {
	ctx, cancel := context.WithCancel(ctx)
	s := &sampler{cancel: cancel, done: make(chan struct{})}
	go pprof.Do(ctx, pprof.Labels("part", "bench"), func(ctx context.Context) {
		defer close(s.done)
		hc := &http.Client{Timeout: 2 * time.Second}
		// A scrape cut short while dialing leaves its connection in the
		// pool, one on which the service's HTTP server never saw a
		// request: its Shutdown waits 5 s for such a connection, and serve
		// then returns "context deadline exceeded". Close them.
		defer hc.CloseIdleConnections()
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			x := sample{at: time.Now(), progress: progress.Load(), rss: bench.RSS(), heap: heapBytes(), hasLimit: true}
			for _, url := range urls {
				var r replicaSample
				if ss, err := bench.Scrape(ctx, hc, url); err == nil {
					var name string
					if r, name = readReplica(ss); name != "" {
						s.limit = name
					}
				}
				x.inflight += r.inflight
				x.limit += r.limit
				x.hasLimit = x.hasLimit && r.hasLimit
				x.replicas = append(x.replicas, r)
			}
			if !x.hasLimit {
				x.limit = 0
			}
			s.samples = append(s.samples, x)
		}
	})
	return s
}

// stop ends sampling and returns the samples and the limit gauge's name.
func (s *sampler) stop() ([]sample, string) {
	s.cancel()
	<-s.done
	return s.samples, s.limit
}

// mauticFiguresOf sums up what the fake saw between two snapshots, with
// the items per call from the service's final /metrics (nil when it could
// not be read) and, for rate-limited runs, the limiter's windows.
func mauticFiguresOf(o benchOptions, infra0, infra1 bench.InfraStats, final bench.Samples, samples []sample, outcomes int64, tEnd time.Time) mauticFigures {
	m := mauticFigures{Calls: infra1.Calls - infra0.Calls, Status429: infra1.Status429 - infra0.Status429,
		Status5xx: infra1.Status5xx - infra0.Status5xx, Routes: infra1.Routes, ByEndpoint: map[string]endpointFigures{}}
	if outcomes > 0 {
		m.CallsPerEvent = float64(m.Calls) / float64(outcomes)
	}
	// Calls and time per endpoint as the fake saw them; items per call
	// from the service's own histogram (mautic_sync_batch_items).
	for route, rs := range infra1.Routes {
		ep := routeEndpoint(route)
		e := m.ByEndpoint[ep]
		e.Calls += float64(rs.Calls - infra0.Routes[route].Calls)
		e.MeanLatencyMs += (rs.ServiceSeconds - infra0.Routes[route].ServiceSeconds) * 1000 // a total until divided below
		m.ByEndpoint[ep] = e
	}
	var items, batchCalls float64
	for ep, e := range m.ByEndpoint {
		if e.Calls > 0 {
			e.MeanLatencyMs /= e.Calls
		}
		count := final.Sum("mautic_sync_batch_items_count", "endpoint", ep) // over the replicas
		sum := final.Sum("mautic_sync_batch_items_sum", "endpoint", ep)
		if count > 0 {
			e.MeanItems = sum / count
			if isBatchEndpoint(ep) {
				items += sum
				batchCalls += count
			}
		}
		m.ByEndpoint[ep] = e
	}
	if batchCalls > 0 {
		m.ItemsPerBatchCall = items / batchCalls
	}
	if o.rateLimit <= 0 {
		return m
	}
	var starts []int64
	for _, s := range infra1.CallStarts {
		if s <= tEnd.UnixNano() {
			starts = append(starts, s)
		}
	}
	wins := bench.RateWindows(starts, o.rateWindow)
	m.Windows = float64(len(wins))
	if len(wins) > 0 {
		m.Per429Window = float64(m.Status429) / m.Windows
	}
	if k := len(wins) - 1; k >= 2 {
		first, last := wins[0], wins[k]
		m.WindowPeriodS = last.Sub(first).Seconds() / float64(k)
		n := 0
		for _, s := range starts {
			if s >= first.UnixNano() && s < last.UnixNano() {
				n++
			}
		}
		m.CallsPerWindow = float64(n) / float64(k)
		if a, b := progressAt(samples, first), progressAt(samples, last); b > a {
			m.SteadyWindowEvents = (b - a) / last.Sub(first).Seconds()
		}
	}
	return m
}

// progressAt interpolates the outcomes counted by time at from the samples.
func progressAt(samples []sample, at time.Time) float64 {
	i := sort.Search(len(samples), func(i int) bool { return !samples[i].at.Before(at) })
	switch {
	case len(samples) == 0:
		return 0
	case i == 0:
		return float64(samples[0].progress)
	case i == len(samples):
		return float64(samples[len(samples)-1].progress)
	}
	a, b := samples[i-1], samples[i]
	f := at.Sub(a.at).Seconds() / b.at.Sub(a.at).Seconds()
	return float64(a.progress) + f*float64(b.progress-a.progress)
}

// isLimitGauge matches a gauge of the worker's concurrency limit, under
// whatever name it is exported (e.g. mautic_sync_concurrency_limit).
func isLimitGauge(name string) bool {
	return strings.HasPrefix(name, "mautic_sync_") && strings.Contains(name, "concurrency")
}

// isBatchEndpoint reports the worker's step endpoints that carry many items.
func isBatchEndpoint(ep string) bool {
	switch ep {
	case "contacts/batch/new", "contacts/batch/edit", "contacts/batch/delete", "segments/contacts/add":
		return true
	}
	return false
}

// routeEndpoint maps a route seen at the fake to the worker's endpoint label.
func routeEndpoint(route string) string {
	switch {
	case route == "POST /api/contacts/batch/new":
		return "contacts/batch/new"
	case route == "PATCH /api/contacts/batch/edit":
		return "contacts/batch/edit"
	case route == "DELETE /api/contacts/batch/delete":
		return "contacts/batch/delete"
	case route == "GET /api/contacts":
		return "contacts/find"
	case route == "POST /api/segments/{id}/contacts/add":
		return "segments/contacts/add"
	case strings.HasPrefix(route, "POST /api/segments/{id}/contact/{id}/remove"):
		return "segments/contact/remove"
	case strings.Contains(route, "/points/"):
		return "contacts/points"
	case strings.HasPrefix(route, "GET /api/fields/contact"):
		return "fields/contact"
	}
	return route
}

// steadySamples are the samples of the steady part: between 10% and 90%
// of the n outcomes, before the end (all before the end when fewer than
// three).
func steadySamples(samples []sample, n int64, end time.Time) []sample {
	var steady []sample
	for _, s := range samples {
		if s.progress >= n/10 && s.progress <= n*9/10 && !s.at.After(end) {
			steady = append(steady, s)
		}
	}
	if len(steady) < 3 {
		steady = nil
		for _, s := range samples {
			if !s.at.After(end) {
				steady = append(steady, s)
			}
		}
	}
	return steady
}

// replicaFiguresOf is each replica's part of a --replicas run: its
// outcomes, its concurrency over the steady part, and its partitions at
// the end.
func replicaFiguresOf(o benchOptions, t *tally, samples []sample, finals []bench.Samples, urls []string, end time.Time) []replicaFigures {
	steady := steadySamples(samples, t.n, end)
	total := t.unique.Load()
	out := make([]replicaFigures, len(urls))
	for i := range out {
		f := replicaFigures{Index: i, Outcomes: t.byReplica[i].Load(), MetricsAddr: strings.TrimSuffix(strings.TrimPrefix(urls[i], "http://"), "/metrics")}
		if total > 0 {
			f.Share = math.Round(float64(f.Outcomes)/float64(total)*1000) / 1000
		}
		var in, lim float64
		var nIn, nLim int
		for _, s := range steady {
			if i >= len(s.replicas) || !s.replicas[i].ok {
				continue
			}
			r := s.replicas[i]
			in += r.inflight
			nIn++
			if r.hasLimit {
				lim += r.limit
				nLim++
			}
		}
		if nIn > 0 {
			f.InflightMean = in / float64(nIn)
		}
		switch {
		case o.concurrency > 0:
			f.Settled = float64(o.concurrency)
		case nLim > 0:
			f.Settled = lim / float64(nLim)
		default:
			f.Settled = f.InflightMean
		}
		if i < len(finals) && finals[i] != nil {
			r, _ := readReplica(finals[i])
			f.PartitionsOwned, f.PartitionsWanted = r.owned, r.wanted
		}
		out[i] = f
	}
	return out
}

func concurrencyOf(o benchOptions, samples []sample, limitName string, n int64, i0, i1 bench.InfraStats, end time.Time) concFigures {
	c := concFigures{Mode: "adaptive", AtMauticMax: i1.MaxInflight}
	if span := i1.At.Sub(i0.At).Seconds(); span > 0 {
		c.AtMauticMean = (i1.InflightArea - i0.InflightArea) / span
	}
	steady := steadySamples(samples, n, end)
	var inSum, limSum float64
	var limN int
	for _, s := range steady {
		inSum += s.inflight
		c.WorkerInflightMax = math.Max(c.WorkerInflightMax, s.inflight)
		if s.hasLimit {
			limSum += s.limit
			limN++
			c.LimitMax = math.Max(c.LimitMax, s.limit)
			c.LimitLast = s.limit
		}
	}
	if len(steady) > 0 {
		c.WorkerInflightMean = inSum / float64(len(steady))
	}
	if limN > 0 {
		c.LimitGauge = limitName
		c.LimitMean = limSum / float64(limN)
	}
	switch {
	case o.concurrency > 0:
		c.Mode, c.Settled, c.Source = "fixed", float64(o.concurrency*max(o.replicaN, 1)), "--concurrency"
		if o.replicaN > 1 {
			c.Source = fmt.Sprintf("--concurrency x %d replicas", o.replicaN)
		}
	case limN > 0:
		c.Settled, c.Source = c.LimitMean, limitName+" (mean over the steady part)"
	default:
		c.Settled, c.Source = c.WorkerInflightMean, "mautic_sync_inflight_calls (mean over the steady part)"
	}
	return c
}

type runtimeCounters struct {
	alloc uint64
	gc    uint64
}

func readRuntime() runtimeCounters {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}, {Name: "/gc/cycles/total:gc-cycles"}}
	metrics.Read(s)
	var r runtimeCounters
	if s[0].Value.Kind() == metrics.KindUint64 {
		r.alloc = s[0].Value.Uint64()
	}
	if s[1].Value.Kind() == metrics.KindUint64 {
		r.gc = s[1].Value.Uint64()
	}
	return r
}

func heapBytes() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() == metrics.KindUint64 {
		return s[0].Value.Uint64()
	}
	return 0
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	runtime.GC()
	return pprof.Lookup("heap").WriteTo(f, 0)
}

func latencyOf(h *bench.Histogram) latencyFigures {
	ms := func(d time.Duration) float64 { return math.Round(d.Seconds()*1e5) / 100 }
	return latencyFigures{Count: h.Count(), P50: ms(h.Quantile(0.5)), P90: ms(h.Quantile(0.9)), P99: ms(h.Quantile(0.99)),
		Max: ms(h.Max()), Mean: ms(h.Mean())}
}

func mib(b int64) float64 {
	if b <= 0 {
		return 0
	}
	return math.Round(float64(b)/(1<<20)*10) / 10
}

func finite(f float64) float64 {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return 0
	}
	return f
}

func machine() machineInfo {
	m := machineInfo{NumCPU: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0), CPUModel: bench.CPUModel(), GoVersion: runtime.Version()}
	var u syscall.Utsname
	if syscall.Uname(&u) == nil {
		b := make([]byte, 0, len(u.Release))
		for _, c := range u.Release {
			if c == 0 {
				break
			}
			b = append(b, byte(c))
		}
		m.Kernel = string(b)
	}
	return m
}

// precreateContacts creates contacts 0..n-1 in the fake (batch upserts),
// so that events other than upserts find their contact.
func precreateContacts(ctx context.Context, url, user, password string, n int) error {
	mc, err := mautic.NewClient(url, mautic.WithBasicAuth(user, password))
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(4)
	for lo := 0; lo < n; lo += 200 {
		hi := min(lo+200, n)
		g.Go(func() error {
			items := make([]mautic.Contact, 0, hi-lo)
			for c := lo; c < hi; c++ {
				items = append(items, mautic.Contact{"email": bench.ContactEmail(c), "firstname": "Bench"})
			}
			res, _, err := mc.BatchUpsert(gctx, items)
			if err != nil {
				return err
			}
			for _, r := range res {
				if !r.OK() {
					return fmt.Errorf("item refused: %d", r.Status)
				}
			}
			return nil
		})
	}
	return g.Wait()
}

// publishBacklog publishes n events as fast as JetStream takes them.
func publishBacklog(ctx context.Context, js jetstream.JetStream, gen *bench.Generator, n int) error {
	for i := range n {
		if err := publishOne(js, gen.Next(i)); err != nil {
			return err
		}
		if i%4096 == 4095 {
			if err := waitPublished(ctx, js); err != nil {
				return err
			}
		}
	}
	return waitPublished(ctx, js)
}

func publishOne(js jetstream.JetStream, ev bench.Event) error {
	m := &nats.Msg{Subject: ev.Subject, Data: slices.Clone(ev.Body), Header: nats.Header{}}
	_, err := js.PublishMsgAsync(m, jetstream.WithMsgID(ev.ID))
	return err
}

func waitPublished(ctx context.Context, js jetstream.JetStream) error {
	select {
	case <-js.PublishAsyncComplete():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// publishPaced publishes n events at rate per second, each stamped when it
// is handed to the client.
func publishPaced(ctx context.Context, js jetstream.JetStream, gen *bench.Generator, n int, rate float64, count *atomic.Int64) error {
	start := time.Now()
	for i := 0; i < n; {
		due := start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
		if wait := time.Until(due); wait > 0 {
			select {
			case <-time.After(min(wait, 5*time.Millisecond)):
			case <-ctx.Done():
				return nil
			}
			continue
		}
		for ; i < n && !start.Add(time.Duration(float64(i)/rate*float64(time.Second))).After(time.Now()); i++ {
			if err := publishOne(js, gen.Next(i)); err != nil {
				return err
			}
			count.Add(1)
		}
	}
	return waitPublished(ctx, js)
}

type refResult struct {
	perS      float64
	cpuPer10k float64
}

// measureRef drains the input stream's n messages once more through a new
// durable consumer, doing only NATS work: "raw" acknowledges each message;
// "floor" does per batch what the service must do in NATS for each event
// besides the Mautic call (ledger lookup and record in a key-value bucket,
// an outcome published and confirmed, the ack), with as many batches at
// once as the service's default concurrency.
func measureRef(ctx context.Context, infra bench.Infra, cfg config.Config, stream string, n int, kind string) (refResult, error) {
	nc, err := nats.Connect(cfg.NATS.URL, nats.Name("mautic-sync bench "+kind))
	if err != nil {
		return refResult{}, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(10*time.Second))
	if err != nil {
		return refResult{}, err
	}
	name := "bench-ref-" + kind
	cons, err := js.CreateOrUpdateConsumer(ctx, stream, jetstream.ConsumerConfig{
		Durable: name, AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Minute,
		MaxAckPending: cfg.Consumer.MaxAckPending, DeliverPolicy: jetstream.DeliverAllPolicy, MaxDeliver: -1,
	})
	if err != nil {
		return refResult{}, err
	}
	defer func() { _ = js.DeleteConsumer(context.WithoutCancel(ctx), stream, name) }()

	var (
		ledger *queue.Ledger
		pub    *queue.Publisher
	)
	if kind == "floor" {
		if ledger, err = queue.OpenLedger(ctx, js, queue.LedgerOptions{Bucket: "BENCH_FLOOR_LEDGER", TTL: time.Hour, Create: true}); err != nil {
			return refResult{}, err
		}
		if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "BENCH_FLOOR", Subjects: []string{"bench.floor"},
			Duplicates: cfg.Stream.Duplicates, Storage: jetstream.FileStorage}); err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return refResult{}, err
		}
		pub = queue.NewPublisher(js)
	}

	i0, err := infra.Stats(ctx)
	if err != nil {
		return refResult{}, err
	}
	cpu0 := bench.CPUTime()
	start := time.Now()
	got := 0
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(4)
	for got < n {
		if err := ctx.Err(); err != nil {
			return refResult{}, err
		}
		batch, err := cons.Fetch(min(cfg.Consumer.MaxAckPending, n-got), jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return refResult{}, err
		}
		var chunk []jetstream.Msg
		flush := func() {
			if len(chunk) == 0 {
				return
			}
			msgs := chunk
			chunk = nil
			g.Go(func() error { return floorChunk(gctx, ledger, pub, msgs) })
		}
		for m := range batch.Messages() {
			got++
			if kind == "raw" {
				if err := m.Ack(); err != nil {
					return refResult{}, err
				}
				continue
			}
			chunk = append(chunk, m)
			if len(chunk) == cfg.Batch.Size {
				flush()
			}
		}
		flush()
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return refResult{}, err
		}
		if kind == "floor" {
			// Acks free room under MaxAckPending; wait before the next pull.
			if err := g.Wait(); err != nil {
				return refResult{}, err
			}
			g, gctx = errgroup.WithContext(ctx)
			g.SetLimit(4)
		}
	}
	if err := g.Wait(); err != nil {
		return refResult{}, err
	}
	if err := nc.FlushTimeout(10 * time.Second); err != nil {
		return refResult{}, err
	}
	elapsed := time.Since(start)
	cpu := bench.CPUTime() - cpu0
	if i1, err := infra.Stats(ctx); err == nil && infra.Separate() {
		cpu += i1.CPU - i0.CPU
	}
	return refResult{perS: float64(n) / elapsed.Seconds(), cpuPer10k: cpu.Seconds() / float64(n) * 10000}, nil
}

func floorChunk(ctx context.Context, ledger *queue.Ledger, pub *queue.Publisher, msgs []jetstream.Msg) error {
	ids := make([]string, len(msgs))
	vals := make(map[string]string, len(msgs))
	outs := make([]queue.Outbound, len(msgs))
	for i, m := range msgs {
		md, err := m.Metadata()
		if err != nil {
			return err
		}
		seq := strconv.FormatUint(md.Sequence.Stream, 10)
		ids[i] = "floor-" + seq
		vals[ids[i]] = "applied " + seq + " 1"
		outs[i] = queue.Outbound{Subject: "bench.floor", MsgID: "floor-" + seq, Header: map[string][]string{"Content-Type": {"application/json"}},
			Data: []byte(`{"event_id":"` + ids[i] + `","event_type":"contact.upsert","outcome":"applied","mautic_id":1,"status":200,"attempts":1,"processed_at":"` +
				time.Now().UTC().Format(time.RFC3339Nano) + `","subject":"` + m.Subject() + `","stream_seq":` + seq + `}`)}
	}
	if _, err := ledger.Get(ctx, ids); err != nil {
		return err
	}
	if err := ledger.Put(ctx, vals); err != nil {
		return err
	}
	for _, err := range pub.Publish(ctx, outs) {
		if err != nil {
			return err
		}
	}
	for _, m := range msgs {
		if err := m.Ack(); err != nil {
			return err
		}
	}
	return nil
}

// print writes the report as a table.
func (r *benchReport) print(w io.Writer) {
	p := func(format string, a ...any) { fmt.Fprintf(w, format+"\n", a...) }
	r.printScenario(w)
	p("machine: %d CPUs (%s), GOMAXPROCS %d, %s, Linux %s; load %.2f at start, other processes used %.2f cores during the run",
		r.Machine.NumCPU, r.Machine.CPUModel, r.Machine.GOMAXPROCS, r.Machine.GoVersion, r.Machine.Kernel, r.Machine.LoadAtStart, r.Machine.OtherCores)
	if r.Machine.OtherCores > 0.2 {
		p("WARNING: other processes competed for the CPUs; the figures are disturbed")
	}
	if r.Note != "" {
		p("note: %s", r.Note)
	}
	p("")
	row := func(name, value string) { p("  %-26s %s", name, value) }
	steady := ""
	if r.SteadyEventsPerS > 0 {
		steady = fmt.Sprintf("; 10-90%%: %s/s", num(r.SteadyEventsPerS))
	}
	measured := fmt.Sprintf("%d outcomes in %.2f s%s", r.Outcomes, r.Seconds, steady)
	if r.WarmupS > 0 {
		measured = fmt.Sprintf("%d outcomes in %.2f s after a %.2f s warm-up with %d outcomes%s", r.Outcomes-r.WarmupOutcomes, r.Seconds, r.WarmupS, r.WarmupOutcomes, steady)
	}
	row("throughput", fmt.Sprintf("%s events/s  (%s)", num(r.EventsPerS), measured))
	r.printBody(w, row)
}

// printScenario writes the scenario: the load, the fake and the service's
// settings.
func (r *benchReport) printScenario(w io.Writer) {
	s := r.Settings
	p := func(format string, a ...any) { fmt.Fprintf(w, format+"\n", a...) }
	load := fmt.Sprintf("backlog of %d events", s.Events)
	if s.Mode == "rate" {
		load = fmt.Sprintf("%g events/s for %s (%d events)", s.Rate, s.Duration, s.Events)
	} else if s.Duration != "" {
		load += ", measured for " + s.Duration
	}
	fake := "instant fake"
	if s.CallLatency != "0s" || s.ItemLatency != "0s" {
		fake = "fake at " + s.CallLatency + " + " + s.ItemLatency + "/item"
	}
	if s.RateLimit > 0 {
		fake += fmt.Sprintf(", rate limit %d per %s", s.RateLimit, s.RateWindow)
	}
	conc := "adaptive"
	if s.Concurrency > 0 {
		conc = strconv.Itoa(s.Concurrency)
	}
	budget := "none"
	if s.Budget > 0 {
		budget = fmt.Sprintf("%d per %s", s.Budget, s.RateWindow)
	}
	p("mautic-sync bench: %s, mix %s, %d contacts%s; %s", load, s.Mix, s.Contacts, map[bool]string{true: " (pre-created)", false: ""}[s.Precreated], fake)
	if s.Replicas > 0 {
		if s.BudgetShared {
			budget += " shared by the replicas"
		} else if s.Budget > 0 {
			budget += " per replica"
		}
	}
	p("service: concurrency %s, batch %d, linger %s, max ack pending %d, budget %s; infrastructure %s", conc, s.Batch, s.Linger, s.MaxAckPending, budget, s.Infra)
	if s.Replicas > 0 {
		p("replicas: %d in this process on %d partitions (%s, takeover %s), each with its own NATS connection, Mautic client, worker and /metrics",
			s.Replicas, s.Partitions, s.PartitionMode, s.Takeover)
	}
}

// printBody writes the report's rows after the throughput.
func (r *benchReport) printBody(w io.Writer, row func(name, value string)) {
	s := r.Settings
	p := func(format string, a ...any) { fmt.Fprintf(w, format+"\n", a...) }
	row("outcomes", fmt.Sprintf("%v; extra %d", sortedCounts(r.ByResult), r.Extra))
	m := r.Mautic
	row("Mautic calls", fmt.Sprintf("%.4f per event  (%d calls, 429s: %d, 5xx: %d)", m.CallsPerEvent, m.Calls, m.Status429, m.Status5xx))
	if m.Windows > 0 {
		row("rate-limit windows", fmt.Sprintf("%g; 429s per window %.2f; mean period %.2f s, %.1f calls per complete window; %s events/s over complete windows",
			m.Windows, m.Per429Window, m.WindowPeriodS, m.CallsPerWindow, num(m.SteadyWindowEvents)))
	}
	row("items per batch call", fmt.Sprintf("%.1f", m.ItemsPerBatchCall))
	for _, ep := range benchKeys(m.ByEndpoint) {
		e := m.ByEndpoint[ep]
		items := "-"
		if e.MeanItems > 0 {
			items = strconv.FormatFloat(e.MeanItems, 'f', 1, 64)
		}
		row("  "+ep, fmt.Sprintf("%g calls, %s items, %.1f ms at the fake", e.Calls, items, e.MeanLatencyMs))
	}
	l := r.LatencyMs
	what := ""
	if s.Mode == "backlog" {
		what = "  (backlog: mostly time queued)"
	}
	row("publish->outcome", fmt.Sprintf("p50 %s  p90 %s  p99 %s  max %s%s", ms(l.P50), ms(l.P90), ms(l.P99), ms(l.Max), what))
	for _, typ := range benchKeys(r.LatencyType) {
		if len(r.LatencyType) > 1 {
			lt := r.LatencyType[typ]
			row("  "+typ, fmt.Sprintf("p50 %s  p99 %s  (%d)", ms(lt.P50), ms(lt.P99), lt.Count))
		}
	}
	c := r.CPU
	cpu := fmt.Sprintf("%.3f s per 10k events  (%.2f s)", c.ServicePer10k, c.ServiceS)
	if c.InfraS > 0 {
		cpu += fmt.Sprintf("; NATS server + fake: %.3f s per 10k", c.InfraPer10k)
	}
	row("CPU", cpu)
	row("allocation", fmt.Sprintf("%s bytes per event, %d GC cycles", num(c.AllocPerEvent), c.GCCycles))
	mem := fmt.Sprintf("%.1f MiB peak RSS  (sampled max %.1f MiB, max heap %.1f MiB)", r.Memory.PeakRSSMiB, r.Memory.SampledMaxRSSMiB, r.Memory.PeakHeapMiB)
	if r.Memory.InfraPeakRSSMiB > 0 {
		mem += fmt.Sprintf("; NATS server + fake %.0f MiB", r.Memory.InfraPeakRSSMiB)
	}
	row("memory", mem)
	cc := r.Concurrency
	row("concurrency", fmt.Sprintf("%s, settled %.2f (%s); worker in flight mean %.2f max %g; at Mautic mean %.2f max %d",
		cc.Mode, cc.Settled, cc.Source, cc.WorkerInflightMean, cc.WorkerInflightMax, cc.AtMauticMean, cc.AtMauticMax))
	for _, rf := range r.Replicas {
		row(fmt.Sprintf("  replica %d", rf.Index), fmt.Sprintf("%d outcomes (%.1f%%), concurrency %.2f, in flight mean %.2f, partitions %g owned of %g wanted at the end",
			rf.Outcomes, rf.Share*100, rf.Settled, rf.InflightMean, rf.PartitionsOwned, rf.PartitionsWanted))
	}
	p("")
	p("references (same messages, same run):")
	ratio := func(k string) string {
		if v, ok := r.Ratios[k]; ok {
			return fmt.Sprintf("worker ratio %.3f", v)
		}
		return ""
	}
	if r.Refs.RawAckEventsPerS > 0 {
		row("JetStream consume+ack", fmt.Sprintf("%s events/s, %.3f CPU-s per 10k  -> %s", num(r.Refs.RawAckEventsPerS), r.Refs.RawAckCPUPer10k, ratio("vs_raw_ack")))
	}
	if r.Refs.FloorEventsPerS > 0 {
		row("NATS floor", fmt.Sprintf("%s events/s, %.3f CPU-s per 10k  -> %s  (ledger get+put, outcome, ack)", num(r.Refs.FloorEventsPerS), r.Refs.FloorCPUPer10k, ratio("vs_floor")))
	}
	bound := func(v float64) string {
		if v == 0 {
			return "unbounded"
		}
		return num(v) + "/s"
	}
	row("Mautic ceiling", fmt.Sprintf("%s  (latency bound %s at concurrency %.2f, rate bound %s)  -> %s",
		bound(r.Refs.Ceiling), bound(r.Refs.CeilingLatencyBound), cc.Settled, bound(r.Refs.CeilingRateBound), ratio("vs_mautic_ceiling")))
	if v, ok := r.Ratios["complete_windows_vs_rate_bound"]; ok {
		row("", fmt.Sprintf("over complete rate-limit windows: worker ratio %.3f to the rate bound", v))
	}
	if v, ok := r.Ratios["slot_use_at_mautic"]; ok {
		row("", fmt.Sprintf("calls in flight at Mautic / settled concurrency: %.3f (the ratio at the latency the fake delivered)", v))
	}
}

func num(f float64) string {
	switch {
	case f >= 100:
		return strconv.FormatFloat(math.Round(f), 'f', 0, 64)
	case f >= 1:
		return strconv.FormatFloat(f, 'f', 1, 64)
	}
	return strconv.FormatFloat(f, 'g', 3, 64)
}

func ms(v float64) string {
	if v >= 1000 {
		return strconv.FormatFloat(v/1000, 'f', 2, 64) + " s"
	}
	return strconv.FormatFloat(v, 'f', 1, 64) + " ms"
}

func benchKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func sortedCounts(m map[string]int64) string {
	var parts []string
	for _, k := range benchKeys(m) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

// sweepReport is `bench --replicas 1,2,3,4`: the same scenario run once per
// replica count, each on fresh infrastructure with the same messages.
type sweepReport struct {
	Command    string         `json:"command"`
	Date       string         `json:"date"`
	Partitions int            `json:"partitions"`
	Incomplete bool           `json:"incomplete,omitempty"`
	Error      string         `json:"error,omitempty"`
	Rows       []sweepRow     `json:"summary"`
	Runs       []*benchReport `json:"runs"`
}

// sweepRow is one run of a sweep, summed up.
type sweepRow struct {
	Replicas   int     `json:"replicas"`
	Partitions int     `json:"partitions"`
	EventsPerS float64 `json:"events_per_s"`
	// SteadyEventsPerS is the rate over the complete rate-limit windows
	// when the fake has a rate limit, else between the 10% and 90%
	// outcome marks; SteadySource says which.
	SteadyEventsPerS float64 `json:"steady_events_per_s"`
	SteadySource     string  `json:"steady_source"`
	// VsFirst is EventsPerS over the first run's (the list's first count).
	VsFirst float64 `json:"vs_first"`
	// Settled is the replicas' settled concurrency, summed.
	Settled      float64 `json:"settled_concurrency"`
	LatencyBound float64 `json:"mautic_latency_bound_events_per_s"`
	RateBound    float64 `json:"mautic_rate_bound_events_per_s"`
	Ceiling      float64 `json:"mautic_ceiling_events_per_s"`
	// VsCeiling and SteadyVsCeiling are the throughputs over the ceiling
	// (0 when unbounded).
	VsCeiling       float64   `json:"vs_mautic_ceiling"`
	SteadyVsCeiling float64   `json:"steady_vs_mautic_ceiling"`
	AtMauticMean    float64   `json:"at_mautic_mean"`
	AtMauticMax     int       `json:"at_mautic_max"`
	Status429       int64     `json:"status_429"`
	Shares          []float64 `json:"outcome_shares"`
	WarmupS         float64   `json:"warmup_seconds"`
	OtherCores      float64   `json:"other_processes_cores"`
	Incomplete      bool      `json:"incomplete,omitempty"`
}

func cmdBenchSweep(ctx context.Context, o benchOptions, stdout, stderr io.Writer) int {
	sw, err := runSweep(ctx, o, stderr)
	if err != nil {
		sw.Error = err.Error()
	}
	if o.outFile != "" {
		b, _ := json.MarshalIndent(sw, "", "  ")
		if werr := os.WriteFile(o.outFile, append(b, '\n'), 0o644); werr != nil {
			fmt.Fprintln(stderr, "mautic-sync bench:", werr)
		}
	}
	if o.jsonOut {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(sw)
	} else {
		sw.print(stdout)
	}
	if err != nil {
		fmt.Fprintln(stderr, "mautic-sync bench:", err)
		return exitFailure
	}
	if sw.Incomplete {
		return exitFailure
	}
	return exitOK
}

// runSweep runs the scenario once per replica count, in the order given,
// each on fresh infrastructure (runBench) with the same seed, so the same
// messages, and the same partitions.
func runSweep(ctx context.Context, o benchOptions, stderr io.Writer) (*sweepReport, error) {
	sw := &sweepReport{
		Command:    strings.TrimSpace("mautic-sync bench " + strings.Join(o.args, " ")),
		Date:       time.Now().UTC().Format(time.RFC3339),
		Partitions: o.partitions,
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	for k, n := range o.replicas {
		fmt.Fprintf(stderr, "mautic-sync bench: run %d of %d: %d replica(s) on %d partitions\n", k+1, len(o.replicas), n, o.partitions)
		run := o
		run.replicas, run.replicaN = []int{n}, n
		rep, err := runBench(ctx, run, stderr)
		if rep == nil {
			return sw, fmt.Errorf("%d replicas: %w", n, err)
		}
		sw.Runs = append(sw.Runs, rep)
		row := sweepRowOf(rep)
		if len(sw.Rows) > 0 && sw.Rows[0].EventsPerS > 0 {
			row.VsFirst = row.EventsPerS / sw.Rows[0].EventsPerS
		} else if len(sw.Rows) == 0 {
			row.VsFirst = 1
		}
		sw.Rows = append(sw.Rows, row)
		sw.Incomplete = sw.Incomplete || rep.Incomplete
		fmt.Fprintf(stderr, "mautic-sync bench: %d replica(s): %s events/s (steady %s/s), ceiling %s/s, %d 429s\n",
			n, num(row.EventsPerS), num(row.SteadyEventsPerS), num(row.Ceiling), row.Status429)
		if err != nil {
			return sw, fmt.Errorf("%d replicas: %w", n, err)
		}
	}
	return sw, nil
}

func sweepRowOf(r *benchReport) sweepRow {
	row := sweepRow{
		Replicas: r.Settings.Replicas, Partitions: r.Settings.Partitions, EventsPerS: r.EventsPerS,
		SteadyEventsPerS: r.SteadyEventsPerS, SteadySource: "10-90% of the outcomes",
		Settled: r.Concurrency.Settled, LatencyBound: r.Refs.CeilingLatencyBound, RateBound: r.Refs.CeilingRateBound,
		Ceiling: r.Refs.Ceiling, AtMauticMean: r.Concurrency.AtMauticMean, AtMauticMax: r.Concurrency.AtMauticMax,
		Status429: r.Mautic.Status429, WarmupS: r.WarmupS, OtherCores: r.Machine.OtherCores, Incomplete: r.Incomplete,
	}
	if r.Mautic.SteadyWindowEvents > 0 {
		row.SteadyEventsPerS, row.SteadySource = r.Mautic.SteadyWindowEvents, "complete rate-limit windows"
	}
	if row.Ceiling > 0 {
		row.VsCeiling = row.EventsPerS / row.Ceiling
		row.SteadyVsCeiling = row.SteadyEventsPerS / row.Ceiling
	}
	for _, rf := range r.Replicas {
		row.Shares = append(row.Shares, rf.Share)
	}
	return row
}

// print writes the sweep as a table.
func (sw *sweepReport) print(w io.Writer) {
	p := func(format string, a ...any) { fmt.Fprintf(w, format+"\n", a...) }
	p("%s", sw.Command)
	if len(sw.Runs) > 0 {
		r := sw.Runs[0]
		var b strings.Builder
		r.printScenario(&b)
		for line := range strings.SplitSeq(strings.TrimSpace(b.String()), "\n") {
			if !strings.HasPrefix(line, "replicas:") {
				p("%s", line)
			}
		}
		p("replicas: each run in this process on %d partitions (%s, takeover %s), fresh infrastructure and the same messages per run",
			sw.Partitions, r.Settings.PartitionMode, r.Settings.Takeover)
		p("machine: %d CPUs (%s), GOMAXPROCS %d, %s, Linux %s", r.Machine.NumCPU, r.Machine.CPUModel, r.Machine.GOMAXPROCS, r.Machine.GoVersion, r.Machine.Kernel)
	}
	p("")
	first := 0
	if len(sw.Rows) > 0 {
		first = sw.Rows[0].Replicas
	}
	steadyName := "steady"
	if len(sw.Rows) > 0 {
		steadyName = map[bool]string{true: "windows", false: "10-90%"}[sw.Rows[0].SteadySource == "complete rate-limit windows"]
	}
	p("%8s %9s %8s %8s %6s %9s %9s %9s %7s %7s %10s %5s %-16s %7s %6s",
		"replicas", "ev/s", steadyName, fmt.Sprintf("x %d", first), "conc.", "lat.bound", "rate bnd", "ceiling", "ratio", "steady", "at Mautic", "429s", "outcome shares", "warm-up", "other")
	for _, r := range sw.Rows {
		var shares []string
		for _, s := range r.Shares {
			shares = append(shares, strconv.Itoa(int(math.Round(s*100))))
		}
		ratio := func(v float64) string {
			if r.Ceiling == 0 {
				return "-"
			}
			return strconv.FormatFloat(v, 'f', 3, 64)
		}
		bound := func(v float64) string {
			if v == 0 {
				return "none"
			}
			return num(v)
		}
		mark := ""
		if r.Incomplete {
			mark = " (incomplete)"
		}
		p("%8d %9s %8s %8.2f %6.2f %9s %9s %9s %7s %7s %10s %5d %-16s %6.1fs %6.2f%s",
			r.Replicas, num(r.EventsPerS), num(r.SteadyEventsPerS), r.VsFirst, r.Settled, bound(r.LatencyBound), bound(r.RateBound), bound(r.Ceiling),
			ratio(r.VsCeiling), ratio(r.SteadyVsCeiling), fmt.Sprintf("%.2f/%d", r.AtMauticMean, r.AtMauticMax), r.Status429,
			strings.Join(shares, "/"), r.WarmupS, r.OtherCores, mark)
	}
	p("")
	p("ev/s: outcomes after the warm-up / time; %s: %s; x %d: ev/s over the first run's; conc.: settled concurrency summed over the replicas;",
		steadyName, map[bool]string{true: "over the complete rate-limit windows", false: "between the 10% and 90% outcome marks"}[steadyName == "windows"], first)
	p("ceiling: min(latency bound at that concurrency, rate bound of the shared limit); ratio, steady: ev/s and %s over the ceiling;", steadyName)
	p("at Mautic: calls in flight at the fake, mean/max; outcome shares: each replica's %% of the outcomes; other: cores used by other processes")
	if sw.Error != "" {
		p("error: %s", sw.Error)
	}
}

// defaultMaxAckPending is the service's default CONSUMER_MAX_ACK_PENDING,
// so that the bench measures the window a deployment gets.
func defaultMaxAckPending() int {
	for _, st := range config.Settings() {
		if st.Key == "CONSUMER_MAX_ACK_PENDING" {
			if n, err := strconv.Atoi(st.Default); err == nil {
				return n
			}
		}
	}
	return 4000
}
