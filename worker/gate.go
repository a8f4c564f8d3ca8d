package worker

import (
	"maps"
	"slices"
	"sync"
	"time"
)

// Causes of a pause (bounded: they label metrics).
const (
	PauseOutage      = "outage"       // Mautic keeps failing: 5xx, timeouts, HTML pages
	PauseAuth        = "auth"         // credentials refused
	PauseAPIDisabled = "api_disabled" // Mautic's API is off
	PauseBadURL      = "bad_url"      // MAUTIC_URL reaches something that is not Mautic's API
	PauseRateLimited = "rate_limited" // the rate-limit window is used up
	PauseFenced      = "fenced"       // partitioned: this replica's ownership of its partitions is unconfirmed (cut off from NATS)
)

// gate stops fetching while a systemic fault lasts, so that held messages
// are not joined by more and no delivery is burned on an outage. Each cause
// is set until a time (rate limits) or until cleared (faults a later
// successful call clears). Safe for concurrent use.
type gate struct {
	mu     sync.Mutex
	now    func() time.Time
	causes map[string]gateCause
}

type gateCause struct {
	until  time.Time // zero: until cleared
	reason string
}

func newGate() *gate { return &gate{now: time.Now, causes: map[string]gateCause{}} }

// close pauses for cause until the given time (zero: until open(cause)).
func (g *gate) close(cause, reason string, until time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.causes[cause] = gateCause{until: until, reason: reason}
}

// open clears a cause.
func (g *gate) open(cause string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.causes, cause)
}

// active returns the causes in force, sorted, with their reasons.
func (g *gate) active() map[string]string {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	out := map[string]string{}
	for c, gc := range g.causes {
		if !gc.until.IsZero() && !now.Before(gc.until) {
			delete(g.causes, c)
			continue
		}
		out[c] = gc.reason
	}
	return out
}

// has reports whether cause is in force.
func (g *gate) has(cause string) bool {
	_, ok := g.active()[cause]
	return ok
}

// isOpen reports whether fetching may go on.
func (g *gate) isOpen() bool { return len(g.active()) == 0 }

// causesSorted lists the active causes.
func (g *gate) causesSorted() []string {
	return slices.Sorted(maps.Keys(g.active()))
}
