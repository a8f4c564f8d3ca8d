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
		l.succeeded() // no demand: no growth
	}
	if got := l.current(); got != 4 {
		t.Errorf("grew to %d without demand", got)
	}
	for range 200 {
		l.waiting()
		l.succeeded()
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
	l.succeeded()
	l.overloaded()
	if got := l.current(); got != 3 {
		t.Errorf("fixed limit moved to %d", got)
	}
}
