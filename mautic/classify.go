package mautic

import (
	"context"
	"errors"
	"net/http"
)

// Action says what a caller should do about an error.
type Action int

const (
	// Retry: a transient fault (timeout, connection error, 5xx, HTML error
	// page). Repeat the same request after a backoff.
	Retry Action = iota + 1
	// Pause: a systemic fault that affects every call (rate limit
	// exhausted, authentication or API disabled, wrong base URL). Stop
	// sending until it clears; no event is at fault.
	Pause
	// Reject: the request's own content was refused (400, 403, 404, 422).
	// Repeating it cannot succeed.
	Reject
)

func (a Action) String() string {
	switch a {
	case Retry:
		return "retry"
	case Pause:
		return "pause"
	case Reject:
		return "reject"
	}
	return "unknown"
}

// Reason is a bounded label for an error, for logs and metric labels.
type Reason string

// Reasons returned by Classify.
const (
	ReasonTransport   Reason = "transport"    // connection error or timeout
	ReasonServerError Reason = "server_error" // 5xx or a non-JSON answer
	ReasonRateLimited Reason = "rate_limited"
	ReasonAuth        Reason = "auth"
	ReasonAPIDisabled Reason = "api_disabled"
	ReasonBadURL      Reason = "bad_url" // Mautic answered "No route found"
	ReasonRejected    Reason = "rejected"
	ReasonCanceled    Reason = "canceled"
)

// Classify says what to do about an error returned by this package.
func Classify(err error) (Action, Reason) {
	var (
		rl *RateLimitError
		ae *AuthError
		ap *APIError
	)
	switch {
	case err == nil:
		return 0, ""
	case errors.Is(err, context.Canceled):
		return Retry, ReasonCanceled
	case errors.As(err, &rl):
		return Pause, ReasonRateLimited
	case errors.As(err, &ae):
		if ae.Type == "api_disabled" {
			return Pause, ReasonAPIDisabled
		}
		return Pause, ReasonAuth
	case errors.As(err, &ap):
		return classifyStatus(ap)
	default:
		// Transport errors, timeouts, truncated or undecodable bodies.
		return Retry, ReasonTransport
	}
}

func classifyStatus(ap *APIError) (Action, Reason) {
	s := ap.StatusCode
	switch {
	case ap.NotJSON && s < 500:
		// An HTML 4xx comes from a proxy or a maintenance page, not from
		// Mautic judging the request.
		if s == http.StatusNotFound {
			return Pause, ReasonBadURL
		}
		return Retry, ReasonServerError
	case ap.RoutingError(), s == http.StatusMethodNotAllowed:
		return Pause, ReasonBadURL
	case s == http.StatusRequestTimeout:
		return Retry, ReasonTransport
	case s >= 500:
		return Retry, ReasonServerError
	case s == http.StatusBadRequest, s == http.StatusForbidden, s == http.StatusNotFound,
		s == http.StatusConflict, s == http.StatusGone, s == http.StatusRequestEntityTooLarge,
		s == http.StatusUnprocessableEntity:
		return Reject, ReasonRejected
	default:
		return Retry, ReasonServerError
	}
}

// ItemAction says what to do about one failed item of a batch: statuses
// that judge the item (400, 403, 404, 422) reject it; anything else is
// retried.
func ItemAction(status int) Action {
	switch status {
	case http.StatusBadRequest, http.StatusForbidden, http.StatusNotFound, http.StatusUnprocessableEntity:
		return Reject
	}
	if status >= 200 && status < 300 {
		return 0
	}
	return Retry
}
