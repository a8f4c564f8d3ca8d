package mautic

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// authenticator adds credentials to a request.
type authenticator interface {
	apply(ctx context.Context, hc *http.Client, req *http.Request) error
	// invalidate drops a cached token after a 401; it reports whether a
	// retry with fresh credentials can help.
	invalidate() bool
	// setting names the configuration to check when Mautic refuses it.
	setting() string
}

type noAuth struct{}

func (noAuth) apply(context.Context, *http.Client, *http.Request) error { return nil }
func (noAuth) invalidate() bool                                         { return false }
func (noAuth) setting() string {
	return "MAUTIC_USERNAME/MAUTIC_PASSWORD or MAUTIC_CLIENT_ID/MAUTIC_CLIENT_SECRET"
}

type basicAuth struct{ user, pass string }

func (b *basicAuth) apply(_ context.Context, _ *http.Client, req *http.Request) error {
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

	mu  sync.Mutex
	tok *oauth2.Token
	// fetched counts renewals (for metrics and tests).
	fetched int
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

func (a *clientCredentials) apply(ctx context.Context, hc *http.Client, req *http.Request) error {
	tok, err := a.token(ctx, hc)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	return nil
}

func (a *clientCredentials) token(ctx context.Context, hc *http.Client) (*oauth2.Token, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.tok != nil && (a.tok.Expiry.IsZero() || time.Until(a.tok.Expiry) > renewBefore) {
		return a.tok, nil
	}
	tok, err := a.cfg.Token(context.WithValue(ctx, oauth2.HTTPClient, hc))
	if err != nil {
		return nil, tokenError(err)
	}
	a.tok = tok
	a.fetched++
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
