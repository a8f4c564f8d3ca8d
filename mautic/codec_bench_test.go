package mautic

// Benchmarks of encoding batch requests and decoding batch responses, with
// response bodies from the Mautic fake (which, like Mautic, returns every
// contact in full: about 6 KB each, 1.2 MB for 200). Run with
//
//	go test -run '^$' -bench . -benchmem ./mautic/
//
// decodeBatchOnePass is not the client's code: it is a prototype of a
// cheaper decode, kept here to measure what the proposal in
// docs/performance.md would save, and checked against decodeBatch below.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"testing"

	"github.com/mautic-sync/mautic-sync/mautic/mautictest"
)

func benchItems(n, bad int) []Contact {
	items := make([]Contact, n)
	for i := range items {
		items[i] = Contact{"email": fmt.Sprintf("c%d@bench.example", i), "firstname": "Bench", "lastname": fmt.Sprintf("Contact %d", i),
			"city": "Oslo", "company": "Acme", "position": "Buyer", "tags": []string{"bench"}}
	}
	if bad >= 0 {
		items[bad]["email"] = "not-an-email"
	}
	return items
}

var (
	bodiesOnce sync.Once
	bodies     map[string][]byte
	bodiesErr  error
)

// batchBodies returns the fake's answers to a 200-item batch/new: "ok"
// (contacts is an array) and "one-failed" (item 17 refused, so contacts
// and errors are objects keyed by index).
func batchBodies(tb testing.TB) map[string][]byte {
	tb.Helper()
	bodiesOnce.Do(func() {
		fake := mautictest.NewServer()
		defer fake.Close()
		bodies = map[string][]byte{}
		for name, bad := range map[string]int{"ok": -1, "one-failed": 17} {
			req, _ := json.Marshal(benchItems(200, bad))
			resp, err := http.Post(fake.URL()+"/api/contacts/batch/new", "application/json", bytes.NewReader(req))
			if err != nil {
				bodiesErr = err
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusCreated {
				bodiesErr = fmt.Errorf("fake answered %d", resp.StatusCode)
				return
			}
			bodies[name] = b
		}
	})
	if bodiesErr != nil {
		tb.Fatal(bodiesErr)
	}
	return bodies
}

func BenchmarkBatchRequestEncode(b *testing.B) {
	items := benchItems(200, -1)
	body, _ := json.Marshal(items)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := json.Marshal(items); err != nil {
			b.Fatal(err)
		}
	}
}

// decodeCurrent is what Client.batch does with a response body: a
// json.Decoder into batchResponse, then decodeBatch.
func decodeCurrent(body []byte, n int) ([]ItemResult, error) {
	var br batchResponse
	if err := json.NewDecoder(bytes.NewReader(body)).Decode(&br); err != nil {
		return nil, err
	}
	return decodeBatch(br, n)
}

func BenchmarkBatchResponseDecode(b *testing.B) {
	for _, name := range []string{"ok", "one-failed"} {
		body := batchBodies(b)[name]
		b.Run(name+"/current", func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := decodeCurrent(body, 200); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/one-pass-prototype", func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := decodeBatchOnePass(body, 200); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkBatchUpsert is the whole client call: encode 200 items, POST
// over loopback HTTP to a server answering the fake's canned body, read
// and decode the answer.
func BenchmarkBatchUpsert(b *testing.B) {
	body := batchBodies(b)["ok"]
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Mautic-Version", "5.1.0")
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write(body)
	}))
	defer srv.Close()
	c, err := NewClient(srv.URL)
	if err != nil {
		b.Fatal(err)
	}
	items := benchItems(200, -1)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		res, _, err := c.BatchUpsert(context.Background(), items)
		if err != nil || len(res) != 200 {
			b.Fatal(err)
		}
	}
}

// The prototype decodes as decodeBatch does.
func TestDecodeBatchOnePassAgrees(t *testing.T) {
	for name, body := range batchBodies(t) {
		want, err := decodeCurrent(body, 200)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeBatchOnePass(body, 200)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.EqualFunc(got, want, func(a, b ItemResult) bool {
			return a.Status == b.Status && a.ContactID == b.ContactID && (a.Error == nil) == (b.Error == nil) &&
				(a.Error == nil || a.Error.Message == b.Error.Message)
		}) {
			t.Errorf("%s: one-pass decode differs", name)
		}
		if name == "one-failed" && (got[17].OK() || got[17].Error == nil || got[18].ContactID == 0) {
			t.Errorf("one-failed: item 17 %+v, item 18 %+v", got[17], got[18])
		}
	}
}

// onePassResponse decodes contacts straight into their ids, skipping
// every other field in the same pass.
type onePassResponse struct {
	Contacts    []contactID     `json:"contacts"`
	StatusCodes []int           `json:"statusCodes"`
	Errors      json.RawMessage `json:"errors"`
}

type onePassIndexed struct {
	Contacts    map[string]contactID `json:"contacts"`
	StatusCodes []int                `json:"statusCodes"`
	Errors      json.RawMessage      `json:"errors"`
}

// decodeBatchOnePass is the prototype: one json.Unmarshal when contacts is
// an array (every item succeeded, the usual case), a second into a map
// keyed by index when Mautic made it an object. The mapping onto items is
// decodeBatch's.
func decodeBatchOnePass(body []byte, n int) ([]ItemResult, error) {
	var r onePassResponse
	err := json.Unmarshal(body, &r)
	var ute *json.UnmarshalTypeError
	contacts := make(map[int]contactID, n)
	switch {
	case err == nil:
		for i, c := range r.Contacts {
			contacts[i] = c
		}
	case errors.As(err, &ute) && ute.Field == "contacts":
		var ri onePassIndexed
		if err := json.Unmarshal(body, &ri); err != nil {
			return nil, err
		}
		r.StatusCodes, r.Errors = ri.StatusCodes, ri.Errors
		for k, c := range ri.Contacts {
			i, err := strconv.Atoi(k)
			if err != nil {
				return nil, fmt.Errorf("contacts key %q", k)
			}
			contacts[i] = c
		}
	default:
		return nil, err
	}
	if len(r.StatusCodes) != n {
		return nil, fmt.Errorf("response has %d status codes for %d items", len(r.StatusCodes), n)
	}
	errs, err := decodeIndexed[ErrorDetail](r.Errors)
	if err != nil {
		return nil, err
	}
	out := make([]ItemResult, n)
	for i := range out {
		out[i].Status = r.StatusCodes[i]
		if c, ok := contacts[i]; ok {
			out[i].ContactID = c.ID
		}
		if e, ok := errs[i]; ok {
			out[i].Error = &e
			if out[i].Status < 300 {
				out[i].Status = max(e.Code, http.StatusBadRequest)
			}
		} else if out[i].Status >= 200 && out[i].Status < 300 && out[i].ContactID == 0 {
			out[i].Error = &ErrorDetail{Code: out[i].Status, Message: "Mautic reported success but returned no contact"}
			out[i].Status = http.StatusBadGateway
		}
	}
	return out, nil
}
