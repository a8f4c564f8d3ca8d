package mautic

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Mautic's limiter counts calls per access token (one shared bucket for
// basic auth) in a fixed window that starts at the first call, and answers
// 429 without Retry-After. rateState keeps the last state Mautic reported
// and, when configured, a client-side budget of calls per window, so that
// 429s are rare rather than routine.
type rateState struct {
	mu     sync.Mutex
	now    func() time.Time
	server Rate
	// inflight counts calls sent whose answer has not been observed: the
	// Remaining of the last answer does not count them yet.
	inflight int
	released chan struct{} // closed by release; made by a waiting acquire

	// Client-side budget; limit 0 means none.
	limit  int
	window time.Duration
	start  time.Time // of the current local window
	used   int

	// store, when set, keeps the count where every replica sharing
	// Mautic's bucket sees it; windows then start at multiples of window.
	store RateStore
}

// RateStore keeps the client-side budget's count of calls per window where
// every replica that shares one Mautic rate-limit bucket sees it (basic-auth
// callers share one; see WithSharedRateBudget), so that the replicas
// together stay under the limit. Windows start at multiples of the window
// length since the Unix epoch, so that every replica agrees on them. The
// queue package keeps it in a JetStream key-value bucket, updated with
// compare-and-set.
type RateStore interface {
	// Take counts one call in the window that starts at start, unless
	// limit calls are counted there already. It returns the window's
	// count (with the call when taken) and whether the call was taken.
	Take(ctx context.Context, start time.Time, limit int) (count int, taken bool, err error)
	// Raise lifts the window's count to at least n (Mautic's own count,
	// when it reports a stricter one).
	Raise(ctx context.Context, start time.Time, n int) error
}

// rateStoreTimeout bounds one exchange with the RateStore.
const rateStoreTimeout = 5 * time.Second

// MemoryRateStore is a RateStore for one process (and for tests).
type MemoryRateStore struct {
	mu     sync.Mutex
	counts map[int64]int
}

// Take implements RateStore.
func (m *MemoryRateStore) Take(_ context.Context, start time.Time, limit int) (int, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.counts == nil {
		m.counts = map[int64]int{}
	}
	k := start.UnixNano()
	if m.counts[k] >= limit {
		return m.counts[k], false, nil
	}
	m.counts[k]++
	return m.counts[k], true, nil
}

// Raise implements RateStore.
func (m *MemoryRateStore) Raise(_ context.Context, start time.Time, n int) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.counts == nil {
		m.counts = map[int64]int{}
	}
	m.counts[start.UnixNano()] = max(m.counts[start.UnixNano()], n)
	return nil
}

// resetMargin is added to Mautic's reset time: Mautic resets when its
// clock reaches Reset (whole seconds), and our request must arrive after.
const resetMargin = time.Second

// acquire reserves one call, or says when calls may resume. A reserved
// call is released with release once its answer (or failure) is in.
//
// Mautic's last reported Remaining is taken to be used up by the calls in
// flight, so that N concurrent calls do not all go out on the last one
// remaining and collect N-1 429s: a call that finds what is left held by
// calls in flight waits for one of their answers (which update Remaining)
// or for ctx.
func (s *rateState) acquire(ctx context.Context) error {
	for {
		s.mu.Lock()
		now := s.now()
		if s.server.Limit > 0 && s.server.Remaining-s.inflight <= 0 && now.Before(s.server.Reset.Add(resetMargin)) {
			if s.server.Remaining <= 0 {
				defer s.mu.Unlock()
				return &RateLimitError{Rate: s.server, Reset: s.server.Reset.Add(resetMargin), Local: true}
			}
			if s.released == nil {
				s.released = make(chan struct{})
			}
			wait := s.released
			s.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return context.Cause(ctx)
			}
		}
		err := s.acquireBudget(now)
		if err == nil {
			s.inflight++
		}
		s.mu.Unlock()
		return err
	}
}

// release ends a call reserved by acquire, after its answer's headers were
// observed.
func (s *rateState) release() {
	s.mu.Lock()
	s.inflight--
	if s.released != nil {
		close(s.released)
		s.released = nil
	}
	s.mu.Unlock()
}

// acquireBudget takes one call from the client-side budget, if any.
func (s *rateState) acquireBudget(now time.Time) error {
	if s.limit <= 0 {
		return nil
	}
	if s.store != nil {
		return s.acquireShared(now)
	}
	if s.start.IsZero() || !now.Before(s.windowEnd()) {
		s.start, s.used = now, 0
	}
	if s.used >= s.limit {
		return &RateLimitError{Rate: Rate{Limit: s.limit, Remaining: 0, Reset: s.windowEnd()}, Reset: s.windowEnd(), Local: true,
			Message: fmt.Sprintf("client-side budget of %d calls per %s used up", s.limit, s.window)}
	}
	s.used++
	return nil
}

// acquireShared takes the call from the shared count. The lock is held
// across the exchange with the store: the client's calls take their turn,
// and the count seen last is kept for Budget.
func (s *rateState) acquireShared(now time.Time) error {
	start := now.Truncate(s.window)
	ctx, cancel := context.WithTimeout(context.Background(), rateStoreTimeout)
	defer cancel()
	count, taken, err := s.store.Take(ctx, start, s.limit)
	if err != nil {
		// Not counted, not sent: the caller retries with backoff.
		return fmt.Errorf("mautic: shared rate budget: %w", err)
	}
	s.start, s.used = start, count
	if !taken {
		end := s.windowEnd()
		return &RateLimitError{Rate: Rate{Limit: s.limit, Remaining: 0, Reset: end}, Reset: end, Local: true,
			Message: fmt.Sprintf("client-side budget of %d calls per %s, shared by the replicas, used up", s.limit, s.window)}
	}
	return nil
}

// windowEnd is when the local window ends: its own length, but never
// before the window Mautic reported has reset.
func (s *rateState) windowEnd() time.Time {
	end := s.start.Add(s.window)
	if s.server.Limit > 0 && s.server.Reset.After(s.start) {
		if r := s.server.Reset.Add(resetMargin); r.After(end) {
			end = r
		}
	}
	return end
}

// maxResetAhead bounds how far ahead a believable X-RateLimit-Reset is:
// Mautic's limiter counts calls per hour, so a reset further ahead (a value
// in milliseconds, a proxy's own header) is wrong. It is ignored rather
// than stopping every call until then.
const maxResetAhead = time.Hour + 5*time.Minute

// believable drops a reset time that cannot be Mautic's from a
// *RateLimitError (its Rate keeps what the headers said): the caller then
// backs off as for a 429 without headers.
func (s *rateState) believable(err error) error {
	var rl *RateLimitError
	if errors.As(err, &rl) && rl.Reset.After(s.now().Add(maxResetAhead)) {
		rl.Reset = time.Time{}
	}
	return err
}

// observe records the headers of a response.
func (s *rateState) observe(r Rate) {
	if r.Limit <= 0 && r.Reset.IsZero() {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.Reset.After(s.now().Add(maxResetAhead)) {
		r.Reset = time.Time{} // not believable: see maxResetAhead
	}
	if r.Limit == s.server.Limit && r.Reset.Equal(s.server.Reset) && r.Remaining > s.server.Remaining {
		// An answer overtaken by a later one of the same window: its
		// count is older.
		r.Remaining = s.server.Remaining
	}
	s.server = r
	if s.limit > 0 && r.Limit > 0 && r.Limit <= s.limit {
		// Mautic's count is the truth where it is stricter.
		used := r.Limit - r.Remaining
		switch {
		case s.store == nil:
			s.used = max(s.used, used)
		case !s.start.IsZero() && !r.Reset.Add(-s.window).Before(s.start):
			// Mautic's window began within the shared (aligned) one, so
			// its count is of calls in it. One that began earlier also
			// counts calls of the previous aligned window: raising this
			// one's count to it would count those twice and end this
			// window early.
			s.used = max(s.used, used)
			start := s.start
			ctx, cancel := context.WithTimeout(context.Background(), rateStoreTimeout)
			_ = s.store.Raise(ctx, start, used) // best effort: Mautic's headers still stop us
			cancel()
		}
	}
}

func (s *rateState) last() Rate {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.server
}

// Budget reports the client-side budget: calls left in the current window
// and when it ends; ok is false when no budget is configured.
func (c *Client) Budget() (left int, reset time.Time, ok bool) {
	s := &c.rate
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.limit <= 0 {
		return 0, time.Time{}, false
	}
	if s.start.IsZero() || !s.now().Before(s.windowEnd()) {
		return s.limit, time.Time{}, true
	}
	return s.limit - s.used, s.windowEnd(), true
}

// WithRateBudget keeps the client under limit calls per window (Mautic's
// api_rate_limiter_limit per hour, or less): a call beyond it fails with a
// local *RateLimitError, without a request, until the window ends. Every
// concurrent call of the client shares the budget.
func WithRateBudget(limit int, window time.Duration) Option {
	return func(c *Client) error {
		if limit < 1 || window <= 0 {
			return fmt.Errorf("%w: rate budget needs a positive limit and window, got %d per %s", ErrInvalidOption, limit, window)
		}
		c.rate.limit, c.rate.window = limit, window
		return nil
	}
}

// WithSharedRateBudget is WithRateBudget with the count kept in store,
// shared by every replica whose calls Mautic counts in one bucket (basic
// auth; a shared OAuth2 token), so that together they make at most limit
// calls per window. Windows start at multiples of window since the Unix
// epoch. A call that cannot reach the store is not made: it fails with an
// error that callers retry.
func WithSharedRateBudget(limit int, window time.Duration, store RateStore) Option {
	return func(c *Client) error {
		if store == nil {
			return fmt.Errorf("%w: a shared rate budget needs a store", ErrInvalidOption)
		}
		if err := WithRateBudget(limit, window)(c); err != nil {
			return err
		}
		c.rate.store = store
		return nil
	}
}
