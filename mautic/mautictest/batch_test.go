package mautictest_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/mautic-sync/mautic-sync/mautic/mautictest"
)

// batchParts decodes a batch response keeping contacts and errors raw.
type batchParts struct {
	Contacts    json.RawMessage `json:"contacts"`
	StatusCodes []int           `json:"statusCodes"`
	Errors      json.RawMessage `json:"errors"`
}

func decodeBatch(t *testing.T, r resp) batchParts {
	t.Helper()
	var b batchParts
	if err := json.Unmarshal(r.Body, &b); err != nil {
		t.Fatalf("batch body: %v: %s", err, r.Body)
	}
	return b
}

func equalInts(a, b []int) bool {
	return fmt.Sprint(a) == fmt.Sprint(b)
}

func TestBatchNewAllSucceed(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	newContact(t, srv, map[string]any{"email": "old@example.com"})
	r := do(t, srv, "POST", "/api/contacts/batch/new", []any{
		map[string]any{"email": "new@example.com"},
		map[string]any{"email": "OLD@example.com", "firstname": "Old"},
	})
	wantStatus(t, r, http.StatusCreated)
	b := decodeBatch(t, r)
	if !equalInts(b.StatusCodes, []int{201, 200}) {
		t.Errorf("statusCodes = %v, want [201 200]", b.StatusCodes)
	}
	if !strings.HasPrefix(string(b.Contacts), "[") || b.Errors != nil {
		t.Errorf("contacts must be a list and errors absent: %s", r.Body)
	}
	if r.Header.Get("Mautic-Version") == "" {
		t.Error("missing Mautic-Version")
	}
	if got := srv.Requests()[1].Items; got != 2 {
		t.Errorf("Request.Items = %d, want 2", got)
	}
}

func TestBatchNewPartialFailureShapes(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	r := do(t, srv, "POST", "/api/contacts/batch/new", []any{
		map[string]any{"email": "a@example.com"},
		map[string]any{"email": "bad"},
		map[string]any{"email": "c@example.com"},
	})
	wantStatus(t, r, http.StatusCreated)
	b := decodeBatch(t, r)
	if !equalInts(b.StatusCodes, []int{201, 400, 201}) {
		t.Errorf("statusCodes = %v", b.StatusCodes)
	}
	var contacts map[string]map[string]any
	if err := json.Unmarshal(b.Contacts, &contacts); err != nil {
		t.Fatalf("contacts must be an object keyed by index when an item failed: %s", b.Contacts)
	}
	if _, ok := contacts["1"]; ok || len(contacts) != 2 {
		t.Errorf("contacts keys = %v, want 0 and 2", contacts)
	}
	want := `{"1":{"code":400,"message":"email: bad is invalid.","details":{"email":["bad is invalid."]},"type":null}}`
	if string(b.Errors) != want {
		t.Errorf("errors = %s\nwant     %s", b.Errors, want)
	}
	if n := len(srv.Contacts()); n != 2 {
		t.Errorf("stored %d contacts, want 2", n)
	}
}

func TestBatchNewFailureAtFirstOrLastIndex(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	r := do(t, srv, "POST", "/api/contacts/batch/new", []any{
		map[string]any{"email": "bad"},
		map[string]any{"email": "b@example.com"},
	})
	b := decodeBatch(t, r)
	if !strings.HasPrefix(string(b.Errors), "[") {
		t.Errorf("errors with only index 0 failed is a list: %s", b.Errors)
	}
	if !strings.HasPrefix(string(b.Contacts), `{"1":`) {
		t.Errorf("contacts without index 0 is an object: %s", b.Contacts)
	}

	r = do(t, srv, "POST", "/api/contacts/batch/new", []any{
		map[string]any{"email": "c@example.com"},
		map[string]any{"email": "bad"},
	})
	b = decodeBatch(t, r)
	if !strings.HasPrefix(string(b.Contacts), "[") || !strings.HasPrefix(string(b.Errors), `{"1":`) {
		t.Errorf("last item failed: contacts %s errors %s", b.Contacts, b.Errors)
	}
}

func TestBatchNewAllFailedStill201(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	r := do(t, srv, "POST", "/api/contacts/batch/new", []any{map[string]any{"email": "x"}, map[string]any{"email": "y"}})
	wantStatus(t, r, http.StatusCreated)
	b := decodeBatch(t, r)
	if string(b.Contacts) != "[]" || !equalInts(b.StatusCodes, []int{400, 400}) {
		t.Errorf("contacts %s statusCodes %v", b.Contacts, b.StatusCodes)
	}
}

func TestBatchOverLimit(t *testing.T) {
	t.Parallel()
	srv := newServer(t, mautictest.WithBatchLimit(2))
	items := []any{map[string]any{}, map[string]any{}, map[string]any{}}
	for _, tc := range []struct{ method, path string }{
		{"POST", "/api/contacts/batch/new"},
		{"PATCH", "/api/contacts/batch/edit"},
	} {
		r := do(t, srv, tc.method, tc.path, items)
		wantStatus(t, r, http.StatusInternalServerError)
		wantBody(t, r, `{"errors":[{"code":500,"message":"A max of 2 entities are supported at a time.","details":[]}]}`)
		if r.Header.Get("Mautic-Version") == "" {
			t.Error("the batch-limit 500 is a controller error with Mautic-Version")
		}
	}
	if len(srv.Contacts()) != 0 {
		t.Error("an over-limit batch must not write")
	}
}

func TestBatchEmpty(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	r := do(t, srv, "POST", "/api/contacts/batch/new", []any{})
	wantStatus(t, r, http.StatusCreated)
	wantBody(t, r, `{"contacts":[],"statusCodes":[]}`)
}

func TestBatchEditPatchUnknownID(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	id := newContact(t, srv, map[string]any{"email": "e@example.com"})
	r := do(t, srv, "PATCH", "/api/contacts/batch/edit", []any{
		map[string]any{"id": 999, "firstname": "Ghost"},
		map[string]any{"id": id, "firstname": "Real"},
	})
	wantStatus(t, r, http.StatusOK)
	b := decodeBatch(t, r)
	if !equalInts(b.StatusCodes, []int{404, 200}) {
		t.Errorf("statusCodes = %v", b.StatusCodes)
	}
	if got, want := string(b.Errors), `[{"message":"Item was not found.","code":404,"type":"api"}]`; got != want {
		t.Errorf("errors = %s, want %s", got, want)
	}
	if !strings.HasPrefix(string(b.Contacts), `{"1":`) {
		t.Errorf("contacts = %s", b.Contacts)
	}
	if c, _ := srv.Contact(id); c.Fields["firstname"] != "Real" {
		t.Errorf("firstname = %v", c.Fields["firstname"])
	}
}

func TestBatchEditPutCreatesUnknownIDs(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	id := newContact(t, srv, map[string]any{"email": "e@example.com", "city": "Oslo"})
	r := do(t, srv, "PUT", "/api/contacts/batch/edit", []any{
		map[string]any{"id": id, "email": "e@example.com"},
		map[string]any{"id": "rubbish", "email": "new@example.com"},
	})
	wantStatus(t, r, http.StatusOK)
	b := decodeBatch(t, r)
	if !equalInts(b.StatusCodes, []int{200, 201}) {
		t.Errorf("statusCodes = %v", b.StatusCodes)
	}
	if c, _ := srv.Contact(id); c.Fields["city"] != nil {
		t.Errorf("PUT batch must clear missing fields: %v", c.Fields)
	}
	if len(srv.ContactsByEmail("new@example.com")) != 1 {
		t.Error("PUT with a rubbish id must create the contact")
	}
}

func TestBatchEditItemWithoutID(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	id := newContact(t, srv, map[string]any{"email": "e@example.com"})
	items := []any{map[string]any{"id": id, "firstname": "A"}, map[string]any{"email": "noid@example.com"}}

	r := do(t, srv, "PATCH", "/api/contacts/batch/edit", items)
	b := decodeBatch(t, r)
	if !equalInts(b.StatusCodes, []int{200, 404}) {
		t.Errorf("PATCH statusCodes = %v", b.StatusCodes)
	}

	r = do(t, srv, "PUT", "/api/contacts/batch/edit", items)
	b = decodeBatch(t, r)
	if !equalInts(b.StatusCodes, []int{200, 400}) {
		t.Errorf("PUT statusCodes = %v", b.StatusCodes)
	}
	if got, want := string(b.Errors), `{"1":{"message":"ID is missing from the payload.","code":400,"type":"api"}}`; got != want {
		t.Errorf("errors = %s, want %s", got, want)
	}
	if len(srv.ContactsByEmail("noid@example.com")) != 1 {
		t.Error("PUT still creates the contact whose id is missing")
	}
}

func TestBatchEditValidationKeepsEntity(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	id := newContact(t, srv, map[string]any{"email": "keep@example.com"})
	r := do(t, srv, "PATCH", "/api/contacts/batch/edit", []any{map[string]any{"id": id, "email": "broken"}})
	b := decodeBatch(t, r)
	if !equalInts(b.StatusCodes, []int{400}) || !strings.HasPrefix(string(b.Contacts), "[{") {
		t.Errorf("statusCodes %v contacts %s", b.StatusCodes, b.Contacts)
	}
}

func TestBatchDelete(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	a := newContact(t, srv, map[string]any{"email": "a@example.com"})
	b := newContact(t, srv, map[string]any{"email": "b@example.com"})
	c := newContact(t, srv, map[string]any{"email": "c@example.com"})

	r := do(t, srv, "DELETE", "/api/contacts/batch/delete?ids="+url.QueryEscape(fmt.Sprintf("%d,999,%d", a, b)), nil)
	wantStatus(t, r, http.StatusOK)
	var body struct {
		Contacts map[string]struct {
			ID int `json:"id"`
		} `json:"contacts"`
		Errors json.RawMessage `json:"errors"`
	}
	if err := json.Unmarshal(r.Body, &body); err != nil {
		t.Fatalf("unknown ids leave a gap: contacts must be an object: %s", r.Body)
	}
	if body.Contacts["0"].ID != a || body.Contacts["2"].ID != b || len(body.Contacts) != 2 || body.Errors != nil {
		t.Errorf("contacts = %+v errors %s", body.Contacts, body.Errors)
	}
	if len(srv.Contacts()) != 1 {
		t.Errorf("contacts left = %d, want 1", len(srv.Contacts()))
	}

	r = do(t, srv, "DELETE", "/api/contacts/batch/delete?ids[]="+strconv.Itoa(c), nil)
	wantStatus(t, r, http.StatusOK)
	if !strings.HasPrefix(string(r.Body), `{"contacts":[{`) || len(srv.Contacts()) != 0 {
		t.Errorf("ids[] form: %s", r.Body)
	}
	wantBody(t, do(t, srv, "DELETE", "/api/contacts/batch/delete?ids=abc", nil), `{"contacts":[]}`)
}

func TestBatchRejectItems(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	srv.RejectItems(func(item map[string]any) (int, string) {
		if item["email"] == "no@example.com" {
			return 422, "email: rejected"
		}
		return 0, ""
	})
	r := do(t, srv, "POST", "/api/contacts/batch/new", []any{
		map[string]any{"email": "yes@example.com"}, map[string]any{"email": "no@example.com"},
	})
	b := decodeBatch(t, r)
	if !equalInts(b.StatusCodes, []int{201, 422}) {
		t.Errorf("statusCodes = %v", b.StatusCodes)
	}
	if got, want := string(b.Errors), `{"1":{"code":422,"message":"email: rejected","details":[],"type":null}}`; got != want {
		t.Errorf("errors = %s, want %s", got, want)
	}
}

func TestBatchItemNotAnObjectIs500(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	r := do(t, srv, "POST", "/api/contacts/batch/new", []any{map[string]any{"email": "first@example.com"}, "oops"})
	wantStatus(t, r, http.StatusInternalServerError)
	if r.Header.Get("Mautic-Version") != "" {
		t.Error("an uncaught error has no Mautic-Version")
	}
	if len(srv.Contacts()) != 1 {
		t.Error("items before the failure stay written (no transaction)")
	}
}

func TestFormEncodedBatchTruncatedByMaxInputVars(t *testing.T) {
	t.Parallel()
	srv := newServer(t, mautictest.WithBatchLimit(5000))
	var parts []string
	for i := range 501 {
		parts = append(parts, fmt.Sprintf("%d[email]=u%d%%40example.com&%d[firstname]=U", i, i, i))
	}
	r := do(t, srv, "POST", "/api/contacts/batch/new", raw{"application/x-www-form-urlencoded", strings.Join(parts, "&")})
	wantStatus(t, r, http.StatusCreated)
	if got := len(decodeBatch(t, r).StatusCodes); got != 500 {
		t.Fatalf("items = %d, want 500 (1002 variables truncated to 1000)", got)
	}
}
