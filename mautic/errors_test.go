package mautic_test

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mautic-sync/mautic-sync/mautic"
)

func resp(status int, body string, hdr ...string) *http.Response {
	h := http.Header{}
	for i := 0; i+1 < len(hdr); i += 2 {
		h.Set(hdr[i], hdr[i+1])
	}
	u, _ := url.Parse("https://m.example.com/api/contacts/batch/new")
	return &http.Response{StatusCode: status, Header: h, Body: io.NopCloser(strings.NewReader(body)),
		Request: &http.Request{Method: http.MethodPost, URL: u}}
}

func TestCheckResponseShapes(t *testing.T) {
	cases := []struct {
		name      string
		r         *http.Response
		wantType  string // "api", "rate", "auth"
		wantMsg   string
		wantClass mautic.Action
	}{
		{"controller 400", resp(400, `{"errors":[{"code":400,"message":"email: x is invalid.","details":{"email":["x is invalid."]}}]}`),
			"api", "email: x is invalid.", mautic.Reject},
		{"controller 404", resp(404, `{"errors":[{"code":404,"message":"Item was not found.","details":[]}]}`), "api", "Item was not found.", mautic.Reject},
		{"422", resp(422, `{"errors":[{"code":422,"message":"in use","details":[]}]}`), "api", "in use", mautic.Reject},
		{"routing 404", resp(404, `{"errors":[{"message":"No route found for \"GET /api/x\"","code":404,"type":null}]}`), "api", "No route found", mautic.Pause},
		{"generic 500", resp(500, `{"errors":[{"message":"Looks like I encountered an error (error #500).","code":500,"type":null}]}`), "api", "Looks like", mautic.Retry},
		{"batch limit 500", resp(500, `{"errors":[{"code":500,"message":"A max of 200 entities are supported at a time.","details":[]}]}`), "api", "A max of 200", mautic.Retry},
		{"html 503", resp(503, `<html><head><title>Site is offline</title></head><body>x</body></html>`, "Content-Type", "text/html"), "api", "Site is offline", mautic.Retry},
		{"html 404 from proxy", resp(404, `<html><title>Not Found</title></html>`), "api", "Not Found", mautic.Pause},
		{"garbage 502", resp(502, `bad gateway`), "api", "bad gateway", mautic.Retry},
		{"truncated json 500", resp(500, `{"errors":[{"code":5`), "api", "non-JSON", mautic.Retry},
		{"pre-3.0 error object", resp(400, `{"error":{"code":400,"message":"old style"}}`), "api", "old style", mautic.Reject},
		{"raw oauth error", resp(400, `{"error":"unsupported_grant_type","error_description":null}`), "api", "Bad Request", mautic.Reject},
		{"429", resp(429, `{ "errors": [ { "code": 429, "message": "You exceeded the rate limit of 10 API calls per hour.", "details": [] } ]}`,
			"X-RateLimit-Limit", "10", "X-RateLimit-Remaining", "0", "X-RateLimit-Reset", "2000000000"), "rate", "exceeded", mautic.Pause},
		{"429 no headers", resp(429, `{}`), "rate", "rate limit", mautic.Pause},
		{"expired token", resp(401, `{"errors":[{"message":"The access token provided has expired.","code":401,"type":"invalid_grant"}]}`), "auth", "expired", mautic.Pause},
		{"bad basic", resp(401, `{"errors":[{"message":"Authorization denied, invalid credentials.","code":401,"type":"access_denied"}]}`), "auth", "invalid credentials", mautic.Pause},
		{"api disabled", resp(403, `{"errors":[{"message":"API disabled. You need to enable the API in the API settings of Mautic\u0027s Configuration.","code":403,"type":"api_disabled"}]}`), "auth", "API disabled", mautic.Pause},
		{"basic disabled", resp(403, `{"errors":[{"message":"Basic Auth disabled. You need to enable HTTP basic auth in the API settings of Mautic\u0027s Configuration.","code":403,"type":"access_denied"}]}`), "auth", "Basic Auth disabled", mautic.Pause},
		{"permission 403", resp(403, `{"errors":[{"code":403,"message":"You do not have access to the requested area\/action.","details":[]}]}`), "api", "do not have access", mautic.Reject},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := mautic.CheckResponse(c.r)
			if err == nil {
				t.Fatal("CheckResponse = nil")
			}
			var (
				ae *mautic.APIError
				re *mautic.RateLimitError
				au *mautic.AuthError
			)
			switch c.wantType {
			case "api":
				if !errors.As(err, &ae) {
					t.Fatalf("error %T %v, want *APIError", err, err)
				}
			case "rate":
				if !errors.As(err, &re) {
					t.Fatalf("error %T %v, want *RateLimitError", err, err)
				}
			case "auth":
				if !errors.As(err, &au) {
					t.Fatalf("error %T %v, want *AuthError", err, err)
				}
			}
			if !strings.Contains(err.Error(), c.wantMsg) {
				t.Errorf("error %q lacks %q", err, c.wantMsg)
			}
			if got, _ := mautic.Classify(err); got != c.wantClass {
				t.Errorf("Classify = %v, want %v", got, c.wantClass)
			}
			// The body stays readable for the caller.
			if b, _ := io.ReadAll(c.r.Body); len(b) == 0 && c.r.StatusCode != 0 {
				t.Error("body not restored")
			}
		})
	}
}

func TestRateLimitErrorCarriesReset(t *testing.T) {
	err := mautic.CheckResponse(resp(429, `{}`, "X-RateLimit-Limit", "10", "X-RateLimit-Remaining", "0", "X-RateLimit-Reset", "2000000000"))
	var re *mautic.RateLimitError
	if !errors.As(err, &re) {
		t.Fatal(err)
	}
	if !re.Reset.Equal(time.Unix(2000000000, 0)) || re.Rate.Limit != 10 {
		t.Errorf("rate %+v reset %v", re.Rate, re.Reset)
	}
}

func TestCheckResponseSuccess(t *testing.T) {
	for _, s := range []int{200, 201, 202, 204} {
		if err := mautic.CheckResponse(resp(s, `{}`)); err != nil {
			t.Errorf("status %d: %v", s, err)
		}
	}
}

func TestCheckResponseOversizedBody(t *testing.T) {
	big := strings.Repeat("x", 5<<20)
	err := mautic.CheckResponse(resp(500, big))
	var ae *mautic.APIError
	if !errors.As(err, &ae) || !ae.NotJSON || len(ae.Error()) > 1000 {
		t.Errorf("oversized body: %v", err)
	}
}

func TestClassifyStatuses(t *testing.T) {
	for s := 400; s < 600; s++ {
		err := &mautic.APIError{StatusCode: s, Errors: []mautic.ErrorDetail{{Code: s, Message: "x"}}}
		got, _ := mautic.Classify(err)
		var want mautic.Action
		switch {
		case s == 405:
			want = mautic.Pause
		case s == 400 || s == 403 || s == 404 || s == 409 || s == 410 || s == 413 || s == 422:
			want = mautic.Reject
		default:
			want = mautic.Retry
		}
		if got != want {
			t.Errorf("status %d: Classify = %v, want %v", s, got, want)
		}
	}
	if got, _ := mautic.Classify(errors.New("dial tcp: connection refused")); got != mautic.Retry {
		t.Errorf("transport error: %v, want retry", got)
	}
}

func TestItemAction(t *testing.T) {
	cases := map[int]mautic.Action{200: 0, 201: 0, 400: mautic.Reject, 403: mautic.Reject, 404: mautic.Reject,
		422: mautic.Reject, 500: mautic.Retry, 503: mautic.Retry, 429: mautic.Retry}
	for s, want := range cases {
		if got := mautic.ItemAction(s); got != want {
			t.Errorf("ItemAction(%d) = %v, want %v", s, got, want)
		}
	}
}

// TestNotAppliedTellsCallsMauticDidNotApply: the worker clears a points
// intent only for errors that prove nothing was applied: a call never
// sent (the budget refused it, no access token could be had) or a 429;
// never for a call that reached Mautic and failed otherwise.
func TestNotAppliedTellsCallsMauticDidNotApply(t *testing.T) {
	status := http.StatusInternalServerError
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, `{"errors":[{"code":`+strconv.Itoa(status)+`,"message":"no"}]}`)
	}))
	defer srv.Close()
	ctx := t.Context()
	points := func(opts ...mautic.Option) error {
		t.Helper()
		c, err := mautic.NewClient(srv.URL, append([]mautic.Option{mautic.WithTimeout(5 * time.Second)}, opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.AdjustPoints(ctx, 1, 2, "e")
		return err
	}

	err := points(mautic.WithBasicAuth("u", "p"))
	if err == nil || mautic.NotApplied(err) {
		t.Errorf("a 500 from Mautic: %v, NotApplied %v; want an error that may have been applied", err, mautic.NotApplied(err))
	}
	// The token endpoint answers 500 too: no token, the call never left.
	if err := points(mautic.WithClientCredentials("id", "secret")); err == nil || !mautic.NotApplied(err) {
		t.Errorf("no access token: %v, NotApplied %v; want not applied", err, mautic.NotApplied(err))
	}
	status = http.StatusTooManyRequests
	if err := points(mautic.WithBasicAuth("u", "p")); err == nil || !mautic.NotApplied(err) {
		t.Errorf("a 429: %v, NotApplied %v; want not applied", err, mautic.NotApplied(err))
	}
	// A budget of one call: the second is refused without being sent.
	c, err := mautic.NewClient(srv.URL, mautic.WithBasicAuth("u", "p"), mautic.WithRateBudget(1, time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	_, _ = c.AdjustPoints(ctx, 1, 2, "e")
	var ns *mautic.NotSentError
	if _, err := c.AdjustPoints(ctx, 1, 2, "e"); !errors.As(err, &ns) || !mautic.NotApplied(err) {
		t.Errorf("budget used up: %v; want a NotSentError", err)
	}
}
