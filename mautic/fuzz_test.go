package mautic_test

// Mautic's answers tried widely (issue #7): CheckResponse over arbitrary
// statuses, bodies and rate-limit headers, and the batch and list decoders
// behind a real HTTP server that answers fuzzed bodies. Never a panic;
// always an error or a result consistent with what was asked. The seed
// corpus runs with every `go test`; for a longer search:
//
//	go test -run '^$' -fuzz=FuzzCheckResponse -fuzztime=5m ./mautic/
//	go test -run '^$' -fuzz=FuzzBatchResponses -fuzztime=5m ./mautic/

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/mautic-sync/mautic-sync/mautic"
)

// responseSeeds are bodies Mautic, proxies and PHP produce, and broken ones.
var responseSeeds = []string{
	``, `null`, `{}`, `[]`, `"x"`, `0`,
	`{"errors":[{"code":404,"message":"Item was not found.","details":[]}]}`,
	`{"errors":[{"message":"API disabled. You need to enable the API in the API settings of Mautic's Configuration.","code":403,"type":"api_disabled"}]}`,
	`{"errors":[{"message":"The access token provided has expired.","code":401,"type":"invalid_grant"}]}`,
	`{"errors":{"0":{"code":"422","message":{"email":"bad"},"type":null}}}`,
	`{"error":{"code":500,"message":"old style"}}`,
	`{"error":"invalid_client","error_description":"The client credentials are invalid"}`,
	`{ "errors": [ { "code": 429, "message": "You exceeded the rate limit of 100 API calls per hour.", "details": [] } ]}`,
	`<!DOCTYPE html><html><head><title>503 Service Unavailable</title></head><body>maintenance</body></html>`,
	`{"errors":[{"message":"No route found for \"GET /api/nope\"","code":404,"type":null}]}`,
	`{"contacts":[{"id":1},{"id":2}],"statusCodes":[201,200]}`,
	`{"contacts":{"1":{"id":7}},"statusCodes":[422,201],"errors":{"0":{"code":422,"message":"email: bad","details":{"email":["bad"]},"type":null}}}`,
	`{"contacts":{"0":{"id":-3}},"statusCodes":[201]}`,
	`{"contacts":[{"id":1}],"statusCodes":[201],"errors":[{"code":200,"message":"contradiction"}]}`,
	`{"contacts":{"x":{"id":1}},"statusCodes":[201]}`,
	`{"contacts":{"5":{"id":1,"fields":{"all":{"email":"a@b.c"}}}},"total":"1"}`,
	`{"details":{"1":{"success":1},"2":{"success":"0"}}}`,
	`{"fields":{"0":{"id":1,"alias":"email"}}}`,
	`{"statusCodes":[201,201,201]`,
	// Quirks of the answers that carry contacts (issue #6).
	`{"contacts":[{"id":"5"}],"statusCodes":[201]}`,
	`{"contacts":[{"id":5,"ID":null,"fields":{"id":9}}],"statusCodes":[200]}`,
	`{"contacts":{"0":{"id":4},"00":{"id":5}},"statusCodes":[201,201]}`,
	`{"contacts":[null,{"id":2}],"statusCodes":[201,201],"errors":{"0":null}}`,
	`{"contacts":[{"id":1}],"statusCodes":[201,200],"statusCodes":[null,null]}`,
	`{"contacts":[{"id":3,"fields":{"all":{"email":"A@x"},"all":null}},{"id":4,"fields":{"all":{"email":" B@example.com "}}}]}`,
	`{"contacts":{"7":{"id":7,"fields":{"all":{"email":"a@example.com","x":1e999}}}}} trailing`,
}

func FuzzCheckResponse(f *testing.F) {
	for _, s := range []int{200, 201, 204, 301, 400, 401, 403, 404, 405, 408, 409, 422, 429, 500, 502, 503, 999} {
		for i, b := range responseSeeds {
			if i%3 == s%3 {
				f.Add(s, []byte(b), "1700000000", "0")
			}
		}
	}
	f.Add(429, []byte(``), "99999999999999999999", "-1")
	f.Add(429, []byte(`{}`), "1700000000000", "abc")
	f.Fuzz(func(t *testing.T, status int, body []byte, reset, remaining string) {
		if status < 100 || status > 999 {
			return // not an HTTP status net/http would hand over
		}
		u, _ := url.Parse("https://m.example.com/api/contacts/batch/new")
		h := http.Header{}
		h.Set("X-RateLimit-Limit", "100")
		h.Set("X-RateLimit-Remaining", remaining)
		h.Set("X-RateLimit-Reset", reset)
		r := &http.Response{StatusCode: status, Header: h, Body: io.NopCloser(bytes.NewReader(body)),
			Request: &http.Request{Method: http.MethodPost, URL: u}}
		err := mautic.CheckResponse(r)
		if status >= 200 && status < 300 {
			if err != nil {
				t.Fatalf("status %d: %v", status, err)
			}
			return
		}
		if err == nil {
			t.Fatalf("status %d: no error", status)
		}
		// The body stays readable, whole up to 1 MiB.
		rest, _ := io.ReadAll(r.Body)
		if len(body) <= 1<<20 && !bytes.Equal(rest, body) {
			t.Fatalf("body not restored: %q, want %q", rest, body)
		}
		msg := err.Error()
		if msg == "" || !utf8.ValidString(msg) {
			t.Fatalf("error message %q", msg)
		}
		var (
			rl *mautic.RateLimitError
			ae *mautic.AuthError
			ap *mautic.APIError
		)
		switch {
		case status == http.StatusTooManyRequests:
			if !errors.As(err, &rl) {
				t.Fatalf("429 gave %T", err)
			}
		case status == http.StatusUnauthorized:
			if !errors.As(err, &ae) {
				t.Fatalf("401 gave %T", err)
			}
		case errors.As(err, &ae):
			if status != http.StatusForbidden {
				t.Fatalf("status %d gave an AuthError", status)
			}
		case errors.As(err, &ap):
			if ap.StatusCode != status {
				t.Fatalf("APIError status %d, want %d", ap.StatusCode, status)
			}
			if len(ap.Body) > 210 {
				t.Fatalf("excerpt of %d bytes", len(ap.Body))
			}
		default:
			t.Fatalf("status %d gave %T", status, err)
		}
		action, reason := mautic.Classify(err)
		if action != mautic.Retry && action != mautic.Pause && action != mautic.Reject || reason == "" {
			t.Fatalf("Classify = %v %q", action, reason)
		}
		if action == mautic.Reject && status >= 500 {
			t.Fatalf("a %d rejects the request: an outage would dead-letter events", status)
		}
	})
}

// fuzzServer answers every request with the status and body last set.
type fuzzServer struct {
	*httptest.Server
	mu     sync.Mutex
	status int
	body   []byte
}

func newFuzzServer(tb testing.TB) *fuzzServer {
	fs := &fuzzServer{}
	fs.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fs.mu.Lock()
		status, body := fs.status, fs.body
		fs.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write(body)
	}))
	tb.Cleanup(fs.Close)
	return fs
}

func (fs *fuzzServer) answer(status int, body []byte) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.status, fs.body = status, body
}

// FuzzBatchResponses sends each call kind to a server answering a fuzzed
// status and body: an error, or a result with one consistent entry per
// item sent.
func FuzzBatchResponses(f *testing.F) {
	for i, b := range responseSeeds {
		for op := range uint8(5) {
			status := []int{200, 201, 500, 404}[(i+int(op))%4]
			f.Add(op, uint8(i%4+1), status, []byte(b))
		}
	}
	f.Add(uint8(0), uint8(1), 201, []byte(`{"contacts":{"0":{"id":-3}},"statusCodes":[201]}`))
	f.Add(uint8(1), uint8(2), 200, []byte(`{"contacts":[{"id":4},{}],"statusCodes":[200,200]}`))
	f.Add(uint8(3), uint8(1), 200, []byte(`{"contacts":{"1":{"fields":{"all":{"email":"A@example.com"}}},"2":{"id":-1,"fields":{"all":{"email":"b@example.com"}}}}}`))
	fs := newFuzzServer(f)
	mc, err := mautic.NewClient(fs.URL, mautic.WithBasicAuth("u", "p"), mautic.WithTimeout(5*time.Second))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, op, n uint8, status int, body []byte) {
		if status < 200 || status > 599 || n == 0 || n > 10 {
			return
		}
		fs.answer(status, body)
		ctx := context.Background()
		ids := make([]int, n)
		items := make([]mautic.Contact, n)
		for i := range ids {
			ids[i] = i + 1
			items[i] = mautic.Contact{"id": i + 1, "email": "a@example.com"}
		}
		switch op % 5 {
		case 0, 1:
			call := mc.BatchUpsert
			if op%5 == 1 {
				call = mc.BatchEdit
			}
			res, _, err := call(ctx, items)
			if err != nil {
				if res != nil {
					t.Fatalf("results with an error: %v", err)
				}
				return
			}
			if len(res) != int(n) {
				t.Fatalf("%d results for %d items", len(res), n)
			}
			for i, r := range res {
				if r.OK() && (r.ContactID <= 0 || r.Error != nil) {
					t.Fatalf("item %d: OK with contact id %d and error %v", i, r.ContactID, r.Error)
				}
				if !r.OK() && r.Status >= 200 && r.Status < 300 && r.Error == nil {
					t.Fatalf("item %d: not OK with status %d and no error", i, r.Status)
				}
				if !r.OK() && mautic.ItemAction(r.Status) == 0 {
					t.Fatalf("item %d: failed with status %d, which ItemAction calls success", i, r.Status)
				}
			}
		case 2:
			deleted, _, err := mc.BatchDelete(ctx, ids)
			if err == nil && len(deleted) > len(ids)*4 {
				t.Fatalf("%d deleted for %d ids", len(deleted), len(ids))
			}
		case 3:
			found, _, err := mc.FindByEmail(ctx, []string{"a@example.com", "b@example.com"})
			if err == nil && found == nil {
				t.Fatal("nil map without error")
			}
			for email, cids := range found {
				if email != strings.ToLower(strings.TrimSpace(email)) || len(cids) == 0 {
					t.Fatalf("found %q: %v", email, cids)
				}
				for _, id := range cids {
					if id <= 0 {
						t.Fatalf("found %q with contact id %d", email, id)
					}
				}
			}
		case 4:
			added, _, err := mc.AddToSegment(ctx, 3, ids)
			if err == nil && len(added) != len(ids) {
				t.Fatalf("%d answers for %d ids", len(added), len(ids))
			}
		}
	})
}
