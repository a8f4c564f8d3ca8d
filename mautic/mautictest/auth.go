package mautictest

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"regexp"
	"strings"
	"time"
)

// bearerRe is oauth2-php's header match: unanchored and case-sensitive.
var bearerRe = regexp.MustCompile(`Bearer\s(\S+)`)

// accessToken is an issued OAuth2 access token.
type accessToken struct {
	clientID string
	expires  time.Time
	expired  bool // forced by ExpireAllTokens
}

// refreshToken is a live OAuth2 refresh token.
type refreshToken struct {
	clientID string
	expires  time.Time
}

// refreshLifetime is Mautic's default api_oauth2_refresh_token_lifetime.
const refreshLifetime = 14 * 24 * time.Hour

// authError is a 401/400 from the firewall or oauth2-php, rewritten by
// ApiSubscriber into the {"errors":[{"message","code","type"}]} shape.
type authError struct {
	status  int
	message string
	typ     string
}

func (e *authError) write(w http.ResponseWriter) {
	writeSubscriberError(w, e.status, e.message, e.typ)
}

// isBasicHeader reports whether the Authorization header starts with
// "basic", case-insensitively, as ApiSubscriber checks.
func isBasicHeader(r *http.Request) bool {
	h := r.Header.Get("Authorization")
	return len(h) >= 5 && strings.EqualFold(h[:5], "basic")
}

// authenticate runs the API firewall. It returns the rate limiter's key:
// the access token for OAuth2, one shared key for basic auth and for
// unauthenticated calls in open mode.
func (s *Server) authenticate(r *http.Request, payload any) (string, *authError) {
	var tokens []string
	if m := bearerRe.FindStringSubmatch(r.Header.Get("Authorization")); m != nil {
		tokens = append(tokens, m[1])
	}
	if t := formToken(r, payload); t != "" {
		tokens = append(tokens, t)
	}
	if t := r.URL.Query().Get("access_token"); t != "" {
		tokens = append(tokens, t)
	}
	if len(tokens) > 1 {
		return "", &authError{http.StatusBadRequest, msgOneAuthMethod, "invalid_request"}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.openMode {
		if len(tokens) == 1 {
			return "token:" + tokens[0], nil
		}
		return "shared", nil
	}
	if len(tokens) == 1 {
		at, ok := s.st.access[tokens[0]]
		switch {
		case !ok:
			return "", &authError{http.StatusUnauthorized, msgTokenInvalid, "invalid_grant"}
		case at.expired || s.now().After(at.expires):
			return "", &authError{http.StatusUnauthorized, msgTokenExpired, "invalid_grant"}
		}
		return "token:" + tokens[0], nil
	}
	if isBasicHeader(r) {
		user, pass, ok := r.BasicAuth()
		if !ok || !s.cfg.basicSet || user != s.cfg.basicUser || pass != s.cfg.basicPass {
			return "", &authError{http.StatusUnauthorized, msgBadBasic, "access_denied"}
		}
		return "shared", nil
	}
	return "", &authError{http.StatusUnauthorized, msgNoCredentials, "access_denied"}
}

// newToken generates an oauth2-php style token: base64 of a SHA-256 hex
// digest with the padding stripped, 86 alphanumeric characters.
func newToken() string {
	var seed [32]byte
	_, _ = rand.Read(seed[:])
	sum := sha256.Sum256(seed[:])
	return strings.TrimRight(base64.StdEncoding.EncodeToString([]byte(hex.EncodeToString(sum[:]))), "=")
}

// ExpireAllTokens makes every access token issued so far answer 401
// invalid_grant "The access token provided has expired.". Refresh tokens
// stay valid.
func (s *Server) ExpireAllTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range s.st.access {
		t.expired = true
	}
}

// RevokeAllTokens forgets every access token issued so far: they answer 401
// invalid_grant "The access token provided is invalid.". Refresh tokens stay
// valid, so a client holding one can recover.
func (s *Server) RevokeAllTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.st.access)
}

// TokensIssued is the number of access tokens the token endpoint issued.
func (s *Server) TokensIssued() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st.tokensIssued
}
