package mautictest_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mautic-sync/mautic-sync/mautic/mautictest"
)

// resp is a response read in full.
type resp struct {
	Status int
	Header http.Header
	Body   []byte
}

// JSON decodes the body.
func (r resp) JSON(t *testing.T) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(r.Body, &v); err != nil {
		t.Fatalf("body is not JSON (%v): %s", err, r.Body)
	}
	return v
}

// opt changes a request before it is sent.
type opt func(*http.Request)

func bearer(token string) opt {
	return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+token) }
}

func basic(user, pass string) opt {
	return func(r *http.Request) { r.SetBasicAuth(user, pass) }
}

func header(k, v string) opt {
	return func(r *http.Request) { r.Header.Set(k, v) }
}

// form marks a body to send form-encoded.
type form url.Values

// raw marks a body to send as is, with the given content type.
type raw struct {
	contentType string
	body        string
}

// send makes a request to srv. body is nil, form, raw or a value sent as
// JSON.
func send(t *testing.T, base, method, path string, body any, opts ...opt) resp {
	t.Helper()
	var rd io.Reader
	ct := ""
	switch b := body.(type) {
	case nil:
	case form:
		rd, ct = strings.NewReader(url.Values(b).Encode()), "application/x-www-form-urlencoded"
	case raw:
		rd, ct = strings.NewReader(b.body), b.contentType
	default:
		data, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd, ct = bytes.NewReader(data), "application/json"
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	for _, o := range opts {
		o(req)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp{Status: res.StatusCode, Header: res.Header, Body: data}
}

// newServer starts a fake closed at the end of the test.
func newServer(t *testing.T, opts ...mautictest.Option) *mautictest.Server {
	t.Helper()
	srv := mautictest.NewServer(opts...)
	t.Cleanup(srv.Close)
	return srv
}

// do sends a request to srv.
func do(t *testing.T, srv *mautictest.Server, method, path string, body any, opts ...opt) resp {
	t.Helper()
	return send(t, srv.URL(), method, path, body, opts...)
}

// at walks a decoded JSON value along a dotted path ("contact.fields.all.email",
// "contacts.0.id").
func at(t *testing.T, v any, path string) any {
	t.Helper()
	for _, k := range strings.Split(path, ".") {
		switch x := v.(type) {
		case map[string]any:
			var ok bool
			if v, ok = x[k]; !ok {
				t.Fatalf("no key %q in path %q of %v", k, path, x)
			}
		case []any:
			i, err := strconv.Atoi(k)
			if err != nil || i >= len(x) {
				t.Fatalf("bad index %q in path %q of %v", k, path, x)
			}
			v = x[i]
		default:
			t.Fatalf("cannot walk %q into %T (path %q)", k, v, path)
		}
	}
	return v
}

// num returns a decoded JSON number as an int.
func num(t *testing.T, v any) int {
	t.Helper()
	f, ok := v.(float64)
	if !ok {
		t.Fatalf("%v (%T) is not a number", v, v)
	}
	return int(f)
}

// wantStatus fails unless r has the status.
func wantStatus(t *testing.T, r resp, status int) {
	t.Helper()
	if r.Status != status {
		t.Fatalf("status = %d, want %d; body: %s", r.Status, status, r.Body)
	}
}

// wantBody fails unless r's body is exactly body.
func wantBody(t *testing.T, r resp, body string) {
	t.Helper()
	if got := string(r.Body); got != body {
		t.Fatalf("body =\n%s\nwant\n%s", got, body)
	}
}

// newContact creates a contact through the API and returns its id.
func newContact(t *testing.T, srv *mautictest.Server, payload map[string]any) int {
	t.Helper()
	r := do(t, srv, "POST", "/api/contacts/new", payload)
	if r.Status != http.StatusCreated && r.Status != http.StatusOK {
		t.Fatalf("create contact: %d %s", r.Status, r.Body)
	}
	return num(t, at(t, r.JSON(t), "contact.id"))
}

// waitFor polls cond until it holds, failing after a few seconds.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(time.Millisecond)
	}
}

// fakeClock is a settable clock for WithClock.
type fakeClock struct {
	ch chan time.Time
}

func newFakeClock(start time.Time) *fakeClock {
	c := &fakeClock{ch: make(chan time.Time, 1)}
	c.ch <- start
	return c
}

func (c *fakeClock) Now() time.Time {
	t := <-c.ch
	c.ch <- t
	return t
}

func (c *fakeClock) Advance(d time.Duration) {
	t := <-c.ch
	c.ch <- t.Add(d)
}

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }
