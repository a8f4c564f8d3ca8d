package bench

import (
	"math"
	"sync"
	"time"
)

// histGrowth is the ratio between neighbouring bucket bounds: quantiles
// are exact to within 1%.
const histGrowth = 1.01

// histBuckets covers 1µs to beyond an hour.
const histBuckets = 2300

// Histogram records durations in logarithmic buckets: constant memory
// however many values, quantiles within 1%. It is safe for concurrent use.
type Histogram struct {
	mu     sync.Mutex
	counts [histBuckets]uint64
	n      uint64
	sum    time.Duration
	min    time.Duration
	max    time.Duration
}

var logGrowth = math.Log(histGrowth)

func bucketOf(d time.Duration) int {
	us := float64(d) / float64(time.Microsecond)
	if us <= 1 {
		return 0
	}
	i := int(math.Log(us)/logGrowth) + 1
	return min(i, histBuckets-1)
}

// upper is the largest duration bucket i holds.
func upper(i int) time.Duration {
	if i == 0 {
		return time.Microsecond
	}
	return time.Duration(math.Pow(histGrowth, float64(i)) * float64(time.Microsecond))
}

// Record adds one duration (negative ones count as 0).
func (h *Histogram) Record(d time.Duration) {
	d = max(d, 0)
	i := bucketOf(d)
	h.mu.Lock()
	h.counts[i]++
	if h.n == 0 || d < h.min {
		h.min = d
	}
	h.n++
	h.sum += d
	h.max = max(h.max, d)
	h.mu.Unlock()
}

// Count is the number of values recorded.
func (h *Histogram) Count() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n
}

// Quantile returns the q-quantile (0 < q <= 1): the upper bound of the
// bucket that holds it, capped at the largest value seen; 0 when empty.
func (h *Histogram) Quantile(q float64) time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = max(rank, 1)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return min(max(upper(i), h.min), h.max)
		}
	}
	return h.max
}

// Mean is the mean value, 0 when empty.
func (h *Histogram) Mean() time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.n == 0 {
		return 0
	}
	return h.sum / time.Duration(h.n)
}

// Max is the largest value recorded.
func (h *Histogram) Max() time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.max
}
