package mautictest_test

import (
	"context"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/mautic-sync/mautic-sync/mautic/mautictest"
)

const (
	bodyNoCredentials = `{"errors":[{"message":"API authorization denied.","code":401,"type":"access_denied"}]}`
	bodyBadBasic      = `{"errors":[{"message":"Authorization denied, invalid credentials.","code":401,"type":"access_denied"}]}`
	bodyTokenInvalid  = `{"errors":[{"message":"The access token provided is invalid.","code":401,"type":"invalid_grant"}]}`
	bodyTokenExpired  = `{"errors":[{"message":"The access token provided has expired.","code":401,"type":"invalid_grant"}]}`
	bodyBasicDisabled = `{"errors":[{"message":"Basic Auth disabled. You need to enable HTTP basic auth in the API settings of Mautic\u0027s Configuration.","code":403,"type":"access_denied"}]}`
	bodyAPIDisabled   = `{"errors":[{"message":"API disabled. You need to enable the API in the API settings of Mautic\u0027s Configuration.","code":403,"type":"api_disabled"}]}`
	bodyBadClient     = `{"errors":[{"message":"The client credentials are invalid","code":400,"type":"invalid_client"}]}`
)

// noVersion fails if r carries Mautic-Version.
func noVersion(t *testing.T, r resp) {
	t.Helper()
	if v := r.Header.Get("Mautic-Version"); v != "" {
		t.Errorf("unexpected Mautic-Version %q on %d %s", v, r.Status, r.Body)
	}
}

// token fetches a client_credentials token.
func token(t *testing.T, srv *mautictest.Server, id, secret string) string {
	t.Helper()
	r := do(t, srv, "POST", "/oauth/v2/token", form{"grant_type": {"client_credentials"}, "client_id": {id}, "client_secret": {secret}})
	wantStatus(t, r, http.StatusOK)
	return at(t, r.JSON(t), "access_token").(string)
}

func TestOpenModeNeedsNoCredentials(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	wantStatus(t, do(t, srv, "GET", "/api/contacts", nil), http.StatusOK)
	wantStatus(t, do(t, srv, "GET", "/api/contacts", nil, basic("any", "thing")), http.StatusOK)
	wantStatus(t, do(t, srv, "GET", "/api/contacts", nil, bearer("whatever")), http.StatusOK)
	if got := srv.Requests()[1].Auth; got != "basic" {
		t.Errorf("Auth = %q, want basic", got)
	}
}

func TestBasicAuth(t *testing.T) {
	t.Parallel()
	srv := newServer(t, mautictest.WithBasicAuth("admin", "s3cret"))

	wantStatus(t, do(t, srv, "GET", "/api/contacts", nil, basic("admin", "s3cret")), http.StatusOK)

	r := do(t, srv, "GET", "/api/contacts", nil, basic("admin", "wrong"))
	wantStatus(t, r, http.StatusUnauthorized)
	wantBody(t, r, bodyBadBasic)
	noVersion(t, r)

	r = do(t, srv, "GET", "/api/contacts", nil)
	wantStatus(t, r, http.StatusUnauthorized)
	wantBody(t, r, bodyNoCredentials)
	noVersion(t, r)

	srv.SetBasicAuthEnabled(false)
	r = do(t, srv, "GET", "/api/contacts", nil, basic("admin", "s3cret"))
	wantStatus(t, r, http.StatusForbidden)
	wantBody(t, r, bodyBasicDisabled)
	noVersion(t, r)
	// The check is case-insensitive on the scheme.
	wantStatus(t, do(t, srv, "GET", "/api/contacts", nil, header("Authorization", "BASIC YWRtaW46czNjcmV0")), http.StatusForbidden)
}

func TestBearerTokenErrors(t *testing.T) {
	t.Parallel()
	srv := newServer(t, mautictest.WithClientCredentials("cid", "csecret"))

	r := do(t, srv, "GET", "/api/contacts", nil, bearer("nope"))
	wantStatus(t, r, http.StatusUnauthorized)
	wantBody(t, r, bodyTokenInvalid)
	noVersion(t, r)

	tok := token(t, srv, "cid", "csecret")
	wantStatus(t, do(t, srv, "GET", "/api/contacts", nil, bearer(tok)), http.StatusOK)
	wantStatus(t, do(t, srv, "GET", "/api/contacts?access_token="+tok, nil), http.StatusOK)
	r = do(t, srv, "POST", "/api/contacts/new", form{"access_token": {tok}, "email": {"f@example.com"}})
	wantStatus(t, r, http.StatusCreated)

	r = do(t, srv, "GET", "/api/contacts?access_token="+tok, nil, bearer(tok))
	wantStatus(t, r, http.StatusBadRequest)
	wantBody(t, r, `{"errors":[{"message":"Only one method may be used to authenticate at a time (Auth header, GET or POST).","code":400,"type":"invalid_request"}]}`)

	// "Bearer" is matched case-sensitively: "bearer x" is no credential.
	r = do(t, srv, "GET", "/api/contacts", nil, header("Authorization", "bearer "+tok))
	wantBody(t, r, bodyNoCredentials)

	// With only OAuth2 clients, basic auth is disabled as in Mautic.
	r = do(t, srv, "GET", "/api/contacts", nil, basic("cid", "csecret"))
	wantStatus(t, r, http.StatusForbidden)
	wantBody(t, r, bodyBasicDisabled)
}

func TestClientCredentialsToken(t *testing.T) {
	t.Parallel()
	srv := newServer(t, mautictest.WithClientCredentials("cid", "csecret"))
	r := do(t, srv, "POST", "/oauth/v2/token", form{"grant_type": {"client_credentials"}, "client_id": {"cid"}, "client_secret": {"csecret"}})
	wantStatus(t, r, http.StatusOK)
	noVersion(t, r)
	if r.Header.Get("Cache-Control") != "no-store" || r.Header.Get("Pragma") != "no-cache" {
		t.Errorf("headers = %v", r.Header)
	}
	re := regexp.MustCompile(`^\{"access_token":"([A-Za-z0-9]{86})","expires_in":3600,"token_type":"bearer","scope":null\}$`)
	if !re.Match(r.Body) {
		t.Fatalf("token body = %s", r.Body)
	}
	if srv.TokensIssued() != 1 {
		t.Errorf("TokensIssued = %d", srv.TokensIssued())
	}

	// GET with query parameters works too.
	r = do(t, srv, "GET", "/oauth/v2/token?grant_type=client_credentials&client_id=cid&client_secret=csecret", nil)
	wantStatus(t, r, http.StatusOK)
}

func TestTokenEndpointErrors(t *testing.T) {
	t.Parallel()
	srv := newServer(t,
		mautictest.WithClientCredentials("cid", "csecret"),
		mautictest.WithRefreshToken("web", "wsecret", "r0"),
	)
	// POST parameters must be in the body.
	r := do(t, srv, "POST", "/oauth/v2/token?grant_type=client_credentials&client_id=cid&client_secret=csecret", nil)
	wantStatus(t, r, http.StatusBadRequest)
	wantBody(t, r, `{"errors":[{"message":"Invalid grant_type parameter or parameter missing","code":400,"type":"invalid_request"}]}`)
	noVersion(t, r)

	r = do(t, srv, "POST", "/oauth/v2/token", form{"grant_type": {"client_credentials"}, "client_id": {"cid"}, "client_secret": {"bad"}})
	wantStatus(t, r, http.StatusBadRequest)
	wantBody(t, r, bodyBadClient)

	r = do(t, srv, "POST", "/oauth/v2/token", form{"grant_type": {"client_credentials"}, "client_id": {"web"}, "client_secret": {"wsecret"}})
	wantStatus(t, r, http.StatusBadRequest)
	wantBody(t, r, `{"errors":[{"message":"The grant type is unauthorized for this client_id","code":400,"type":"unauthorized_client"}]}`)

	r = do(t, srv, "POST", "/oauth/v2/token", form{"grant_type": {"password"}, "client_id": {"cid"}, "client_secret": {"csecret"}})
	wantStatus(t, r, http.StatusBadRequest)
	if !strings.Contains(string(r.Body), `"type":"unauthorized_client"`) {
		t.Errorf("password grant: %s", r.Body)
	}
	if srv.TokensIssued() != 0 {
		t.Error("no token may be issued")
	}
}

func TestClientCredentialsInBasicHeader(t *testing.T) {
	t.Parallel()
	srv := newServer(t, mautictest.WithClientCredentials("cid", "csecret"))
	req := form{"grant_type": {"client_credentials"}}
	r := do(t, srv, "POST", "/oauth/v2/token", req, basic("cid", "csecret"))
	wantStatus(t, r, http.StatusForbidden)
	wantBody(t, r, bodyBasicDisabled)

	srv.SetBasicAuthEnabled(true)
	wantStatus(t, do(t, srv, "POST", "/oauth/v2/token", req, basic("cid", "csecret")), http.StatusOK)
}

func TestRefreshTokenRotation(t *testing.T) {
	t.Parallel()
	srv := newServer(t, mautictest.WithRefreshToken("web", "wsecret", "first-refresh"))
	refresh := func(rt string) resp {
		return do(t, srv, "POST", "/oauth/v2/token", form{
			"grant_type": {"refresh_token"}, "client_id": {"web"}, "client_secret": {"wsecret"}, "refresh_token": {rt},
		})
	}
	r := refresh("first-refresh")
	wantStatus(t, r, http.StatusOK)
	re := regexp.MustCompile(`^\{"access_token":"[A-Za-z0-9]{86}","expires_in":3600,"token_type":"bearer","scope":null,"refresh_token":"([A-Za-z0-9]{86})"\}$`)
	m := re.FindSubmatch(r.Body)
	if m == nil {
		t.Fatalf("refresh body = %s", r.Body)
	}
	access := at(t, r.JSON(t), "access_token").(string)
	wantStatus(t, do(t, srv, "GET", "/api/contacts", nil, bearer(access)), http.StatusOK)

	r = refresh("first-refresh")
	wantStatus(t, r, http.StatusBadRequest)
	wantBody(t, r, `{"errors":[{"message":"Invalid refresh token","code":400,"type":"invalid_grant"}]}`)

	wantStatus(t, refresh(string(m[1])), http.StatusOK)
	if srv.TokensIssued() != 2 {
		t.Errorf("TokensIssued = %d, want 2", srv.TokensIssued())
	}
	r = do(t, srv, "POST", "/oauth/v2/token", form{"grant_type": {"refresh_token"}, "client_id": {"web"}, "client_secret": {"wsecret"}})
	wantBody(t, r, `{"errors":[{"message":"No \u0022refresh_token\u0022 parameter found","code":400,"type":"invalid_request"}]}`)
}

func TestTokenExpiryAndRevocation(t *testing.T) {
	t.Parallel()
	clock := newFakeClock(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
	srv := newServer(t,
		mautictest.WithClientCredentials("cid", "csecret"),
		mautictest.WithTokenLifetime(10*time.Minute),
		mautictest.WithClock(clock.Now),
	)
	r := do(t, srv, "POST", "/oauth/v2/token", form{"grant_type": {"client_credentials"}, "client_id": {"cid"}, "client_secret": {"csecret"}})
	if got := at(t, r.JSON(t), "expires_in"); got != 600.0 {
		t.Errorf("expires_in = %v, want 600", got)
	}
	tok := at(t, r.JSON(t), "access_token").(string)
	wantStatus(t, do(t, srv, "GET", "/api/contacts", nil, bearer(tok)), http.StatusOK)
	clock.Advance(11 * time.Minute)
	r = do(t, srv, "GET", "/api/contacts", nil, bearer(tok))
	wantStatus(t, r, http.StatusUnauthorized)
	wantBody(t, r, bodyTokenExpired)

	tok = token(t, srv, "cid", "csecret")
	srv.ExpireAllTokens()
	wantBody(t, do(t, srv, "GET", "/api/contacts", nil, bearer(tok)), bodyTokenExpired)

	tok = token(t, srv, "cid", "csecret")
	srv.RevokeAllTokens()
	wantBody(t, do(t, srv, "GET", "/api/contacts", nil, bearer(tok)), bodyTokenInvalid)
}

func TestGolangOAuth2ClientCredentials(t *testing.T) {
	t.Parallel()
	srv := newServer(t, mautictest.WithClientCredentials("cid", "csecret"))
	cfg := clientcredentials.Config{ClientID: "cid", ClientSecret: "csecret", TokenURL: srv.URL() + "/oauth/v2/token"}
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, http.DefaultClient)

	// Auto-detection tries the Basic header first (403 here, basic auth is
	// disabled) and falls back to the body.
	hc := cfg.Client(ctx)
	res, err := hc.Get(srv.URL() + "/api/contacts")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("status = %d", res.StatusCode)
	}

	cfg.AuthStyle = oauth2.AuthStyleInParams
	if _, err := cfg.Token(ctx); err != nil {
		t.Fatalf("AuthStyleInParams: %v", err)
	}
	cfg.AuthStyle = oauth2.AuthStyleInHeader
	if _, err := cfg.Token(ctx); err == nil {
		t.Fatal("AuthStyleInHeader must fail while basic auth is disabled")
	}
	srv.SetBasicAuthEnabled(true)
	if _, err := cfg.Token(ctx); err != nil {
		t.Fatalf("AuthStyleInHeader with basic enabled: %v", err)
	}
}
