package worker

import (
	"math"
	"sync"
	"time"
)

// limiter adapts the number of Mautic calls in flight to what Mautic takes:
// additive increase while calls succeed and work waits for a slot,
// multiplicative decrease when Mautic signals overload (429, 5xx,
// timeouts), at most once per cool-down. A fixed limit never moves.
type limiter struct {
	mu       sync.Mutex
	now      func() time.Time
	fixed    bool
	min, max float64
	limit    float64
	demand   bool // calls waited for a slot since the last success
	lastCut  time.Time
	cooldown time.Duration
}

func newLimiter(fixed, minimum, maximum int) *limiter {
	l := &limiter{now: time.Now, cooldown: time.Second}
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

// succeeded grows the limit by about one per limit's worth of successful
// calls, while there is demand for more.
func (l *limiter) succeeded() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fixed || !l.demand {
		return
	}
	l.limit = math.Min(l.max, l.limit+1/l.limit)
	l.demand = false
}

// overloaded cuts the limit by 30%, once per cool-down.
func (l *limiter) overloaded() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fixed || l.now().Sub(l.lastCut) < l.cooldown {
		return
	}
	l.limit = math.Max(l.min, l.limit*0.7)
	l.lastCut = l.now()
}
