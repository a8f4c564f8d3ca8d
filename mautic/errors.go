package mautic

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// maxErrorBody bounds how much of an error response is read.
const maxErrorBody = 1 << 20

// ErrorDetail is one element of Mautic's `errors` array. Mautic has three
// producers of it (controller errors {code,message,details}, the API
// subscriber {message,code,type} and the exception controller
// {message,code,type:null}); all decode into this type. The pre-3.0 `error`
// object decodes into it too.
type ErrorDetail struct {
	Code    int             `json:"code"`
	Message string          `json:"message"`
	Type    string          `json:"type,omitempty"`
	Details json.RawMessage `json:"details,omitempty"`
}

// UnmarshalJSON accepts code as a number or a numeric string and type as a
// string or null.
func (d *ErrorDetail) UnmarshalJSON(b []byte) error {
	var raw struct {
		Code    json.RawMessage `json:"code"`
		Message any             `json:"message"`
		Type    *string         `json:"type"`
		Details json.RawMessage `json:"details"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	d.Code = 0
	if len(raw.Code) > 0 {
		s := strings.Trim(string(raw.Code), `"`)
		if n, err := strconv.Atoi(s); err == nil {
			d.Code = n
		}
	}
	switch m := raw.Message.(type) {
	case string:
		d.Message = m
	case nil:
		d.Message = ""
	default:
		mb, _ := json.Marshal(m)
		d.Message = string(mb)
	}
	d.Type = ""
	if raw.Type != nil {
		d.Type = *raw.Type
	}
	d.Details = raw.Details
	return nil
}

// APIError is a non-2xx answer from Mautic that is neither a rate limit nor
// an authentication failure.
type APIError struct {
	Method     string
	Path       string // request path, without query (never carries credentials)
	StatusCode int
	Errors     []ErrorDetail
	// NotJSON is set when the body was not Mautic JSON (an HTML error page
	// from PHP or a proxy, or garbage); Body then holds a short excerpt.
	NotJSON bool
	Body    string
}

func (e *APIError) Error() string {
	msg := e.Message()
	if e.NotJSON {
		msg = "non-JSON response"
		if e.Body != "" {
			msg += ": " + e.Body
		}
	}
	return fmt.Sprintf("mautic: %s %s: HTTP %d: %s", e.Method, e.Path, e.StatusCode, msg)
}

// Message joins Mautic's error messages.
func (e *APIError) Message() string {
	msgs := make([]string, 0, len(e.Errors))
	for _, d := range e.Errors {
		if d.Message != "" {
			msgs = append(msgs, d.Message)
		}
	}
	if len(msgs) == 0 {
		return http.StatusText(e.StatusCode)
	}
	return strings.Join(msgs, "; ")
}

// Type is the first error's type ("api_disabled", "invalid_grant", ...) or "".
func (e *APIError) Type() string {
	if len(e.Errors) > 0 {
		return e.Errors[0].Type
	}
	return ""
}

// RoutingError reports whether Mautic answered that the route does not
// exist, which means the base URL is wrong rather than that an item is
// missing.
func (e *APIError) RoutingError() bool {
	return e.StatusCode == http.StatusNotFound && len(e.Errors) > 0 &&
		strings.HasPrefix(e.Errors[0].Message, "No route found")
}

// NotSentError is the error of a call that was never sent: the
// client-side rate budget refused it or could not be read, ctx ended
// while it waited for its turn, or no access token could be had. Mautic
// did nothing.
type NotSentError struct{ Err error }

func (e *NotSentError) Error() string { return e.Err.Error() }
func (e *NotSentError) Unwrap() error { return e.Err }

// NotApplied reports whether err proves that Mautic applied nothing of the
// call: it was never sent, or Mautic refused it for its rate limit (429).
func NotApplied(err error) bool {
	var ns *NotSentError
	var rl *RateLimitError
	return errors.As(err, &ns) || errors.As(err, &rl)
}

// RateLimitError says Mautic's rate limit is exhausted until Reset. It is
// returned for a 429, and without any network call while the last seen
// X-RateLimit-Remaining is 0 and Reset has not passed.
type RateLimitError struct {
	Rate Rate
	// Reset is when calls may resume; zero when Mautic sent no headers.
	Reset time.Time
	// Local is true when no request was sent (known exhausted window).
	Local   bool
	Message string
}

func (e *RateLimitError) Error() string {
	s := "mautic: rate limit exceeded"
	if !e.Reset.IsZero() {
		s += ", resets at " + e.Reset.UTC().Format(time.RFC3339)
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// AuthError is an authentication or authorization fault that no retry of
// the same request fixes: bad credentials, a disabled API, disabled basic
// auth, or an access token Mautic still refuses after a fresh one was
// fetched. It is a configuration problem, never the fault of an event.
type AuthError struct {
	StatusCode int
	Type       string // Mautic's errors[0].type: invalid_client, api_disabled, access_denied, invalid_grant...
	Message    string
	// Setting names the configuration to check.
	Setting string
}

func (e *AuthError) Error() string {
	s := fmt.Sprintf("mautic: authentication failed (HTTP %d", e.StatusCode)
	if e.Type != "" {
		s += ", " + e.Type
	}
	s += ")"
	if e.Message != "" {
		s += ": " + e.Message
	}
	if e.Setting != "" {
		s += "; check " + e.Setting
	}
	return s
}

// CheckResponse returns nil for a 2xx response. Otherwise it reads the body
// (at most 1 MiB), restores it for the caller, and returns:
//   - *RateLimitError for 429;
//   - *AuthError for 401, and for 403 with type api_disabled or the
//     basic-auth-disabled message;
//   - *APIError for everything else, with Mautic's errors decoded, or with
//     NotJSON set when the body is HTML or garbage.
func CheckResponse(r *http.Response) error {
	if r.StatusCode >= 200 && r.StatusCode < 300 {
		return nil
	}
	body, _ := io.ReadAll(io.LimitReader(r.Body, maxErrorBody))
	r.Body = io.NopCloser(bytes.NewReader(body))
	method, path := "", ""
	if r.Request != nil {
		method, path = r.Request.Method, r.Request.URL.Path
	}
	details, jsonOK := decodeErrors(body)
	if r.StatusCode == http.StatusTooManyRequests {
		rate := parseRate(r.Header)
		e := &RateLimitError{Rate: rate, Reset: rate.Reset}
		if len(details) > 0 {
			e.Message = details[0].Message
		}
		return e
	}
	first := ErrorDetail{}
	if len(details) > 0 {
		first = details[0]
	}
	switch {
	case r.StatusCode == http.StatusUnauthorized:
		return &AuthError{StatusCode: r.StatusCode, Type: first.Type, Message: first.Message}
	case r.StatusCode == http.StatusForbidden && first.Type == "api_disabled":
		return &AuthError{StatusCode: r.StatusCode, Type: first.Type, Message: first.Message,
			Setting: "Mautic's Configuration > API Settings > API enabled"}
	case r.StatusCode == http.StatusForbidden && strings.HasPrefix(first.Message, "Basic Auth disabled"):
		return &AuthError{StatusCode: r.StatusCode, Type: "basic_auth_disabled", Message: first.Message,
			Setting: "Mautic's Configuration > API Settings > Enable HTTP basic auth, or use MAUTIC_CLIENT_ID/MAUTIC_CLIENT_SECRET"}
	}
	e := &APIError{Method: method, Path: path, StatusCode: r.StatusCode, Errors: details}
	if !jsonOK {
		e.NotJSON = true
		e.Body = excerpt(body)
	}
	return e
}

// decodeErrors reads Mautic's error body in any of its shapes. ok is false
// when the body is not a JSON object.
func decodeErrors(body []byte) (details []ErrorDetail, ok bool) {
	var env struct {
		Errors json.RawMessage `json:"errors"`
		Error  json.RawMessage `json:"error"`
		// OAuth2 library errors that pass through untranslated.
		Description *string `json:"error_description"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		return nil, false
	}
	if len(env.Errors) > 0 {
		if ds, err := decodeIndexed[ErrorDetail](env.Errors); err == nil {
			for _, i := range sortedKeys(ds) {
				details = append(details, ds[i])
			}
		}
	}
	if len(details) == 0 && len(env.Error) > 0 {
		var d ErrorDetail
		var code string
		switch {
		case json.Unmarshal(env.Error, &d) == nil: // pre-3.0 {"error":{"code","message"}}
		case json.Unmarshal(env.Error, &code) == nil: // raw OAuth {"error":"x","error_description":..}
			d = ErrorDetail{Type: code}
			if env.Description != nil {
				d.Message = *env.Description
			}
		}
		details = append(details, d)
	}
	return details, true
}

// excerpt turns a non-JSON body into one short line: an HTML title when
// there is one, else the first bytes.
func excerpt(body []byte) string {
	s := string(body)
	if i := strings.Index(strings.ToLower(s), "<title>"); i >= 0 {
		rest := s[i+len("<title>"):]
		if j := strings.Index(strings.ToLower(rest), "</title>"); j >= 0 {
			s = rest[:j]
		}
	}
	s = strings.Join(strings.Fields(s), " ")
	s = strings.ToValidUTF8(s, "?")
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

// IsAuth reports whether err is an *AuthError.
func IsAuth(err error) bool {
	var ae *AuthError
	return errors.As(err, &ae)
}
