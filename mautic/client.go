// Package mautic is a client for Mautic's REST API (Mautic 4, 5 and 6),
// written for bulk synchronisation and usable on its own.
//
// The client knows Mautic's quirks: batch calls answer 201/200 even when
// items fail, so each item's status is decoded from `statusCodes` and
// `errors` (keyed by item index, arrays or objects); rate limits are tracked
// from X-RateLimit-* headers and, once exhausted, reported without a network
// call until the window resets; an expired OAuth2 access token (401
// invalid_grant) is replaced once and the request repeated; errors come back
// typed (*APIError, *RateLimitError, *AuthError) and Classify says whether
// to retry, pause or reject. The client never retries with backoff on its
// own: that decision belongs to the caller, which knows what it holds.
//
// A Client is safe for concurrent use.
package mautic

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// maxBody bounds how much of a successful response is read: a batch of 200
// fully serialised contacts is a few MiB.
const maxBody = 64 << 20

// ErrInvalidOption wraps every error of NewClient's options.
var ErrInvalidOption = errors.New("mautic: invalid option")

// Rate is Mautic's rate-limit state as last reported in X-RateLimit-*
// headers. Limit is 0 when Mautic sent none (its limiter is off by default).
type Rate struct {
	Limit     int
	Remaining int
	Reset     time.Time
}

// Response is Mautic's HTTP response with its parsed headers.
type Response struct {
	*http.Response
	Rate Rate
	// Version is the Mautic-Version header, when present.
	Version string
}

// Client talks to one Mautic installation.
type Client struct {
	base      *url.URL // without trailing slash, e.g. https://m.example.com/mautic
	hc        *http.Client
	auth      authenticator
	userAgent string
	observer  func(Call)
	tracer    trace.Tracer
	rate      rateState
	answers   answerReader

	mu      sync.Mutex
	version string
}

// Call describes one HTTP request the client made, for metrics.
type Call struct {
	// Route is the endpoint as a template, e.g. "contacts/batch/new" or
	// "segments/{id}/contacts/add": bounded, never carrying ids or emails.
	Route    string
	Method   string
	Status   int // 0 when no response arrived
	Duration time.Duration
}

// WithObserver calls f after every HTTP request (token requests included,
// with route "oauth/v2/token"). f must be quick and safe for concurrent use.
func WithObserver(f func(Call)) Option {
	return func(c *Client) error {
		if f == nil {
			return fmt.Errorf("%w: nil observer", ErrInvalidOption)
		}
		c.observer = f
		return nil
	}
}

// Option configures a Client.
type Option func(*Client) error

// WithHTTPClient sets the HTTP client used for API and token calls. Its
// Timeout bounds every request. The default has a 120 s timeout and a
// transport tuned for keep-alive with a few concurrent connections.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) error {
		if hc == nil {
			return fmt.Errorf("%w: nil http client", ErrInvalidOption)
		}
		cp := *hc
		c.hc = &cp
		return nil
	}
}

// WithTimeout sets the timeout of one request (default 120 s: batches of
// 200 can take tens of seconds on large installations).
func WithTimeout(d time.Duration) Option {
	return func(c *Client) error {
		if d <= 0 {
			return fmt.Errorf("%w: timeout must be positive, got %s", ErrInvalidOption, d)
		}
		c.hc.Timeout = d
		return nil
	}
}

// WithBasicAuth authenticates every call with HTTP basic auth (Mautic's
// "Enable HTTP basic auth" must be on).
func WithBasicAuth(username, password string) Option {
	return func(c *Client) error {
		if username == "" || password == "" {
			return fmt.Errorf("%w: basic auth needs a username and a password", ErrInvalidOption)
		}
		c.auth = &basicAuth{user: username, pass: password}
		return nil
	}
}

// WithClientCredentials authenticates with OAuth2 client credentials
// against <base>/oauth/v2/token. The client must have been created in
// Mautic by an administrator (only then does it get the client_credentials
// grant).
func WithClientCredentials(clientID, clientSecret string) Option {
	return func(c *Client) error {
		if clientID == "" || clientSecret == "" {
			return fmt.Errorf("%w: client credentials need an id and a secret", ErrInvalidOption)
		}
		c.auth = newClientCredentials(clientID, clientSecret, c.endpoint("/oauth/v2/token"))
		return nil
	}
}

// WithTracer records a client span for every HTTP request (route, method,
// status), as a child of the span in the request's context.
func WithTracer(t trace.Tracer) Option {
	return func(c *Client) error {
		if t == nil {
			return fmt.Errorf("%w: nil tracer", ErrInvalidOption)
		}
		c.tracer = t
		return nil
	}
}

// WithUserAgent sets the User-Agent header.
func WithUserAgent(ua string) Option {
	return func(c *Client) error {
		if ua == "" {
			return fmt.Errorf("%w: empty user agent", ErrInvalidOption)
		}
		c.userAgent = ua
		return nil
	}
}

// NewClient returns a client for the Mautic installed at baseURL (the URL
// of its front page, e.g. https://mautic.example.com or
// https://example.com/mautic). Without an auth option calls are sent
// unauthenticated.
func NewClient(baseURL string, opts ...Option) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(baseURL, "/"))
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("%w: base URL %q is not an absolute http(s) URL", ErrInvalidOption, baseURL)
	}
	u.RawQuery, u.Fragment, u.User = "", "", nil
	c := &Client{
		base:      u,
		hc:        &http.Client{Timeout: 120 * time.Second, Transport: defaultTransport()},
		userAgent: "mautic-sync",
		auth:      noAuth{},
		rate:      rateState{now: time.Now},
	}
	for _, o := range opts {
		if err := o(c); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func defaultTransport() *http.Transport {
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          32,
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
}

// Rate returns the rate-limit state of the last response that carried it.
func (c *Client) Rate() Rate { return c.rate.last() }

// Version returns the last Mautic-Version seen, or "" before any call.
func (c *Client) Version() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.version
}

func (c *Client) endpoint(path string) string {
	return c.base.String() + path
}

// do sends one API call. body, when not nil, is sent as JSON. On success the
// response body is decoded into v (when not nil). An expired or revoked
// OAuth2 token is replaced and the call repeated once.
func (c *Client) do(ctx context.Context, route, method, path string, query url.Values, body, v any) (*Response, error) {
	var payload []byte
	if body != nil {
		var err error
		if payload, err = json.Marshal(body); err != nil {
			return nil, fmt.Errorf("mautic: %s %s: encode request: %w", method, path, err)
		}
	}
	u := c.endpoint("/api" + path)
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	for attempt := 0; ; attempt++ {
		if err := c.rate.acquire(ctx); err != nil {
			return nil, &NotSentError{Err: err}
		}
		resp, err := c.send(ctx, route, method, u, payload)
		c.rate.release()
		if err != nil {
			return resp, err
		}
		err = CheckResponse(resp.Response)
		var ae *AuthError
		if errors.As(err, &ae) && ae.StatusCode == http.StatusUnauthorized && attempt == 0 && c.auth.invalidate() {
			drain(resp.Body)
			continue // one fresh token, one retry
		}
		if err != nil {
			drain(resp.Body)
			return resp, c.annotate(c.rate.believable(err))
		}
		defer drain(resp.Body)
		if v != nil {
			if d, ok := v.(bodyDecoder); ok {
				err = c.answers.readAnswer(resp.Body, resp.ContentLength, d)
			} else {
				err = json.NewDecoder(io.LimitReader(resp.Body, maxBody)).Decode(v)
			}
			if err != nil {
				return resp, fmt.Errorf("mautic: %s %s: HTTP %d with an undecodable body: %w", method, path, resp.StatusCode, err)
			}
		}
		return resp, nil
	}
}

// annotate adds the configuration hint to authentication errors.
func (c *Client) annotate(err error) error {
	var ae *AuthError
	if errors.As(err, &ae) && ae.Setting == "" {
		ae.Setting = c.auth.setting()
	}
	return err
}

func (c *Client) send(ctx context.Context, route, method, u string, payload []byte) (*Response, error) {
	var rd io.Reader
	if payload != nil {
		rd = bytes.NewReader(payload)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, fmt.Errorf("mautic: build request: %w", err)
	}
	if payload != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.userAgent)
	if err := c.auth.apply(ctx, c, req); err != nil {
		return nil, &NotSentError{Err: err} // no token: the call never left
	}
	start := time.Now()
	var span trace.Span
	if c.tracer != nil {
		ctx, span = c.tracer.Start(ctx, "mautic "+method+" "+route, trace.WithSpanKind(trace.SpanKindClient),
			trace.WithAttributes(attribute.String("http.request.method", method), attribute.String("http.route", route)))
		req = req.WithContext(ctx)
		defer span.End()
	}
	hr, err := c.hc.Do(req)
	if span != nil {
		if hr != nil {
			span.SetAttributes(attribute.Int("http.response.status_code", hr.StatusCode))
		}
		if err != nil || (hr != nil && hr.StatusCode >= 400) {
			span.SetStatus(codes.Error, http.StatusText(statusOr(hr)))
		}
	}
	if c.observer != nil {
		status := 0
		if hr != nil {
			status = hr.StatusCode
		}
		c.observer(Call{Route: route, Method: method, Status: status, Duration: time.Since(start)})
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, context.Cause(ctx)
		}
		return nil, fmt.Errorf("mautic: %s %s: %w", method, req.URL.Path, redactURLError(err))
	}
	resp := &Response{Response: hr, Rate: parseRate(hr.Header), Version: hr.Header.Get("Mautic-Version")}
	c.observe(resp)
	return resp, nil
}

func (c *Client) observe(r *Response) {
	c.rate.observe(r.Rate)
	if r.Version != "" {
		c.mu.Lock()
		c.version = r.Version
		c.mu.Unlock()
	}
}

func parseRate(h http.Header) Rate {
	var r Rate
	r.Limit, _ = strconv.Atoi(h.Get("X-RateLimit-Limit"))
	r.Remaining, _ = strconv.Atoi(h.Get("X-RateLimit-Remaining"))
	if s, err := strconv.ParseInt(h.Get("X-RateLimit-Reset"), 10, 64); err == nil && s > 0 {
		r.Reset = time.Unix(s, 0)
	}
	return r
}

// drain reads a little of the body and closes it so the connection is reused.
func drain(rc io.ReadCloser) {
	_, _ = io.Copy(io.Discard, io.LimitReader(rc, 64<<10))
	_ = rc.Close()
}

// redactURLError drops the URL's query from a *url.Error: it may carry
// contact emails.
func redactURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		if u, perr := url.Parse(ue.URL); perr == nil {
			u.RawQuery = ""
			return &url.Error{Op: ue.Op, URL: u.String(), Err: ue.Err}
		}
	}
	return err
}

func statusOr(r *http.Response) int {
	if r == nil {
		return 0
	}
	return r.StatusCode
}

// RedactedURL returns u without user info and query, for logs.
func RedactedURL(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "(unparseable URL)"
	}
	p.User, p.RawQuery, p.Fragment = nil, "", ""
	return p.String()
}
