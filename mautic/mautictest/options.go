package mautictest

import (
	"fmt"
	"strings"
	"time"
)

// Option configures a Server at construction. Options panic on values that
// can only be programming errors (a negative limit, an empty client id),
// like other test helpers do.
type Option func(*config)

// config is what the options set. It is read-only once the Server exists;
// the runtime switches live in Server.sw.
type config struct {
	basePath        string
	basicUser       string
	basicPass       string
	basicSet        bool
	clients         map[string]*oauthClient
	seedRefresh     []seedToken
	tokenLifetime   time.Duration
	rateLimit       int
	rateWindow      time.Duration
	version         string
	segments        []int
	fields          []Field
	perCall         time.Duration
	perItem         time.Duration
	batchLimit      int
	clock           func() time.Time
	requestLogLimit int
}

// oauthClient is a registered OAuth2 client and the grants it may use.
type oauthClient struct {
	secret string
	grants map[string]bool
}

// seedToken is a refresh token registered by WithRefreshToken.
type seedToken struct {
	clientID string
	token    string
}

func defaultConfig() config {
	return config{
		clients:       map[string]*oauthClient{},
		tokenLifetime: 3600 * time.Second,
		rateWindow:    time.Hour,
		version:       "5.1.0",
		batchLimit:    200,
		clock:         time.Now,
	}
}

// WithBasePath mounts the fake under a sub-path such as "/mautic", as real
// installations often are. URL includes it; requests outside it get a plain
// 404 page.
func WithBasePath(p string) Option {
	return func(c *config) {
		p = strings.TrimRight(p, "/")
		if p != "" && !strings.HasPrefix(p, "/") {
			p = "/" + p
		}
		c.basePath = p
	}
}

// WithBasicAuth enables HTTP basic authentication (Mautic's
// api_enable_basic_auth=true) for one user.
func WithBasicAuth(user, pass string) Option {
	return func(c *config) {
		if user == "" {
			panic("mautictest: WithBasicAuth needs a user name")
		}
		c.basicUser, c.basicPass, c.basicSet = user, pass, true
	}
}

// WithClientCredentials registers an OAuth2 client that an administrator
// created, so it may use the client_credentials grant (as well as
// authorization_code and refresh_token, which every Mautic client has).
func WithClientCredentials(id, secret string) Option {
	return func(c *config) {
		c.addClient(id, secret, "client_credentials", "authorization_code", "refresh_token")
	}
}

// WithRefreshToken registers an OAuth2 client with Mautic's default grants
// (authorization_code and refresh_token) and an initial refresh token, as if
// the authorization-code flow had already run. The token is valid for 14
// days of the server's clock and is replaced on first use.
func WithRefreshToken(clientID, clientSecret, refreshToken string) Option {
	return func(c *config) {
		if refreshToken == "" {
			panic("mautictest: WithRefreshToken needs a refresh token")
		}
		c.addClient(clientID, clientSecret, "authorization_code", "refresh_token")
		c.seedRefresh = append(c.seedRefresh, seedToken{clientID, refreshToken})
	}
}

func (c *config) addClient(id, secret string, grants ...string) {
	if id == "" {
		panic("mautictest: an OAuth2 client needs an id")
	}
	cl, ok := c.clients[id]
	if !ok {
		cl = &oauthClient{grants: map[string]bool{}}
		c.clients[id] = cl
	}
	cl.secret = secret
	for _, g := range grants {
		cl.grants[g] = true
	}
}

// WithTokenLifetime sets the access-token lifetime (Mautic's default is 3600
// seconds). The token endpoint reports it in whole seconds as expires_in.
func WithTokenLifetime(d time.Duration) Option {
	return func(c *config) {
		if d <= 0 {
			panic(fmt.Sprintf("mautictest: token lifetime must be positive, got %v", d))
		}
		c.tokenLifetime = d
	}
}

// WithRateLimit turns on Mautic's fixed-window rate limiter: limit calls per
// window (Mautic's window is one hour), counted per access token, or in one
// shared bucket for basic auth. A limit of 0 turns it off (the default).
func WithRateLimit(limit int, window time.Duration) Option {
	return func(c *config) {
		checkRateLimit(limit, window)
		c.rateLimit, c.rateWindow = limit, window
	}
}

func checkRateLimit(limit int, window time.Duration) {
	if limit < 0 || (limit > 0 && window <= 0) {
		panic(fmt.Sprintf("mautictest: invalid rate limit %d per %v", limit, window))
	}
}

// WithVersion sets the Mautic-Version header value (default "5.1.0").
func WithVersion(v string) Option {
	return func(c *config) { c.version = v }
}

// WithSegments sets which segment ids exist, each named "Segment N". The
// default is segments 1 to 10.
func WithSegments(ids ...int) Option {
	return func(c *config) {
		for _, id := range ids {
			if id <= 0 {
				panic(fmt.Sprintf("mautictest: segment id must be positive, got %d", id))
			}
		}
		c.segments = append([]int{}, ids...) // non-nil: no default segments
	}
}

// WithFields adds custom contact fields besides the core ones.
func WithFields(fields ...Field) Option {
	return func(c *config) { c.fields = append(c.fields, fields...) }
}

// WithLatency adds perCall to every /api call that reaches a controller and
// perItem to each item a write handles (1 for single-contact writes, so a
// batch of n items takes perCall + n*perItem; reads take perCall). Writes
// keep their effect when the client gives up waiting, as PHP's do.
func WithLatency(perCall, perItem time.Duration) Option {
	return func(c *config) { c.perCall, c.perItem = perCall, perItem }
}

// WithBatchLimit sets api_batch_max_limit (default 200).
func WithBatchLimit(n int) Option {
	return func(c *config) {
		if n < 0 {
			panic(fmt.Sprintf("mautictest: batch limit must not be negative, got %d", n))
		}
		c.batchLimit = n
	}
}

// WithClock replaces time.Now for everything Mautic dates: token expiry,
// the rate-limit window, dateAdded and friends. Request.Start and End keep
// using the real time.
func WithClock(now func() time.Time) Option {
	return func(c *config) {
		if now == nil {
			panic("mautictest: WithClock needs a function")
		}
		c.clock = now
	}
}

// WithRequestLogLimit keeps only the last n requests for Requests (0, the
// default, keeps all); RequestCount still counts every request. Useful for
// long load runs.
func WithRequestLogLimit(n int) Option {
	return func(c *config) {
		if n < 0 {
			panic(fmt.Sprintf("mautictest: request log limit must not be negative, got %d", n))
		}
		c.requestLogLimit = n
	}
}
