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
)

// StoredToken is the OAuth2 state that every replica shares in
// refresh-token mode.
type StoredToken struct {
	RefreshToken string    `json:"refresh_token"`
	AccessToken  string    `json:"access_token,omitempty"`
	Expiry       time.Time `json:"expiry,omitempty"`
}

// TokenStore keeps the current refresh token where every replica sees it.
// Mautic rotates the refresh token on every use and the old one dies at
// once, so the store must update with compare-and-set.
type TokenStore interface {
	// Load returns the stored token and its revision, or ErrNoToken.
	Load(ctx context.Context) (StoredToken, uint64, error)
	// Save stores tok if the current revision is rev (0: nothing stored
	// yet), else returns ErrTokenConflict.
	Save(ctx context.Context, tok StoredToken, rev uint64) error
}

// Errors of a TokenStore.
var (
	ErrNoToken       = errors.New("mautic: no token stored")
	ErrTokenConflict = errors.New("mautic: token store changed concurrently")
)

// MemoryTokenStore is a TokenStore for one process (and for tests).
type MemoryTokenStore struct {
	mu  sync.Mutex
	tok StoredToken
	rev uint64
}

// Load implements TokenStore.
func (m *MemoryTokenStore) Load(context.Context) (StoredToken, uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.rev == 0 {
		return StoredToken{}, 0, ErrNoToken
	}
	return m.tok, m.rev, nil
}

// Save implements TokenStore.
func (m *MemoryTokenStore) Save(_ context.Context, tok StoredToken, rev uint64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if rev != m.rev {
		return ErrTokenConflict
	}
	m.tok, m.rev = tok, m.rev+1
	return nil
}

// WithRefreshToken authenticates with OAuth2 access tokens obtained from a
// refresh token, for Mautic API clients that only have the
// authorization_code and refresh_token grants. seed is the refresh token
// to start from when the store holds none (and to fall back on once when
// the stored one is refused). Every renewal reads the store, exchanges the
// refresh token and saves the rotated one with compare-and-set; a replica
// that loses the race picks up the winner's token instead of locking the
// client out.
func WithRefreshToken(clientID, clientSecret, seed string, store TokenStore) Option {
	return func(c *Client) error {
		if clientID == "" || clientSecret == "" || store == nil {
			return fmt.Errorf("%w: refresh-token auth needs a client id, a secret and a token store", ErrInvalidOption)
		}
		c.auth = &refreshAuth{
			cfg: oauth2.Config{ClientID: clientID, ClientSecret: clientSecret,
				Endpoint: oauth2.Endpoint{TokenURL: c.endpoint("/oauth/v2/token"), AuthStyle: oauth2.AuthStyleInParams}},
			seed:  seed,
			store: store,
		}
		return nil
	}
}

type refreshAuth struct {
	cfg   oauth2.Config
	seed  string
	store TokenStore

	mu       sync.Mutex
	tok      *oauth2.Token
	rejected string // an access token Mautic refused: never reuse it from the store
	renewals atomic.Int64
}

func (a *refreshAuth) apply(ctx context.Context, c *Client, req *http.Request) error {
	return bearer(ctx, c, req, a.token)
}

func (a *refreshAuth) token(ctx context.Context, hc *http.Client) (*oauth2.Token, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if valid(a.tok) {
		return a.tok, nil
	}
	seedTried := false
	for attempt := 0; attempt < 5; attempt++ {
		st, rev, err := a.store.Load(ctx)
		switch {
		case errors.Is(err, ErrNoToken):
			if a.seed == "" {
				return nil, &AuthError{Type: "no_refresh_token", Message: "no refresh token stored and none configured", Setting: "MAUTIC_REFRESH_TOKEN"}
			}
			st, rev, seedTried = StoredToken{RefreshToken: a.seed}, 0, true
		case err != nil:
			return nil, fmt.Errorf("mautic: load refresh token: %w", err)
		}
		if cand := (&oauth2.Token{AccessToken: st.AccessToken, Expiry: st.Expiry}); st.AccessToken != a.rejected && valid(cand) {
			a.tok = cand // another replica renewed it
			return cand, nil
		}
		tok, err := a.exchange(ctx, hc, st.RefreshToken)
		var ae *AuthError
		if errors.As(err, &ae) && ae.Type == "invalid_grant" {
			// Rotated by another replica since we read it (give it a
			// moment to store the new one), or dead.
			if a.storeMoves(ctx, rev) {
				continue
			}
			if !seedTried && a.seed != "" && a.seed != st.RefreshToken {
				seedTried = true
				if tok, err = a.exchange(ctx, hc, a.seed); err == nil {
					return a.keep(ctx, tok, rev)
				}
			}
			ae.Setting = "MAUTIC_REFRESH_TOKEN (Mautic refused the stored refresh token: authorize the client again and set the new refresh token)"
			return nil, ae
		}
		if err != nil {
			return nil, err
		}
		return a.keep(ctx, tok, rev)
	}
	return nil, errors.New("mautic: refresh token kept changing under concurrent renewals; retry")
}

// keep caches a fresh token and saves the rotated refresh token.
func (a *refreshAuth) keep(ctx context.Context, tok *oauth2.Token, rev uint64) (*oauth2.Token, error) {
	a.tok = tok
	a.renewals.Add(1)
	err := a.store.Save(ctx, StoredToken{RefreshToken: tok.RefreshToken, AccessToken: tok.AccessToken, Expiry: tok.Expiry}, rev)
	if err != nil && !errors.Is(err, ErrTokenConflict) {
		// The old refresh token is already dead: losing the new one
		// locks the client out, so say so loudly.
		return tok, fmt.Errorf("mautic: the rotated refresh token could not be stored (%w); the next renewal will fail until MAUTIC_REFRESH_TOKEN is set anew", err)
	}
	// A conflict means another replica stored a token it obtained with a
	// newer refresh token; both are valid.
	return tok, nil
}

func (a *refreshAuth) exchange(ctx context.Context, hc *http.Client, refresh string) (*oauth2.Token, error) {
	ts := a.cfg.TokenSource(context.WithValue(ctx, oauth2.HTTPClient, hc), &oauth2.Token{RefreshToken: refresh})
	tok, err := ts.Token()
	if err != nil {
		return nil, tokenError(err)
	}
	return tok, nil
}

// storeMoves waits briefly for the stored revision to change from rev.
func (a *refreshAuth) storeMoves(ctx context.Context, rev uint64) bool {
	for i := 1; i <= 4; i++ {
		if _, rev2, err := a.store.Load(ctx); err == nil && rev2 != rev {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(time.Duration(i) * 100 * time.Millisecond):
		}
	}
	return false
}

func (a *refreshAuth) invalidate() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.tok != nil {
		a.rejected = a.tok.AccessToken
	}
	a.tok = nil
	return true
}

func (*refreshAuth) setting() string {
	return "MAUTIC_CLIENT_ID/MAUTIC_CLIENT_SECRET/MAUTIC_REFRESH_TOKEN"
}

func (a *refreshAuth) renewalCount() int64 { return a.renewals.Load() }

// valid reports whether a token can be used for a while yet.
func valid(t *oauth2.Token) bool {
	return t != nil && t.AccessToken != "" && (t.Expiry.IsZero() || time.Until(t.Expiry) > renewBefore)
}
