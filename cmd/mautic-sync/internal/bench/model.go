package bench

import (
	"math"
	"time"

	"github.com/mautic-sync/mautic-sync/worker"
)

// MauticModel is the configured Mautic (the fake's latency and rate limit)
// and the batch size the service may use, for the theoretical ceiling.
type MauticModel struct {
	PerCall, PerItem time.Duration
	RateLimit        int           // calls per RateWindow; 0 = none
	RateWindow       time.Duration //
	Batch            int           // items per batch call (BATCH_SIZE, at most Mautic's 200)
}

// findBatch is the worker's bound on emails per lookup (they travel in
// the URL); see worker/ops.go maxFindBatch.
const findBatch = 50

// Plan is what an ideal client spends on one event of a type: calls and
// Mautic busy time, with every batch full.
type Plan struct {
	Calls float64
	Busy  time.Duration
}

// PlanOf is the ideal cost of one event of typ naming its contact by
// email, the contact existing: the calls the worker's contract requires
// (README "How events are applied"), each batch full (Batch items; lookups
// min(Batch, 50)), single calls where Mautic has no batch route. Writes
// take PerCall plus PerItem per item; reads (lookups) take PerCall.
func (m MauticModel) PlanOf(typ string) Plan {
	b := float64(max(m.Batch, 1))
	f := float64(min(max(m.Batch, 1), findBatch))
	pc, pi := float64(m.PerCall), float64(m.PerItem)
	write := func(items float64) Plan { return Plan{1 / items, time.Duration(pc/items + pi)} }
	read := func(items float64) Plan { return Plan{1 / items, time.Duration(pc / items)} }
	add := func(ps ...Plan) Plan {
		var t Plan
		for _, p := range ps {
			t.Calls += p.Calls
			t.Busy += p.Busy
		}
		return t
	}
	switch typ {
	case worker.TypeUpsert, worker.TypeDNCAdd:
		return write(b) // batch/new (DNC rides in the payload)
	case worker.TypeSegmentAdd:
		return add(write(b), write(b)) // bare upsert, then segments/{id}/contacts/add
	case worker.TypeDelete, worker.TypeDNCRemove:
		return add(read(f), write(b)) // lookup, then batch delete / batch edit
	case worker.TypeSegmentRemove, worker.TypePointsAdd:
		return add(read(f), write(1)) // lookup, then a single call
	}
	return Plan{}
}

// PerEvent is the mix's mean ideal cost of one event.
func (m MauticModel) PerEvent(mix Mix) Plan {
	var t Plan
	for typ, w := range mix {
		p := m.PlanOf(typ)
		t.Calls += w * p.Calls
		t.Busy += time.Duration(w * float64(p.Busy))
	}
	return t
}

// Ceiling is the theoretical throughput of the configured Mautic for a mix.
type Ceiling struct {
	// LatencyBound is concurrency / (Mautic busy time per event), events/s;
	// +Inf for an instant Mautic.
	LatencyBound float64
	// RateBound is (limit / window) / (calls per event), events/s; +Inf
	// without a rate limit.
	RateBound float64
	// Bound is the smaller of the two.
	Bound float64
	// CallsPerEvent and BusyPerEvent are the ideal plan's.
	CallsPerEvent float64
	BusyPerEvent  time.Duration
}

// CeilingAt returns the ceiling with concurrency calls in flight.
func (m MauticModel) CeilingAt(mix Mix, concurrency float64) Ceiling {
	p := m.PerEvent(mix)
	c := Ceiling{LatencyBound: math.Inf(1), RateBound: math.Inf(1), CallsPerEvent: p.Calls, BusyPerEvent: p.Busy}
	if p.Busy > 0 && concurrency > 0 {
		c.LatencyBound = concurrency / p.Busy.Seconds()
	}
	if m.RateLimit > 0 && m.RateWindow > 0 && p.Calls > 0 {
		c.RateBound = float64(m.RateLimit) / m.RateWindow.Seconds() / p.Calls
	}
	c.Bound = math.Min(c.LatencyBound, c.RateBound)
	return c
}
