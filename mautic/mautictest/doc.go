// Package mautictest is a fake Mautic (5.x) REST API for tests, local
// development and load testing. It is an in-memory contact store behind
// net/http that answers like Mautic does, quirks included, so that a client
// tested against it is ready for the real thing.
//
//	srv := mautictest.NewServer(mautictest.WithClientCredentials("id", "secret"))
//	defer srv.Close()
//	// Point the code under test at srv.URL() (MAUTIC_URL), run it, then:
//	if got := srv.ContactsByEmail("a@example.com"); len(got) != 1 { ... }
//
// Everything described here follows Mautic's source (controllers,
// ApiSubscriber, oauth2-php, the noxlogic rate limiter); where that left a
// choice, the choice is documented on the name concerned.
//
// # Request pipeline
//
// Every request goes through these gates, in Mautic's order:
//
//  1. the SetHook function, if any;
//  2. SetDown: an HTML error page for every path;
//  3. paths outside /api and /oauth (below the base path): an HTML 404;
//  4. FailNext, for /api paths: the canned response;
//  5. api_enabled (SetAPIEnabled): 403 type "api_disabled", for /api and
//     /oauth;
//  6. basic auth disabled (SetBasicAuthEnabled) and an "Authorization:
//     Basic" header: 403 "Basic Auth disabled. ...";
//  7. the router: unknown paths 404 {"errors":[{"message":"No route found
//     for \"GET /api/...\"","code":404,"type":null}]}, a known path with
//     the wrong method 405 with a generic message; route ids must be
//     digits, so /api/contacts/abc is a 404;
//  8. the JSON body: invalid JSON is a 400 with a generic message;
//  9. authentication (below): 401, or 400 when the token is sent twice;
//  10. the rate limiter (below): 429;
//  11. the controller, after the per-call latency.
//
// Steps 7 and 8 run before authentication because Symfony's router and
// FOSRest's body listener do.
//
// Headers: Mautic-Version (WithVersion) is on controller responses only,
// successes and controller errors alike; never on gates 1 to 10, the token
// endpoint or the rate limiter's 429.
//
// # Error bodies
//
// Three shapes, with their key order:
//   - controller errors {"errors":[{"code":404,"message":"Item was not
//     found.","details":[]}]} (with Mautic-Version);
//   - ApiSubscriber (api disabled, basic auth, OAuth2 errors)
//     {"errors":[{"message":...,"code":401,"type":"invalid_grant"}]};
//   - ExceptionController (routing, bad JSON, uncaught errors)
//     {"errors":[{"message":...,"code":500,"type":null}]}, whose message is
//     "Looks like I encountered an error (error #500). If I do it again,
//     please report me to the system administrator!" except for 404s.
//
// JSON strings are escaped as PHP does ("\/", "\u00e9", and in
// ApiSubscriber and ExceptionController bodies "\u0027" for an apostrophe).
//
// # Authentication
//
// With WithBasicAuth, Basic credentials for that user are accepted; a wrong
// password is 401 "Authorization denied, invalid credentials.". OAuth2
// clients come from WithClientCredentials (client_credentials grant) and
// WithRefreshToken (refresh_token grant); tokens are sent as "Authorization:
// Bearer", or access_token in the query or form body (two of these at once
// is a 400). An unknown token is 401 invalid_grant "The access token
// provided is invalid.", an expired one "The access token provided has
// expired.", no credentials 401 "API authorization denied.".
//
// As in Mautic, Basic auth is disabled unless WithBasicAuth is given, so
// with only OAuth2 clients a Basic header is 403, including client
// credentials sent in a Basic header to the token endpoint
// (golang.org/x/oauth2 then retries with them in the body). Call
// SetBasicAuthEnabled(true) to accept them.
//
// Open mode: with neither WithBasicAuth nor any OAuth2 client, /api calls
// need no credentials and any credentials are accepted. Handy for quick
// tests; the other gates still apply.
//
// # Token endpoint
//
// POST /oauth/v2/token reads its parameters from the form (or JSON) body
// only, GET from the query; a POST with query parameters gets 400
// invalid_request "Invalid grant_type parameter or parameter missing".
// Client credentials may also come in a Basic header. client_credentials
// answers {"access_token":"<86 alphanumerics>","expires_in":3600,
// "token_type":"bearer","scope":null} without a refresh token;
// refresh_token answers a new access token and a new refresh token and
// deletes the old refresh token, so reusing it is 400 invalid_grant
// "Invalid refresh token". Bad client id or secret: 400 invalid_client "The
// client credentials are invalid"; a grant the client lacks: 400
// unauthorized_client. Token responses carry Cache-Control: no-store.
//
// # Rate limiter
//
// Off by default (WithRateLimit, SetRateLimit). When on, every request that
// reaches gate 10 counts, including those answered 429; gates 1 to 9 do not
// count. Buckets are per access token (a new token starts a fresh bucket),
// one shared bucket for Basic auth and open mode. A bucket's window starts
// at its first call and lasts the configured window (fixed, not sliding).
// Call limit+1 gets 429 with exactly
//
//	{ "errors": [ { "code": 429, "message": "You exceeded the rate limit of N API calls per hour.", "details": [] } ]}
//
// Responses that went through the limiter carry X-RateLimit-Limit,
// X-RateLimit-Remaining and X-RateLimit-Reset (Unix seconds) unless
// SetRateLimitHeaders(false); there is never a Retry-After.
//
// # Contacts
//
// The contact endpoints are those of reference section 6: list (search,
// where[], start, limit default 30 and 0 for all, orderBy, minimal), get,
// new (upsert), edit (PATCH, PUT), delete, batch new, batch edit, batch
// delete; plus segments, do-not-contact, points and fields. Bodies may be
// JSON or form-encoded (parsed like PHP, including max_input_vars = 1000,
// which silently truncates large form-encoded batches).
//
// Payload rules, as in Mautic:
//   - keys that are not field aliases or known extras are ignored; "id" is
//     ignored in single payloads;
//   - values are validated and normalised by field type; an email without
//     "@" fails with 400 "email: x is invalid." (details
//     {"email":["x is invalid."]});
//   - on POST and PATCH, numeric values whose integer part is 0 (0, "0",
//     0.0, 0.5, false for booleans) are dropped; blank values (null, "")
//     do not overwrite unless "overwriteWithBlank": true. PUT keeps zeros,
//     overwrites blanks and clears every field missing from the payload
//     (tags, DNC, points and segments are kept);
//   - "tags" (list or comma string) only adds, "-name" removes;
//   - "doNotContact": [{"channel":"email","reason":N,"comments":""}] adds an
//     entry (reason 3 by default), reason 0 removes it; an existing reason 1
//     (unsubscribed) entry is never changed by another reason;
//   - "points" sets the total; "ipAddress" and "lastActive" are recorded.
//
// POST /contacts/new and each batch/new item is an upsert on the unique
// identifier fields (email, plus any Field.UniqueIdentifier), matched
// case-insensitively: it updates the newest matching contact (200) or
// creates one (201, Location). Editing a contact with another contact's
// email merges that contact into the edited one and deletes it.
//
// Like Mautic, the fake has no unique index: an upsert looks the email up,
// releases its lock and inserts later. Overlapping upserts of the same new
// email therefore both create a contact: a request that missed waits until
// the other in-flight writes on that email have made their own lookup
// before inserting, so the race is deterministic once the requests overlap
// (WithLatency helps make them overlap). MaxConcurrentWritesPerContact
// reports the worst overlap seen; a client that serialises writes per
// contact keeps it at 1.
//
// Batches answer 201 (new) or 200 (edit, delete) whatever happens to the
// items; statusCodes has one entry per item, errors is keyed by item index
// and a failed item is missing from contacts, which then becomes a JSON
// object keyed by index. More than WithBatchLimit items (default 200) is a
// 500 "A max of 200 entities are supported at a time.".
//
// # Faults and latency
//
// SetDown, FailNext, SetHook, SetLatency, ExpireAllTokens, RevokeAllTokens,
// SetAPIEnabled and SetBasicAuthEnabled change behaviour at runtime.
// Latency sleeps end early when the server is closed; writes complete even
// if the client gave up waiting, as PHP's do.
//
// # Inspection
//
// Contacts, Contact, ContactsByEmail, SegmentMembers, Requests,
// RequestCount, TokensIssued and MaxConcurrentWritesPerContact return
// snapshots; Reset forgets all data.
package mautictest
