package worker

import (
	"testing"
	"time"
)

func TestLimiterGrowsWithDemandAndBacksOff(t *testing.T) {
	l := newLimiter(0, 1, 16)
	if got := l.current(); got != 4 {
		t.Fatalf("start %d, want 4", got)
	}
	for range 100 {
		l.succeeded(100*time.Millisecond, 200) // no demand: no growth
	}
	if got := l.current(); got != 4 {
		t.Errorf("grew to %d without demand", got)
	}
	for range 200 {
		l.waiting()
		l.succeeded(100*time.Millisecond, 200)
	}
	if got := l.current(); got != 16 {
		t.Errorf("limit %d after sustained demand, want the maximum 16", got)
	}
	now := time.Now()
	l.now = func() time.Time { return now }
	l.overloaded()
	l.overloaded() // within the cool-down: one cut
	if got := l.current(); got != 11 {
		t.Errorf("limit %d after overload, want 11", got)
	}
	now = now.Add(2 * time.Second)
	for range 20 {
		now = now.Add(2 * time.Second)
		l.overloaded()
	}
	if got := l.current(); got != 1 {
		t.Errorf("limit %d after repeated overload, want the minimum 1", got)
	}
}

func TestLimiterFixed(t *testing.T) {
	l := newLimiter(3, 1, 16)
	l.waiting()
	l.succeeded(100*time.Millisecond, 200)
	l.overloaded()
	if got := l.current(); got != 3 {
		t.Errorf("fixed limit moved to %d", got)
	}
}

// Latency that rises with the limit (Mautic queueing the calls) stops the
// growth and cuts the limit; latency that stays where it was lets it grow;
// batch size alone (small calls are faster) is no signal.
func TestLimiterBacksOffOnLatency(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	l := newLimiter(0, 1, 16)
	l.now = func() time.Time { return now }
	for i := range 40 {
		l.waiting()
		l.succeeded(350*time.Millisecond, 200)
		l.succeeded(time.Duration(150+i%3)*time.Millisecond, 2) // smaller calls, own baseline
		now = now.Add(100 * time.Millisecond)
	}
	grown := l.current()
	if grown <= 4 {
		t.Fatalf("limit %d after 40 calls at steady latency with demand, want growth above 4", grown)
	}
	for range 40 { // Mautic slows down as calls pile up: 350 ms -> 700 ms
		l.waiting()
		l.succeeded(700*time.Millisecond, 200)
		now = now.Add(100 * time.Millisecond)
	}
	if got := l.current(); got >= grown {
		t.Errorf("limit %d after latency doubled, want below %d", got, grown)
	}
	fast := newLimiter(0, 1, 16)
	for i := range 200 { // scheduling noise of sub-millisecond calls
		fast.waiting()
		fast.succeeded(time.Duration(200+i%7*300)*time.Microsecond, 50)
	}
	if got := fast.current(); got != 16 {
		t.Errorf("limit %d with jittery fast calls, want the maximum 16", got)
	}
}

// Until the first sign of overload the limit grows by one per successful
// call with demand (a new worker reaches its level within a few rounds of
// calls); after it, by about one per round.
func TestLimiterSlowStartThenAdditive(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	l := newLimiter(0, 1, 16)
	l.now = func() time.Time { return now }
	for range 6 {
		l.waiting()
		l.succeeded(300*time.Millisecond, 200)
	}
	if got := l.current(); got != 10 {
		t.Fatalf("limit %d after 6 successes with demand from 4, want 10 (slow start)", got)
	}
	l.overloaded() // 10 x 0.7 = 7
	for range 6 {
		l.waiting()
		l.succeeded(300*time.Millisecond, 200)
	}
	if got := l.current(); got != 7 {
		t.Errorf("limit %d after a cut and 6 successes, want 7 (additive: +1/7 each)", got)
	}
}
