package mautic

import (
	"context"
	"testing"
	"time"
)

// The shared count of an aligned window is raised to Mautic's own count
// only when Mautic's window began inside it: a Mautic window that began in
// the previous aligned window also counts that window's calls, and raising
// to it counted them twice, so the aligned window ran out early (seen as
// 11.5-14 s windows for 10 s with three and four replicas).
func TestSharedCountRaisedOnlyByMauticWindowWithinIt(t *testing.T) {
	epoch := time.Unix(1_700_000_000, 0).Truncate(10 * time.Second)
	for _, c := range []struct {
		name        string
		mauticStart time.Duration // from the aligned window's start
		want        int
	}{
		{"Mautic window began in the previous aligned window", -2 * time.Second, 1},
		{"Mautic window began in this aligned window", time.Second, 7},
	} {
		t.Run(c.name, func(t *testing.T) {
			now := epoch.Add(5 * time.Second)
			store := &MemoryRateStore{}
			s := &rateState{now: func() time.Time { return now }, limit: 10, window: 10 * time.Second, store: store}
			if err := s.acquire(context.Background()); err != nil {
				t.Fatal(err)
			}
			s.observe(Rate{Limit: 10, Remaining: 3, Reset: epoch.Add(c.mauticStart + 10*time.Second)})
			s.release()
			count, _, _ := store.Take(context.Background(), epoch, 100)
			if got := count - 1; got != c.want {
				t.Errorf("shared count of the aligned window %d, want %d", got, c.want)
			}
		})
	}
}
