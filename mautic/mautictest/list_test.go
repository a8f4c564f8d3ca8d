package mautictest_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"testing"
)

// listIDs returns the ids of a list response in key order, and its total.
func listIDs(t *testing.T, r resp) ([]int, string) {
	t.Helper()
	wantStatus(t, r, http.StatusOK)
	var body struct {
		Total    string          `json:"total"`
		Contacts json.RawMessage `json:"contacts"`
	}
	if err := json.Unmarshal(r.Body, &body); err != nil {
		t.Fatalf("list body (total must be a string): %v: %s", err, r.Body)
	}
	dec := json.NewDecoder(bytesReader(body.Contacts))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("contacts must be an object: %s", body.Contacts)
	}
	var ids []int
	for dec.More() {
		tok, _ := dec.Token()
		id, _ := strconv.Atoi(tok.(string))
		ids = append(ids, id)
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			t.Fatal(err)
		}
	}
	return ids, body.Total
}

func seed(t *testing.T, base string, n int) []any {
	t.Helper()
	var items []any
	for i := range n {
		items = append(items, map[string]any{"email": fmt.Sprintf("%s%02d@example.com", base, i), "firstname": fmt.Sprintf("N%02d", i), "city": "Paris"})
	}
	return items
}

func TestListEmpty(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	r := do(t, srv, "GET", "/api/contacts", nil)
	wantStatus(t, r, http.StatusOK)
	wantBody(t, r, `{"total":"0","contacts":{}}`)
}

func TestListPaging(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	wantStatus(t, do(t, srv, "POST", "/api/contacts/batch/new", seed(t, "p", 35)), http.StatusCreated)

	ids, total := listIDs(t, do(t, srv, "GET", "/api/contacts", nil))
	if total != "35" || len(ids) != 30 || ids[0] != 1 {
		t.Errorf("default page: total %s, %d ids from %v", total, len(ids), ids)
	}
	ids, _ = listIDs(t, do(t, srv, "GET", "/api/contacts?limit=0", nil))
	if len(ids) != 35 {
		t.Errorf("limit=0: %d ids, want all 35", len(ids))
	}
	ids, total = listIDs(t, do(t, srv, "GET", "/api/contacts?start=30&limit=10", nil))
	if total != "35" || !slices.Equal(ids, []int{31, 32, 33, 34, 35}) {
		t.Errorf("start=30: total %s ids %v", total, ids)
	}
	ids, _ = listIDs(t, do(t, srv, "GET", "/api/contacts?limit=3&orderBy=id&orderByDir=DESC", nil))
	if !slices.Equal(ids, []int{35, 34, 33}) {
		t.Errorf("orderBy id DESC: %v", ids)
	}
	wantStatus(t, do(t, srv, "GET", "/api/contacts?orderBy=nope", nil), http.StatusInternalServerError)
}

func TestListWhere(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	do(t, srv, "POST", "/api/contacts/batch/new", seed(t, "w", 5))

	q := url.Values{"where[0][col]": {"email"}, "where[0][expr]": {"eq"}, "where[0][val]": {"W02@EXAMPLE.com"}}
	ids, total := listIDs(t, do(t, srv, "GET", "/api/contacts?"+q.Encode(), nil))
	if total != "1" || !slices.Equal(ids, []int{3}) {
		t.Errorf("email eq: total %s ids %v", total, ids)
	}

	q = url.Values{"where[0][col]": {"id"}, "where[0][expr]": {"in"}, "where[0][val]": {"1,4,99"}}
	ids, _ = listIDs(t, do(t, srv, "GET", "/api/contacts?"+q.Encode(), nil))
	if !slices.Equal(ids, []int{1, 4}) {
		t.Errorf("id in: %v", ids)
	}

	q = url.Values{
		"where[0][expr]":        {"orX"},
		"where[0][val][0][col]": {"id"}, "where[0][val][0][expr]": {"eq"}, "where[0][val][0][val]": {"2"},
		"where[0][val][1][col]": {"firstname"}, "where[0][val][1][expr]": {"like"}, "where[0][val][1][val]": {"n04%"},
	}
	ids, _ = listIDs(t, do(t, srv, "GET", "/api/contacts?"+q.Encode(), nil))
	if !slices.Equal(ids, []int{2, 5}) {
		t.Errorf("orX: %v", ids)
	}

	r := do(t, srv, "GET", "/api/contacts?where[0][val]=x", nil)
	wantStatus(t, r, http.StatusInternalServerError)
	wantBody(t, r, `{"errors":[{"message":"Looks like I encountered an error (error #500). If I do it again, please report me to the system administrator!","code":500,"type":null}]}`)
	noVersion(t, r)
}

func TestListSearch(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	do(t, srv, "POST", "/api/contacts/batch/new", []any{
		map[string]any{"email": "ann@example.com", "firstname": "Ann"},
		map[string]any{"email": "ann@example.com.au", "firstname": "Annie"},
		map[string]any{"email": "bob@example.com", "firstname": "Bob"},
	})
	for _, tc := range []struct {
		search string
		want   []int
	}{
		{"email:ann@example.com", []int{1, 2}}, // prefix match
		{"+email:ann@example.com", []int{1}},
		{"!email:ann", []int{3}},
		{"ids:1,3", []int{1, 3}},
		{"bob", []int{3}},
		{"firstname:ann", []int{1, 2}},
	} {
		ids, _ := listIDs(t, do(t, srv, "GET", "/api/contacts?search="+url.QueryEscape(tc.search), nil))
		if !slices.Equal(ids, tc.want) {
			t.Errorf("search %q = %v, want %v", tc.search, ids, tc.want)
		}
	}
}

func TestListMinimal(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	id := newContact(t, srv, map[string]any{"email": "m@example.com"})
	r := do(t, srv, "GET", "/api/contacts?minimal=1", nil)
	v := r.JSON(t)
	if got := at(t, v, "contacts."+strconv.Itoa(id)+".fields.all.email"); got != "m@example.com" {
		t.Errorf("minimal contact: %s", r.Body)
	}
}

func TestGetContactSegmentsAndList(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	id := newContact(t, srv, map[string]any{"email": "s@example.com"})
	r := do(t, srv, "GET", "/api/contacts/"+strconv.Itoa(id)+"/segments", nil)
	wantBody(t, r, `{"total":0,"lists":[]}`)
	do(t, srv, "POST", "/api/segments/3/contact/"+strconv.Itoa(id)+"/add", nil)
	r = do(t, srv, "GET", "/api/contacts/"+strconv.Itoa(id)+"/segments", nil)
	v := r.JSON(t)
	if at(t, v, "total") != 1.0 || at(t, v, "lists.3.name") != "Segment 3" {
		t.Errorf("segments = %s", r.Body)
	}
}
