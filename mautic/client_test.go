package mautic_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mautic-sync/mautic-sync/mautic"
)

// setup serves mux under a base path, as Mautic installed in a sub-folder.
func setup(t *testing.T, opts ...mautic.Option) (*mautic.Client, *http.ServeMux) {
	t.Helper()
	mux := http.NewServeMux()
	outer := http.NewServeMux()
	outer.Handle("/mautic/", http.StripPrefix("/mautic", mux))
	outer.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("request outside the base path: %s %s", r.Method, r.URL.Path)
		http.NotFound(w, r)
	})
	srv := httptest.NewServer(outer)
	t.Cleanup(srv.Close)
	c, err := mautic.NewClient(srv.URL+"/mautic/", opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c, mux
}

func TestBatchUpsertPartialFailure(t *testing.T) {
	c, mux := setup(t, mautic.WithBasicAuth("u", "p"))
	mux.HandleFunc("POST /api/contacts/batch/new", func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "u" || p != "p" {
			t.Error("basic auth not sent")
		}
		if ct := r.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type %q", ct)
		}
		w.Header().Set("Mautic-Version", "5.1.0")
		w.WriteHeader(201)
		// Item 1 failed: contacts becomes an object keyed by index.
		fmt.Fprint(w, `{"contacts":{"0":{"id":10,"fields":{}},"2":{"id":12}},"statusCodes":[201,400,200],`+
			`"errors":{"1":{"code":400,"message":"email: bad is not valid.","details":{"email":["bad"]},"type":null}}}`)
	})
	res, r, err := c.BatchUpsert(context.Background(), []mautic.Contact{{"email": "a@x"}, {"email": "bad"}, {"email": "c@x"}})
	if err != nil {
		t.Fatal(err)
	}
	if r.Version != "5.1.0" || c.Version() != "5.1.0" {
		t.Errorf("version %q / %q", r.Version, c.Version())
	}
	if !res[0].OK() || res[0].ContactID != 10 || res[0].Status != 201 {
		t.Errorf("item 0: %+v", res[0])
	}
	if res[1].OK() || res[1].Status != 400 || res[1].Error == nil || !strings.Contains(res[1].Error.Message, "email") {
		t.Errorf("item 1: %+v", res[1])
	}
	if !res[2].OK() || res[2].ContactID != 12 || res[2].Status != 200 {
		t.Errorf("item 2: %+v", res[2])
	}
}

func TestBatchFirstItemFailedErrorsArray(t *testing.T) {
	c, mux := setup(t)
	mux.HandleFunc("PATCH /api/contacts/batch/edit", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"contacts":{"1":{"id":5}},"statusCodes":[404,200],"errors":[{"message":"Item was not found.","code":404,"type":"api"}]}`)
	})
	res, _, err := c.BatchEdit(context.Background(), []mautic.Contact{{"id": 4}, {"id": 5}})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Status != 404 || res[0].OK() || !res[1].OK() || res[1].ContactID != 5 {
		t.Errorf("results %+v", res)
	}
}

func TestBatchMismatchedStatusCodes(t *testing.T) {
	c, mux := setup(t)
	mux.HandleFunc("POST /api/contacts/batch/new", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"contacts":[],"statusCodes":[201]}`)
	})
	if _, _, err := c.BatchUpsert(context.Background(), []mautic.Contact{{"email": "a@x"}, {"email": "b@x"}}); err == nil {
		t.Error("want an error for a response that does not match the items")
	}
}

func TestRateLimitRefusedLocallyUntilReset(t *testing.T) {
	c, mux := setup(t)
	var calls atomic.Int32
	reset := time.Now().Add(time.Hour).Unix()
	mux.HandleFunc("GET /api/contacts", func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.Header().Set("X-RateLimit-Limit", "5")
		w.Header().Set("X-RateLimit-Remaining", "0")
		w.Header().Set("X-RateLimit-Reset", fmt.Sprint(reset))
		fmt.Fprint(w, `{"total":"0","contacts":{}}`)
	})
	if _, _, err := c.FindByEmail(context.Background(), []string{"a@x"}); err != nil {
		t.Fatal(err)
	}
	_, _, err := c.FindByEmail(context.Background(), []string{"a@x"})
	var re *mautic.RateLimitError
	if !errors.As(err, &re) || !re.Local || re.Reset.Unix() != reset+1 {
		t.Fatalf("second call: %v, want a local *RateLimitError", err)
	}
	if calls.Load() != 1 {
		t.Errorf("%d requests sent, want 1", calls.Load())
	}
}

func TestClientCredentialsRenewOn401(t *testing.T) {
	c, mux := setup(t, mautic.WithClientCredentials("1_client", "very-secret"))
	var tokens atomic.Int32
	mux.HandleFunc("POST /oauth/v2/token", func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		if r.URL.RawQuery != "" || r.PostForm.Get("client_secret") != "very-secret" || r.PostForm.Get("grant_type") != "client_credentials" {
			t.Errorf("token request: query %q form %v", r.URL.RawQuery, r.PostForm)
		}
		if _, _, ok := r.BasicAuth(); ok {
			t.Error("client credentials sent in a Basic header (Mautic refuses it when basic auth is off)")
		}
		n := tokens.Add(1)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"access_token":"tok%d","expires_in":3600,"token_type":"bearer","scope":null}`, n)
	})
	mux.HandleFunc("DELETE /api/contacts/batch/delete", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") == "Bearer tok1" {
			w.WriteHeader(401)
			fmt.Fprint(w, `{"errors":[{"message":"The access token provided has expired.","code":401,"type":"invalid_grant"}]}`)
			return
		}
		fmt.Fprint(w, `{"contacts":[{"id":3}]}`)
	})
	got, _, err := c.BatchDelete(context.Background(), []int{3, 4})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != 3 {
		t.Errorf("deleted %v, want [3]", got)
	}
	if tokens.Load() != 2 {
		t.Errorf("%d tokens fetched, want 2 (one renewal after the 401)", tokens.Load())
	}
}

func TestBadClientCredentialsIsAuthErrorWithoutSecret(t *testing.T) {
	c, mux := setup(t, mautic.WithClientCredentials("1_client", "very-secret"))
	mux.HandleFunc("POST /oauth/v2/token", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(400)
		fmt.Fprint(w, `{"errors":[{"message":"The client credentials are invalid","code":400,"type":"invalid_client"}]}`)
	})
	_, _, err := c.BatchUpsert(context.Background(), []mautic.Contact{{"email": "a@x"}})
	var au *mautic.AuthError
	if !errors.As(err, &au) || au.Type != "invalid_client" {
		t.Fatalf("error %v, want *AuthError invalid_client", err)
	}
	if !strings.Contains(err.Error(), "MAUTIC_CLIENT_ID") {
		t.Errorf("error does not name the setting: %v", err)
	}
	if strings.Contains(err.Error(), "very-secret") {
		t.Errorf("error leaks the secret: %v", err)
	}
	if a, _ := mautic.Classify(err); a != mautic.Pause {
		t.Errorf("Classify = %v, want pause", a)
	}
}

func TestSegmentsAndPoints(t *testing.T) {
	c, mux := setup(t)
	mux.HandleFunc("POST /api/segments/3/contacts/add", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if string(b) != `{"ids":[1,2]}` {
			t.Errorf("body %s", b)
		}
		fmt.Fprint(w, `{"success":1,"details":{"1":{"success":true},"2":{"success":false}}}`)
	})
	mux.HandleFunc("POST /api/contacts/1/points/minus/5", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"success":1}`)
	})
	mux.HandleFunc("POST /api/segments/3/contact/9/remove", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(404)
		fmt.Fprint(w, `{"errors":[{"code":404,"message":"Contact not found.","details":[]}]}`)
	})
	added, _, err := c.AddToSegment(context.Background(), 3, []int{1, 2})
	if err != nil || !added[1] || added[2] {
		t.Errorf("AddToSegment = %v, %v", added, err)
	}
	if _, err := c.AdjustPoints(context.Background(), 1, -5, "ev"); err != nil {
		t.Error(err)
	}
	_, err = c.RemoveFromSegment(context.Background(), 3, 9)
	var ae *mautic.APIError
	if !errors.As(err, &ae) || ae.StatusCode != 404 || ae.Message() != "Contact not found." {
		t.Errorf("RemoveFromSegment error %v", err)
	}
}

func TestFindByEmailExactAndDuplicates(t *testing.T) {
	c, mux := setup(t)
	mux.HandleFunc("GET /api/contacts", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if q.Get("where[0][col]") != "email" || q.Get("where[0][expr]") != "in" || q.Get("where[0][val]") != "a@x,b@x" || q.Get("limit") != "0" {
			t.Errorf("query %v", q)
		}
		fmt.Fprint(w, `{"total":"3","contacts":{"4":{"id":4,"fields":{"all":{"email":"A@x"}}},"9":{"id":9,"fields":{"all":{"email":"a@x"}}},"5":{"id":5,"fields":{"all":{"email":"b@x"}}}}}`)
	})
	got, _, err := c.FindByEmail(context.Background(), []string{"a@x", "b@x"})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got["a@x"]) != "[9 4]" || fmt.Sprint(got["b@x"]) != "[5]" {
		t.Errorf("FindByEmail = %v, want a@x newest first [9 4], b@x [5]", got)
	}
}

func TestTransportErrorRedactsQuery(t *testing.T) {
	c, err := mautic.NewClient("http://127.0.0.1:1", mautic.WithTimeout(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = c.FindByEmail(context.Background(), []string{"private@example.com"})
	if err == nil || strings.Contains(err.Error(), "private") {
		t.Errorf("error %v must exist and not carry the query", err)
	}
	if a, _ := mautic.Classify(err); a != mautic.Retry {
		t.Errorf("Classify = %v, want retry", a)
	}
}

func TestNewClientRejectsBadOptions(t *testing.T) {
	for _, tc := range []struct {
		url  string
		opts []mautic.Option
	}{
		{"not a url", nil},
		{"ftp://x", nil},
		{"https://x", []mautic.Option{mautic.WithTimeout(0)}},
		{"https://x", []mautic.Option{mautic.WithBasicAuth("", "p")}},
		{"https://x", []mautic.Option{mautic.WithClientCredentials("id", "")}},
	} {
		if _, err := mautic.NewClient(tc.url, tc.opts...); !errors.Is(err, mautic.ErrInvalidOption) {
			t.Errorf("NewClient(%q): %v, want ErrInvalidOption", tc.url, err)
		}
	}
}
