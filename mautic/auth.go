package mautic

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// authenticator adds credentials to a request.
type authenticator interface {
	apply(ctx context.Context, c *Client, req *http.Request) error
	// invalidate drops a cached token after a 401; it reports whether a
	// retry with fresh credentials can help.
	invalidate() bool
	// setting names the configuration to check when Mautic refuses it.
	setting() string
}

type noAuth struct{}

func (noAuth) apply(context.Context, *Client, *http.Request) error { return nil }
func (noAuth) invalidate() bool                                    { return false }
func (noAuth) setting() string {
	return "MAUTIC_USERNAME/MAUTIC_PASSWORD or MAUTIC_CLIENT_ID/MAUTIC_CLIENT_SECRET"
}

type basicAuth struct{ user, pass string }

func (b *basicAuth) apply(_ context.Context, _ *Client, req *http.Request) error {
	req.SetBasicAuth(b.user, b.pass)
	return nil
}
func (*basicAuth) invalidate() bool { return false }
func (*basicAuth) setting() string {
	return "MAUTIC_USERNAME/MAUTIC_PASSWORD (a Mautic user) and that basic auth is enabled in Mautic's API settings"
}

// renewBefore is how long before its expiry a token is replaced.
const renewBefore = 60 * time.Second

// clientCredentials caches one access token and renews it before it
// expires; the mutex makes exactly one renewal run at a time.
type clientCredentials struct {
	cfg clientcredentials.Config

	mu       sync.Mutex
	tok      *oauth2.Token
	renewals atomic.Int64
}

func newClientCredentials(id, secret, tokenURL string) *clientCredentials {
	return &clientCredentials{cfg: clientcredentials.Config{
		ClientID:     id,
		ClientSecret: secret,
		TokenURL:     tokenURL,
		// Mautic reads POST parameters from the body only, and refuses a
		// Basic header when basic auth is disabled.
		AuthStyle: oauth2.AuthStyleInParams,
	}}
}

func (a *clientCredentials) apply(ctx context.Context, c *Client, req *http.Request) error {
	return bearer(ctx, c, req, a.token)
}

// bearer sets the Authorization header from an OAuth2 token getter.
func bearer(ctx context.Context, c *Client, req *http.Request, token func(context.Context, *http.Client) (*oauth2.Token, error)) error {
	tok, err := token(ctx, c.tokenHTTPClient())
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	return nil
}

func (a *clientCredentials) token(ctx context.Context, hc *http.Client) (*oauth2.Token, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if valid(a.tok) {
		return a.tok, nil
	}
	tok, err := a.cfg.Token(context.WithValue(ctx, oauth2.HTTPClient, hc))
	if err != nil {
		return nil, tokenError(err)
	}
	a.tok = tok
	a.renewals.Add(1)
	return tok, nil
}

func (a *clientCredentials) invalidate() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.tok = nil
	return true
}

func (*clientCredentials) setting() string {
	return "MAUTIC_CLIENT_ID/MAUTIC_CLIENT_SECRET (an API client created by a Mautic administrator, which has the client_credentials grant)"
}

// tokenError turns a token endpoint failure into a typed error without the
// request (which carries the client secret in its body).
func tokenError(err error) error {
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.Response == nil {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return err
		}
		return fmt.Errorf("mautic: fetch OAuth2 token: %w", redactURLError(err))
	}
	status := re.Response.StatusCode
	details, jsonOK := decodeErrors(re.Body)
	first := ErrorDetail{}
	if len(details) > 0 {
		first = details[0]
	}
	if first.Type == "" {
		first.Type = re.ErrorCode
	}
	if status >= 500 || !jsonOK {
		return &APIError{Method: http.MethodPost, Path: "/oauth/v2/token", StatusCode: status,
			Errors: details, NotJSON: !jsonOK, Body: excerpt(re.Body)}
	}
	return &AuthError{StatusCode: status, Type: first.Type, Message: first.Message,
		Setting: (&clientCredentials{}).setting()}
}

// tokenHTTPClient is the HTTP client for token requests: the client's own,
// observed under the route "oauth/v2/token".
func (c *Client) tokenHTTPClient() *http.Client {
	if c.observer == nil {
		return c.hc
	}
	hc := *c.hc
	base := hc.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	hc.Transport = observedTransport{base: base, observe: c.observer}
	return &hc
}

type observedTransport struct {
	base    http.RoundTripper
	observe func(Call)
}

func (t observedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := t.base.RoundTrip(req)
	status := 0
	if resp != nil {
		status = resp.StatusCode
	}
	t.observe(Call{Route: "oauth/v2/token", Method: req.Method, Status: status, Duration: time.Since(start)})
	return resp, err
}

// TokenRenewals counts the OAuth2 access tokens fetched so far.
func (c *Client) TokenRenewals() int64 {
	if r, ok := c.auth.(interface{ renewalCount() int64 }); ok {
		return r.renewalCount()
	}
	return 0
}

func (a *clientCredentials) renewalCount() int64 { return a.renewals.Load() }
