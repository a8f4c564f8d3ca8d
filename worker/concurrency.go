package worker

import (
	"math"
	"math/bits"
	"sync"
	"time"
)

// limiter adapts the number of Mautic calls in flight to what Mautic takes:
// a slow start (one more per successful call) until the first sign of
// overload, then additive increase while calls succeed and work waits for
// a slot,
// multiplicative decrease when Mautic signals overload (429, 5xx,
// timeouts) or its latency rises well above what it was at lower load, at
// most once per cool-down. A fixed limit never moves.
type limiter struct {
	mu       sync.Mutex
	now      func() time.Time
	fixed    bool
	min, max float64
	limit    float64
	demand   bool // calls waited for a slot since the last success
	// slowStart: until the first cut the limit grows by one per
	// successful call with demand (doubling per round of calls), not by
	// one per round, so that a worker reaches its level in seconds.
	slowStart bool
	lastCut   time.Time
	cooldown  time.Duration
	// lat tracks call latency per batch-size class (bits.Len of the item
	// count: a call of 200 items is slower than one of 2 without any
	// congestion).
	lat [10]latencyTrack
}

// latencyTrack is the recent latency of one size class and its baseline:
// the lowest recent level, drifting up slowly so that a Mautic that became
// slower for good is the new normal after a few hundred calls.
type latencyTrack struct {
	n          int
	recent     float64 // EWMA of the last few calls, seconds
	base       float64
	congestion bool // recent is above tolerance x base
}

const (
	latencyAlpha     = 0.3  // weight of a call in recent
	latencyDrift     = 0.01 // how fast base follows a higher recent
	latencyTolerance = 1.5  // recent above tolerance x base is congestion
	latencyWarmup    = 5    // calls of a class before its latency counts
	latencyCut       = 0.9  // a latency signal cuts gentler than a 429/5xx
	// latencyJitter is the rise that never counts as congestion: the
	// scheduling noise of fast calls.
	latencyJitter = 0.025
)

func newLimiter(fixed, minimum, maximum int) *limiter {
	l := &limiter{now: time.Now, cooldown: time.Second, slowStart: true}
	if fixed > 0 {
		l.fixed, l.min, l.max, l.limit = true, float64(fixed), float64(fixed), float64(fixed)
		return l
	}
	l.min, l.max = float64(max(minimum, 1)), float64(max(maximum, minimum, 1))
	l.limit = math.Min(math.Max(4, l.min), l.max)
	return l
}

// current is the number of calls allowed in flight now.
func (l *limiter) current() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return int(l.limit)
}

// waiting records that ready work found no free slot.
func (l *limiter) waiting() {
	l.mu.Lock()
	l.demand = true
	l.mu.Unlock()
}

// succeeded records a successful call of items items that took d. The
// limit grows by about one per limit's worth of successful calls while
// there is demand for more, unless the latency of calls of that size
// rose above 1.5 times its baseline: then Mautic is queueing the calls
// rather than serving them in parallel, and the limit is cut by 10%.
func (l *limiter) succeeded(d time.Duration, items int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fixed {
		return
	}
	if l.congested(d, items) {
		l.cut(latencyCut)
		return
	}
	if !l.demand {
		return
	}
	if l.slowStart {
		l.limit = math.Min(l.max, l.limit+1)
	} else {
		l.limit = math.Min(l.max, l.limit+1/l.limit)
	}
	l.demand = false
}

// congested updates the latency of items' class with d and reports whether
// it signals congestion.
func (l *limiter) congested(d time.Duration, items int) bool {
	if d <= 0 || items <= 0 {
		return false
	}
	t := &l.lat[min(bits.Len(uint(items)), len(l.lat)-1)]
	v := d.Seconds()
	t.n++
	if t.n == 1 {
		t.recent, t.base = v, v
		return false
	}
	t.recent += latencyAlpha * (v - t.recent)
	if t.recent < t.base {
		t.base = t.recent
	} else {
		t.base += latencyDrift * (t.recent - t.base)
	}
	t.congestion = t.n >= latencyWarmup && t.recent > latencyTolerance*t.base && t.recent-t.base > latencyJitter
	return t.congestion
}

// overloaded cuts the limit by 30%, once per cool-down.
func (l *limiter) overloaded() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fixed {
		return
	}
	l.cut(0.7)
}

// cut multiplies the limit by f, once per cool-down; l.mu is held.
func (l *limiter) cut(f float64) {
	if l.now().Sub(l.lastCut) < l.cooldown {
		return
	}
	l.limit = math.Max(l.min, l.limit*f)
	l.lastCut = l.now()
	l.slowStart = false
}
