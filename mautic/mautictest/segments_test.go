package mautictest_test

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/mautic-sync/mautic-sync/mautic/mautictest"
)

func TestSegmentMembership(t *testing.T) {
	t.Parallel()
	srv := newServer(t, mautictest.WithSegments(5, 7))
	id := newContact(t, srv, map[string]any{"email": "seg@example.com"})
	path := func(seg, contact int, op string) string {
		return fmt.Sprintf("/api/segments/%d/contact/%d/%s", seg, contact, op)
	}

	r := do(t, srv, "POST", path(5, id, "add"), nil)
	wantStatus(t, r, http.StatusOK)
	wantBody(t, r, `{"success":1}`)
	if !slices.Equal(srv.SegmentMembers(5), []int{id}) {
		t.Errorf("members = %v", srv.SegmentMembers(5))
	}
	if c, _ := srv.Contact(id); !slices.Equal(c.Segments, []int{5}) {
		t.Errorf("contact segments = %v", c.Segments)
	}

	r = do(t, srv, "POST", path(1, id, "add"), nil)
	wantStatus(t, r, http.StatusNotFound)
	wantBody(t, r, `{"errors":[{"code":404,"message":"Item was not found.","details":[]}]}`)

	r = do(t, srv, "POST", path(5, 999, "add"), nil)
	wantStatus(t, r, http.StatusNotFound)
	wantBody(t, r, `{"errors":[{"code":404,"message":"Contact not found.","details":[]}]}`)

	wantBody(t, do(t, srv, "POST", path(5, id, "remove"), nil), `{"success":1}`)
	wantBody(t, do(t, srv, "POST", path(5, id, "remove"), nil), `{"success":1}`)
	if len(srv.SegmentMembers(5)) != 0 {
		t.Error("remove did not remove")
	}
}

func TestSegmentAddMany(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	a := newContact(t, srv, map[string]any{"email": "a@example.com"})
	b := newContact(t, srv, map[string]any{"email": "b@example.com"})
	r := do(t, srv, "POST", "/api/segments/2/contacts/add", map[string]any{"ids": []int{a, 99, b}})
	wantStatus(t, r, http.StatusOK)
	wantBody(t, r, fmt.Sprintf(`{"success":1,"details":{"%d":{"success":true},"99":{"success":false},"%d":{"success":true}}}`, a, b))
	if !slices.Equal(srv.SegmentMembers(2), []int{a, b}) {
		t.Errorf("members = %v", srv.SegmentMembers(2))
	}

	r = do(t, srv, "POST", "/api/segments/2/contacts/add", map[string]any{})
	wantStatus(t, r, http.StatusBadRequest)
	wantBody(t, r, `{"errors":[{"code":400,"message":"This is a bad request.","details":[]}]}`)

	r = do(t, srv, "POST", "/api/segments/2/contacts/add", form{"ids[]": {strconv.Itoa(a)}})
	wantStatus(t, r, http.StatusOK)
}

func TestSegmentList(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	v := do(t, srv, "GET", "/api/segments", nil).JSON(t)
	if at(t, v, "total") != 10.0 || at(t, v, "lists.10.name") != "Segment 10" {
		t.Errorf("segments = %v", v)
	}
	wantStatus(t, do(t, srv, "GET", "/api/segments/11", nil), http.StatusNotFound)
}

func TestDNCEndpoints(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	id := newContact(t, srv, map[string]any{"email": "dnc@example.com"})
	base := "/api/contacts/" + strconv.Itoa(id) + "/dnc/email/"

	r := do(t, srv, "POST", base+"add", map[string]any{"reason": 0})
	wantStatus(t, r, http.StatusBadRequest)
	wantBody(t, r, `{"errors":[{"code":400,"message":"Invalid reason code given","details":["Reason code needs to be an integer and higher than 0."]}]}`)
	wantStatus(t, do(t, srv, "POST", base+"add", map[string]any{"reason": "abc"}), http.StatusBadRequest)

	r = do(t, srv, "POST", base+"add", map[string]any{"reason": 1, "comments": "asked"})
	wantStatus(t, r, http.StatusOK)
	if got := at(t, r.JSON(t), "contact.doNotContact.0.reason"); got != 1.0 {
		t.Errorf("reason = %v: %s", got, r.Body)
	}
	if strings.Contains(string(r.Body), `"all":`) {
		t.Error("DNC responses have no fields.all")
	}
	wantStatus(t, do(t, srv, "POST", base+"add", form{"reason": {"3"}}), http.StatusOK)
	if c, _ := srv.Contact(id); len(c.DNC) != 1 || c.DNC[0].Reason != 1 || c.DNC[0].Comments != "asked" {
		t.Errorf("unsubscribed entry overridden: %+v", c.DNC)
	}

	r = do(t, srv, "POST", base+"remove", nil)
	wantStatus(t, r, http.StatusOK)
	if !strings.HasPrefix(string(r.Body), `{"recordFound":true,"contact":{`) {
		t.Errorf("remove = %s", r.Body)
	}
	r = do(t, srv, "POST", base+"remove", nil)
	if !strings.HasPrefix(string(r.Body), `{"recordFound":false,`) {
		t.Errorf("second remove = %s", r.Body)
	}
	wantStatus(t, do(t, srv, "POST", "/api/contacts/999/dnc/email/add", nil), http.StatusNotFound)

	wantStatus(t, do(t, srv, "POST", "/api/contacts/"+strconv.Itoa(id)+"/dnc/sms/add", nil), http.StatusOK)
	if c, _ := srv.Contact(id); len(c.DNC) != 1 || c.DNC[0].Channel != "sms" || c.DNC[0].Reason != 3 {
		t.Errorf("sms DNC = %+v, want reason 3 by default", c.DNC)
	}
}

func TestPointsEndpoint(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	id := newContact(t, srv, map[string]any{"email": "pts@example.com", "points": 10})
	p := func(op, delta string) string {
		return "/api/contacts/" + strconv.Itoa(id) + "/points/" + op + "/" + delta
	}

	r := do(t, srv, "POST", p("plus", "5"), map[string]any{"eventName": "evt-1", "actionName": "sync"})
	wantStatus(t, r, http.StatusOK)
	wantBody(t, r, `{"success":1}`)
	wantStatus(t, do(t, srv, "POST", p("minus", "3"), form{"eventName": {"evt-2"}}), http.StatusOK)
	wantStatus(t, do(t, srv, "POST", p("times", "2"), nil), http.StatusOK)
	wantStatus(t, do(t, srv, "POST", p("divide", "4"), nil), http.StatusOK)

	c, _ := srv.Contact(id)
	if c.Points != 6 {
		t.Errorf("points = %d, want ((10+5-3)*2)/4 = 6", c.Points)
	}
	want := []mautictest.PointsChange{{Delta: 5, EventName: "evt-1", ActionName: "sync"}, {Delta: -3, EventName: "evt-2"}, {Delta: 12}, {Delta: -18}}
	if !slices.Equal(c.PointsLog, want) {
		t.Errorf("log = %+v, want %+v", c.PointsLog, want)
	}

	r = do(t, srv, "POST", p("pow", "2"), nil)
	wantStatus(t, r, http.StatusBadRequest)
	wantBody(t, r, `{"errors":[{"code":400,"message":"Invalid operator","details":[]}]}`)

	r = do(t, srv, "POST", "/api/contacts/999/points/plus/1", nil)
	wantStatus(t, r, http.StatusNotFound)
	wantBody(t, r, `{"errors":[{"code":404,"message":"Contact not found.","details":[]}]}`)
	wantStatus(t, do(t, srv, "POST", p("divide", "0"), nil), http.StatusInternalServerError)
}

func TestFieldsEndpoint(t *testing.T) {
	t.Parallel()
	srv := newServer(t, mautictest.WithFields(
		mautictest.Field{Alias: "tier", Label: "Tier"},
		mautictest.Field{Alias: "score", Type: "number"},
	))
	srv.AddField(mautictest.Field{Alias: "crm_id", UniqueIdentifier: true})

	r := do(t, srv, "GET", "/api/fields/contact?limit=0", nil)
	wantStatus(t, r, http.StatusOK)
	v := r.JSON(t)
	fields := at(t, v, "fields").([]any)
	if total := num(t, at(t, v, "total")); total != len(fields) || total < 31 {
		t.Fatalf("total %d, %d fields", total, len(fields))
	}
	byAlias := map[string]map[string]any{}
	for _, f := range fields {
		m := f.(map[string]any)
		byAlias[m["alias"].(string)] = m
	}
	for _, alias := range []string{"title", "firstname", "lastname", "company", "position", "email", "mobile", "phone",
		"fax", "points", "address1", "address2", "city", "state", "zipcode", "country", "preferred_locale",
		"timezone", "last_active", "website", "tier", "score", "crm_id"} {
		if byAlias[alias] == nil {
			t.Errorf("field %s missing", alias)
		}
	}
	if byAlias["email"]["isUniqueIdentifier"] != true || byAlias["crm_id"]["isUniqueIdentifier"] != true ||
		byAlias["points"]["type"] != "number" || byAlias["tier"]["label"] != "Tier" || byAlias["tier"]["object"] != "lead" {
		t.Errorf("field details: %v %v", byAlias["email"], byAlias["tier"])
	}
	keys := []string{`"isPublished"`, `"id"`, `"label"`, `"alias"`, `"type"`, `"group"`, `"order"`, `"object"`,
		`"defaultValue"`, `"isRequired"`, `"isFixed"`, `"isListable"`, `"isVisible"`, `"isShortVisible"`,
		`"isUniqueIdentifier"`, `"isPubliclyUpdatable"`, `"properties"`}
	first := string(r.Body[strings.Index(string(r.Body), `"fields":[`):])
	first = first[:strings.Index(first, "}")]
	last := -1
	for _, k := range keys {
		i := strings.Index(first, k)
		if i <= last {
			t.Fatalf("field key %s missing or out of order: %s", k, first)
		}
		last = i
	}

	// Lists are paged: 30 by default.
	v = do(t, srv, "GET", "/api/fields/contact", nil).JSON(t)
	if n := len(at(t, v, "fields").([]any)); n != 30 {
		t.Errorf("default page = %d fields, want 30", n)
	}
}
