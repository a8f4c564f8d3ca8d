package mautic

import (
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

	// Client-side budget; limit 0 means none.
	limit  int
	window time.Duration
	start  time.Time // of the current local window
	used   int
}

// resetMargin is added to Mautic's reset time: Mautic resets when its
// clock reaches Reset (whole seconds), and our request must arrive after.
const resetMargin = time.Second

// acquire reserves one call, or says when calls may resume.
func (s *rateState) acquire() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if s.server.Limit > 0 && s.server.Remaining <= 0 && now.Before(s.server.Reset.Add(resetMargin)) {
		return &RateLimitError{Rate: s.server, Reset: s.server.Reset.Add(resetMargin), Local: true}
	}
	if s.limit <= 0 {
		return nil
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

// observe records the headers of a response.
func (s *rateState) observe(r Rate) {
	if r.Limit <= 0 && r.Reset.IsZero() {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.server = r
	if s.limit > 0 && r.Limit > 0 {
		// Mautic's count is the truth where it is stricter.
		if used := r.Limit - r.Remaining; r.Limit <= s.limit && used > s.used {
			s.used = used
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
