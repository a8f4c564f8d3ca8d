package mautic

// Benchmarks of encoding batch requests and decoding the answers that carry
// contacts, with answers from the Mautic fake (which, like Mautic, returns
// every contact in full: about 6 KB each, 1.2 MB for 200). Run with
//
//	go test -run '^$' -bench 'Batch|Decode' -benchmem ./mautic/
//
// Each answer is decoded three ways:
//   - reference: the decode before issue #6 (answers_test.go), through a
//     json.Decoder as Client.do decodes;
//   - client: the gjson decoders behind Client.do's json.Decoder, which is
//     what the client does today;
//   - body: the gjson decoders given the whole body (readAnswer), which
//     skips the json.Decoder.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
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
	answersOnce sync.Once
	answers     map[string][]byte
	answersErr  error
)

// fakeAnswers returns the fake's answers to:
//   - "batch-ok": a 200-item batch/new (contacts is an array);
//   - "batch-one-failed": the same with item 17 refused (contacts and
//     errors are objects keyed by index);
//   - "search": a FindByEmail of 50 emails (contacts keyed by id);
//   - "delete": a BatchDelete of 50 ids.
func fakeAnswers(tb testing.TB) map[string][]byte {
	tb.Helper()
	answersOnce.Do(func() {
		fake := mautictest.NewServer()
		defer fake.Close()
		answers = map[string][]byte{}
		call := func(name, method, path string, q url.Values, body any) {
			if answersErr != nil {
				return
			}
			var rd io.Reader
			if body != nil {
				b, _ := json.Marshal(body)
				rd = bytes.NewReader(b)
			}
			req, _ := http.NewRequest(method, fake.URL()+"/api"+path+"?"+q.Encode(), rd)
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				answersErr = err
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode >= 300 {
				answersErr = fmt.Errorf("%s: fake answered %d: %.200s", name, resp.StatusCode, b)
				return
			}
			answers[name] = b
		}
		call("batch-ok", http.MethodPost, "/contacts/batch/new", nil, benchItems(200, -1))
		call("batch-one-failed", http.MethodPost, "/contacts/batch/new", nil, benchItems(200, 17))
		emails, ids := make([]string, 50), make([]string, 50)
		for i := range emails {
			emails[i] = fmt.Sprintf("c%d@bench.example", i)
			ids[i] = fmt.Sprint(151 + i)
		}
		call("search", http.MethodGet, "/contacts", url.Values{"where[0][col]": {"email"}, "where[0][expr]": {"in"},
			"where[0][val]": {strings.Join(emails, ",")}, "limit": {"0"}, "orderBy": {"id"}, "orderByDir": {"DESC"}}, nil)
		call("delete", http.MethodDelete, "/contacts/batch/delete", url.Values{"ids": {strings.Join(ids, ",")}}, nil)
	})
	if answersErr != nil {
		tb.Fatal(answersErr)
	}
	return answers
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

// BenchmarkDecodeAnswers decodes the fake's answers the three ways.
func BenchmarkDecodeAnswers(b *testing.B) {
	all := fakeAnswers(b)
	for _, name := range []string{"batch-ok", "batch-one-failed", "search", "delete"} {
		body := all[name]
		op, n := strings.Split(name, "-")[0], 200
		if op == "search" {
			op = "list"
		}
		for _, way := range []string{"reference", "client", "body"} {
			b.Run(name+"/"+way, func(b *testing.B) {
				b.SetBytes(int64(len(body)))
				b.ReportAllocs()
				for b.Loop() {
					var d decoded
					switch way {
					case "reference":
						d = refDecode(op, body, n)
					case "client":
						d = newDecode(op, body, n, true)
					default:
						d = readAnswerBench(op, body, n)
					}
					if d.err != nil {
						b.Fatal(d.err)
					}
				}
			})
		}
	}
}

// readAnswerBench decodes body as readAnswer would from an HTTP response.
func readAnswerBench(op string, body []byte, n int) decoded {
	var d decoded
	switch op {
	case "batch":
		a := answer[[]ItemResult]{parse: func(js string) ([]ItemResult, error) { return parseBatch(js, n) }}
		if d.err = new(answerReader).readAnswer(bytes.NewReader(body), int64(len(body)), &a); d.err == nil {
			d.batch, d.err = a.result()
		}
	case "delete":
		a := answer[[]int]{parse: parseDeleted}
		if d.err = new(answerReader).readAnswer(bytes.NewReader(body), int64(len(body)), &a); d.err == nil {
			d.deleted, d.err = a.result()
		}
	default:
		a := answer[[]listedContact]{parse: parseContactList}
		if d.err = new(answerReader).readAnswer(bytes.NewReader(body), int64(len(body)), &a); d.err == nil {
			d.listed, d.err = a.result()
		}
	}
	return d
}

// BenchmarkBatchUpsert is the whole client call: encode 200 items, POST
// over loopback HTTP to a server answering the fake's canned body, read
// and decode the answer.
func BenchmarkBatchUpsert(b *testing.B) {
	body := fakeAnswers(b)["batch-ok"]
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
