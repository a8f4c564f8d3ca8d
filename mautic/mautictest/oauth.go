package mautictest

import (
	"net/http"
	"regexp"
)

// grantTypeRe is oauth2-php's filter for grant_type.
var grantTypeRe = regexp.MustCompile(`^(authorization_code|token|password|client_credentials|refresh_token|https?://.+|urn:.+)$`)

// serveOAuth serves /oauth/*. Only the token endpoint is implemented; other
// paths get the router's 404.
func (s *Server) serveOAuth(w http.ResponseWriter, r *http.Request, rel string, body []byte) {
	if rel != "/oauth/v2/token" {
		s.routeError(w, r, rel, nil)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodPost && r.Method != http.MethodHead {
		s.routeError(w, r, rel, []string{"GET", "POST"})
		return
	}
	// oauth2-php reads POST parameters from the body only, GET ones from
	// the query.
	in := parsePHPQuery(r.URL.RawQuery)
	if r.Method == http.MethodPost {
		payload, err := decodeBody(r, body)
		if err != nil {
			writeExceptionError(w, http.StatusBadRequest, "")
			return
		}
		in = asMap(payload)
	}
	param := func(k string) string {
		v, _ := phpString(in[k])
		return v
	}

	grant := param("grant_type")
	if !grantTypeRe.MatchString(grant) {
		tokenError(w, "invalid_request", "Invalid grant_type parameter or parameter missing")
		return
	}
	id, secret := param("client_id"), param("client_secret")
	if u, p, ok := r.BasicAuth(); ok && u != "" {
		// PHP_AUTH_USER wins over the body; no URL-decoding.
		id, secret = u, p
	} else if id == "" {
		tokenError(w, "invalid_client", "Client id was not found in the headers or body")
		return
	}

	s.mu.Lock()
	token, oerr := s.grantLocked(id, secret, grant, param)
	s.mu.Unlock()
	if oerr != nil {
		oerr.write(w)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	writeBody(w, http.StatusOK, "application/json", encodePHP(token, stylePlain))
}

// grantLocked runs oauth2-php's grantAccessToken for an authenticated
// request: it checks the client and the grant and returns the token
// response.
func (s *Server) grantLocked(id, secret, grant string, param func(string) string) (obj, *authError) {
	cl, ok := s.cfg.clients[id]
	if !ok || cl.secret != secret {
		return nil, oauthError("invalid_client", "The client credentials are invalid")
	}
	if !cl.grants[grant] {
		return nil, oauthError("unauthorized_client", "The grant type is unauthorized for this client_id")
	}
	switch grant {
	case "client_credentials":
		return s.issueTokenLocked(id, ""), nil
	case "refresh_token":
		old := param("refresh_token")
		if old == "" {
			return nil, oauthError("invalid_request", `No "refresh_token" parameter found`)
		}
		rt, ok := s.st.refresh[old]
		if !ok || rt.clientID != id {
			return nil, oauthError("invalid_grant", "Invalid refresh token")
		}
		if s.now().After(rt.expires) {
			return nil, oauthError("invalid_grant", "Refresh token has expired")
		}
		return s.issueTokenLocked(id, old), nil
	}
	if param("code") == "" {
		return nil, oauthError("invalid_request", `Missing parameter. "code" is required`)
	}
	return nil, oauthError("invalid_grant", "Code doesn't exist or is invalid for the client")
}

// issueTokenLocked creates an access token and returns oauth2-php's
// response. For a refresh grant (oldRefresh set) it also issues a new
// refresh token and deletes the one used.
func (s *Server) issueTokenLocked(clientID, oldRefresh string) obj {
	now := s.now()
	access := newToken()
	s.st.access[access] = &accessToken{clientID: clientID, expires: now.Add(s.cfg.tokenLifetime)}
	s.st.tokensIssued++
	body := obj{
		{"access_token", access},
		{"expires_in", int(s.cfg.tokenLifetime.Seconds())},
		{"token_type", "bearer"},
		{"scope", nil},
	}
	if oldRefresh != "" {
		refresh := newToken()
		s.st.refresh[refresh] = &refreshToken{clientID: clientID, expires: now.Add(refreshLifetime)}
		delete(s.st.refresh, oldRefresh)
		body = append(body, kv{"refresh_token", refresh})
	}
	return body
}

// oauthError is an oauth2-php error (HTTP 400) as ApiSubscriber rewrites it.
func oauthError(typ, message string) *authError {
	return &authError{status: http.StatusBadRequest, message: message, typ: typ}
}

// tokenError writes an oauth2-php error as rewritten by ApiSubscriber.
func tokenError(w http.ResponseWriter, typ, message string) { oauthError(typ, message).write(w) }

// seedRefreshLocked registers the refresh tokens given to WithRefreshToken.
func (s *Server) seedRefreshLocked() {
	for _, t := range s.cfg.seedRefresh {
		s.st.refresh[t.token] = &refreshToken{clientID: t.clientID, expires: s.now().Add(refreshLifetime)}
	}
}
