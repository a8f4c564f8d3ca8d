// Package worker applies contact-change events to Mautic and decides each
// event's outcome.
//
// The flow of one event:
//
//	fetch (Source) -> decode + validate -> per-contact lanes -> batch by call kind
//	  -> Mautic call (bounded concurrency, retried while the fault is not the event's)
//	  -> outcome published (Publisher) -> Ack / Term -> the contact's next event runs
//
// Per-contact order: every event joins a FIFO lane for each key it has (its
// subject, its email, its Mautic id) and runs only when it heads them all,
// so events about one contact take effect in stream order and no two writes
// for one contact are in flight at once (Mautic creates duplicates when they
// are). Consecutive upserts of one contact merge into one item.
//
// Outcomes: a contract violation is dead-lettered at once with the body
// byte for byte; an item Mautic refuses (400/403/404/422) is dead-lettered
// as rejected; anything that is not the event's fault (timeouts, 5xx, HTML
// pages, 429, 401) is retried with exponential backoff and jitter, holding
// the messages alive with in-progress acks, and never dead-lettered. An
// outcome is stored before its input is acknowledged; if it cannot be
// stored, the input is not acknowledged.
//
// The package does not import nats.go: it talks to the queue through the
// small interfaces in ports.go.
package worker

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/mautic-sync/mautic-sync/mautic"
)

// handBackDelay is the redelivery delay of messages handed back on
// shutdown. Without it, a pull request still open would receive a naked
// message again at once, and again, burning its deliveries.
const handBackDelay = time.Second

// pausePoll is how often a paused fetcher looks whether it may go on.
const pausePoll = 100 * time.Millisecond

// Options configures a Worker. Zero values take the defaults documented on
// each field.
type Options struct {
	// BatchSize is the most items in one batch call (default 200).
	BatchSize int
	// Linger is how long a batch waits to fill (default 100ms).
	Linger time.Duration
	// Concurrency fixes the number of Mautic calls in flight. 0 (the
	// default) adapts it between MinConcurrency and MaxConcurrency: up
	// while calls succeed and work waits, down on 429s, 5xx and timeouts.
	Concurrency int
	// MinConcurrency and MaxConcurrency bound the adaptive concurrency
	// (defaults 1 and 16).
	MinConcurrency, MaxConcurrency int
	// MaxHeld is the most messages held unacknowledged (default 2000); set
	// it to the consumer's MaxAckPending.
	MaxHeld int
	// AckWait is the consumer's AckWait (default 60s); held messages are
	// touched with an in-progress ack every third of it.
	AckWait time.Duration
	// MaxDeliveries: a message delivered more often than this is
	// dead-lettered with reason max_deliveries (default 10).
	MaxDeliveries int
	// RetryMin and RetryMax bound the backoff of transient Mautic failures
	// (defaults 500ms and 30s).
	RetryMin, RetryMax time.Duration
	// DrainTimeout bounds how long in-flight calls may finish after Run's
	// context ends (default 25s).
	DrainTimeout time.Duration
	// FetchWait is how long one pull request waits for messages (default 1s).
	FetchWait time.Duration
	// FieldsRefresh is how often Mautic's contact field list is read, to
	// report field aliases Mautic would ignore (default 10m; negative: never).
	FieldsRefresh time.Duration
	// ResultSubject and DLQSubject are where outcomes go (defaults
	// mautic.sync.result and mautic.sync.dlq).
	ResultSubject, DLQSubject string

	// Recovery, when set, is asked at start for the messages an earlier
	// worker left unacknowledged, to keep per-contact order across a crash.
	Recovery Recovery

	// Ledger remembers applied event ids (exactly-once effect for points,
	// duplicates skipped). Without one, every delivery is applied.
	Ledger Ledger

	// Tracer, when set, records spans (see tracing.go); nil records none.
	Tracer trace.Tracer

	Logger  *zap.Logger
	Metrics *Metrics
	// Observer, when set, is told of every outcome once it is stored and
	// the input acknowledged (the dev command prints them).
	Observer func(Settled)
}

// Settled describes a finished event, for Options.Observer.
type Settled struct {
	Subject   string
	StreamSeq uint64
	EventID   string // "" when the body was not a valid event
	EventType string
	Outcome   string // applied, unchanged, duplicate, or dead_letter
	Reason    string // dead-letter reason
	Error     string
	Status    int
	MauticID  int
}

func (o *Options) setDefaults() {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	def(&o.BatchSize, 200)
	def(&o.MinConcurrency, 1)
	def(&o.MaxConcurrency, 16)
	def(&o.MaxHeld, 2000)
	def(&o.MaxDeliveries, 10)
	defDur(&o.Linger, 100*time.Millisecond)
	defDur(&o.AckWait, 60*time.Second)
	defDur(&o.RetryMin, 500*time.Millisecond)
	defDur(&o.RetryMax, 30*time.Second)
	defDur(&o.DrainTimeout, 25*time.Second)
	defDur(&o.FetchWait, time.Second)
	defDur(&o.FieldsRefresh, 10*time.Minute)
	if o.ResultSubject == "" {
		o.ResultSubject = "mautic.sync.result"
	}
	if o.DLQSubject == "" {
		o.DLQSubject = "mautic.sync.dlq"
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.Ledger == nil {
		o.Ledger = noLedger{}
	}
}

func (o *Options) validate() error {
	var errs []error
	if o.BatchSize < 1 || o.BatchSize > 200 {
		errs = append(errs, fmt.Errorf("batch size must be 1-200, got %d", o.BatchSize))
	}
	if o.Concurrency < 0 || o.MinConcurrency < 1 || o.MaxConcurrency < o.MinConcurrency {
		errs = append(errs, fmt.Errorf("concurrency %d (bounds %d..%d): want 0 (adaptive) or more, and 1 <= min <= max", o.Concurrency, o.MinConcurrency, o.MaxConcurrency))
	}
	if o.MaxHeld < o.BatchSize {
		errs = append(errs, fmt.Errorf("max held (%d) must be at least the batch size (%d)", o.MaxHeld, o.BatchSize))
	}
	if o.RetryMax < o.RetryMin || o.RetryMin <= 0 {
		errs = append(errs, fmt.Errorf("retry bounds %s..%s are not increasing and positive", o.RetryMin, o.RetryMax))
	}
	if o.Linger < 0 || o.AckWait <= 0 || o.DrainTimeout <= 0 || o.FetchWait <= 0 {
		errs = append(errs, errors.New("linger, ack wait, drain timeout and fetch wait must be positive"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	return nil
}

// Worker is the pipeline. Create it with New and start it with Run.
type Worker struct {
	opts   Options
	src    Source
	pub    Publisher
	mautic Mautic
	ledger Ledger
	log    *zap.Logger
	out    outboxConfig
	health health
	gate   *gate
	conc   *limiter

	// lastSuccess (unix nanoseconds) and failStreak track Mautic's state
	// across concurrent calls.
	lastSuccess atomic.Int64
	failStreak  atomic.Int64
	inflight    atomic.Int64
	lastWhy     atomic.Value // string: the reason of the last failed call, logged once
	fields      atomic.Pointer[map[string]bool]

	// held counts messages received and not yet settled; the fetcher
	// keeps it at or under MaxHeld.
	held  atomic.Int64
	freed chan struct{} // signalled when messages settle
}

// New returns a Worker. It starts nothing.
func New(src Source, pub Publisher, mc Mautic, opts Options) (*Worker, error) {
	opts.setDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	return &Worker{
		opts:   opts,
		src:    src,
		pub:    pub,
		mautic: mc,
		log:    opts.Logger.Named("worker"),
		ledger: opts.Ledger,
		out:    outboxConfig{resultSubject: opts.ResultSubject, dlqSubject: opts.DLQSubject, version: mc.Version},
		gate:   newGate(),
		conc:   newLimiter(opts.Concurrency, opts.MinConcurrency, opts.MaxConcurrency),
		freed:  make(chan struct{}, 1),
	}, nil
}

// Ready reports whether the worker is consuming, and why not.
func (w *Worker) Ready() (bool, string) {
	ok, why := w.health.ready()
	causes := w.gate.active()
	if len(causes) == 0 {
		return ok, why
	}
	reasons := make([]string, 0, len(causes)+1)
	if why != "" {
		reasons = append(reasons, why)
	}
	for _, c := range slices.Sorted(maps.Keys(causes)) {
		reasons = append(reasons, "paused, "+c+": "+causes[c])
	}
	return false, strings.Join(reasons, "; ")
}

// Paused lists the causes that hold fetching back now (see the Pause*
// constants).
func (w *Worker) Paused() []string { return w.gate.causesSorted() }

// Run consumes until ctx ends, then drains: it stops fetching, lets calls
// in flight finish within DrainTimeout, publishes their outcomes and
// acknowledges their inputs, and hands every other held message back with
// a nak. It returns nil after a clean drain, or the error that stopped it.
// Every goroutine it starts has ended when it returns.
func (w *Worker) Run(ctx context.Context) error {
	w.health.setRunning(true)
	defer w.health.setRunning(false)

	c := newCoordinator(w)
	c.recover(ctx) // before fetching, so that only an earlier worker's messages count
	in := make(chan Message, 256)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		defer close(in)
		return w.fetch(gctx, in)
	})
	g.Go(func() error { return c.run(gctx, in) })
	if w.opts.FieldsRefresh > 0 {
		g.Go(func() error { w.refreshFields(gctx); return nil })
	}
	err := g.Wait()
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return nil
	}
	return err
}

// fetch pulls messages while there is room to hold them.
func (w *Worker) fetch(ctx context.Context, in chan<- Message) error {
	for ctx.Err() == nil {
		if !w.gate.isOpen() {
			select { // paused: look again shortly
			case <-time.After(pausePoll):
			case <-ctx.Done():
			}
			continue
		}
		room := int64(w.opts.MaxHeld) - w.held.Load()
		if room < int64(min(w.opts.BatchSize, w.opts.MaxHeld/4+1)) {
			select {
			case <-w.freed:
				continue
			case <-ctx.Done():
				return nil
			}
		}
		fetched := 0
		var span trace.Span
		if w.opts.Tracer != nil {
			_, span = w.opts.Tracer.Start(ctx, "mautic-sync fetch", trace.WithAttributes(attribute.Int64("mautic_sync.room", room)))
		}
		err := w.src.Fetch(ctx, int(room), w.opts.FetchWait, func(m Message) {
			fetched++
			w.held.Add(1)
			select {
			case in <- m:
			case <-ctx.Done():
				// Not handed over: redelivered after AckWait, or naked by
				// the coordinator's drain of what it holds.
				w.held.Add(-1)
				_ = m.Nak(context.WithoutCancel(ctx), handBackDelay)
			}
		})
		if span != nil {
			span.SetAttributes(attribute.Int("mautic_sync.messages", fetched))
			endSpan(span, err)
		}
		if err != nil && ctx.Err() == nil {
			w.log.Warn("fetch failed; retrying", zap.Error(err))
			w.health.fault("fetch", err.Error())
			select {
			case <-time.After(w.opts.RetryMin):
			case <-ctx.Done():
			}
			continue
		}
		if err == nil {
			w.health.fault("fetch", "")
		}
	}
	return nil
}

func (w *Worker) release(n int) {
	w.held.Add(int64(-n))
	select {
	case w.freed <- struct{}{}:
	default:
	}
}

// health is the worker's readiness, readable from any goroutine. Each
// source of trouble (fetching, Mautic) holds its own fault.
type health struct {
	mu      sync.Mutex
	running bool
	faults  map[string]string
}

func (h *health) setRunning(v bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.running = v
}

// fault records (reason != "") or clears (reason == "") a fault of kind.
func (h *health) fault(kind, reason string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if reason == "" {
		delete(h.faults, kind)
		return
	}
	if h.faults == nil {
		h.faults = map[string]string{}
	}
	h.faults[kind] = reason
}

func (h *health) ready() (bool, string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.running {
		return false, "not running"
	}
	keys := make([]string, 0, len(h.faults))
	for k := range h.faults {
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return true, ""
	}
	slices.Sort(keys)
	reasons := make([]string, len(keys))
	for i, k := range keys {
		reasons[i] = k + ": " + h.faults[k]
	}
	return false, strings.Join(reasons, "; ")
}

// refreshFields keeps Mautic's field list fresh until ctx ends. Failures
// are logged and leave the last list in place.
func (w *Worker) refreshFields(ctx context.Context) {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		fctx, cancel := context.WithTimeout(ctx, time.Minute)
		fields, _, err := w.mautic.ContactFields(fctx)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				w.log.Debug("reading Mautic's field list failed", zap.Error(err))
			}
			t.Reset(min(w.opts.FieldsRefresh, time.Minute))
			continue
		}
		if w.knownFields() == nil {
			w.log.Info("Mautic answers", zap.String("mautic_version", w.mautic.Version()), zap.Int("contact_fields", len(fields)))
		}
		w.storeFields(fields)
		t.Reset(w.opts.FieldsRefresh)
	}
}

func (w *Worker) storeFields(fields []mautic.Field) {
	known := make(map[string]bool, len(fields))
	for _, f := range fields {
		known[f.Alias] = true
	}
	w.fields.Store(&known)
}

// knownFields returns Mautic's field aliases, nil until read.
func (w *Worker) knownFields() map[string]bool {
	if p := w.fields.Load(); p != nil {
		return *p
	}
	return nil
}

// InFlight is the number of Mautic calls running.
func (w *Worker) InFlight() int { return int(w.inflight.Load()) }

// ConcurrencyLimit is the number of Mautic calls allowed in flight now.
func (w *Worker) ConcurrencyLimit() int { return w.conc.current() }
