package mautictest_test

import (
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/mautic-sync/mautic-sync/mautic/mautictest"
)

func TestNewCreatesThenMatchesCaseInsensitively(t *testing.T) {
	t.Parallel()
	srv := newServer(t)

	r := do(t, srv, "POST", "/api/contacts/new", map[string]any{"email": " Jane@Example.com ", "firstname": "Jane"})
	wantStatus(t, r, http.StatusCreated)
	id := num(t, at(t, r.JSON(t), "contact.id"))
	if got, want := r.Header.Get("Location"), "/api/contacts/"+strconv.Itoa(id); got != want {
		t.Errorf("Location = %q, want %q", got, want)
	}
	if got := r.Header.Get("Mautic-Version"); got != "5.1.0" {
		t.Errorf("Mautic-Version = %q, want 5.1.0", got)
	}
	if got := at(t, r.JSON(t), "contact.fields.all.email"); got != "Jane@Example.com" {
		t.Errorf("stored email = %v, want it as given after trim", got)
	}

	r = do(t, srv, "POST", "/api/contacts/new", map[string]any{"email": "jane@example.COM", "lastname": "Doe"})
	wantStatus(t, r, http.StatusOK)
	if got := num(t, at(t, r.JSON(t), "contact.id")); got != id {
		t.Fatalf("matched id = %d, want %d", got, id)
	}
	if r.Header.Get("Location") != "" {
		t.Error("a matched upsert has no Location")
	}
	c, _ := srv.Contact(id)
	if c.Fields["firstname"] != "Jane" || c.Fields["lastname"] != "Doe" || c.Fields["email"] != "jane@example.COM" {
		t.Errorf("fields = %v", c.Fields)
	}
	if got := len(srv.ContactsByEmail("JANE@example.com")); got != 1 {
		t.Errorf("ContactsByEmail = %d contacts, want 1", got)
	}
}

func TestNewWithoutEmailAlwaysCreates(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	a := newContact(t, srv, map[string]any{"firstname": "Anon"})
	b := newContact(t, srv, map[string]any{"firstname": "Anon"})
	if a == b {
		t.Fatal("contacts without a unique identifier must not be matched")
	}
}

func TestUpsertUpdatesNewestDuplicate(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	first := newContact(t, srv, map[string]any{"email": "dup@example.com"})
	// PUT on a missing id creates a contact without deduplication.
	r := do(t, srv, "PUT", "/api/contacts/999/edit", map[string]any{"email": "dup@example.com"})
	wantStatus(t, r, http.StatusCreated)
	second := num(t, at(t, r.JSON(t), "contact.id"))
	if second == 999 || second == first {
		t.Fatalf("PUT on a missing id got id %d; want a new auto-increment id", second)
	}
	if got := len(srv.ContactsByEmail("dup@example.com")); got != 2 {
		t.Fatalf("duplicates = %d, want 2", got)
	}

	r = do(t, srv, "POST", "/api/contacts/new", map[string]any{"email": "DUP@example.com", "city": "Oslo"})
	wantStatus(t, r, http.StatusOK)
	if got := num(t, at(t, r.JSON(t), "contact.id")); got != second {
		t.Fatalf("upsert updated %d, want the newest duplicate %d", got, second)
	}
}

func TestZeroValuesDroppedOnPostAndPatchKeptOnPut(t *testing.T) {
	t.Parallel()
	srv := newServer(t, mautictest.WithFields(
		mautictest.Field{Alias: "age", Type: "number"},
		mautictest.Field{Alias: "vip", Type: "boolean"},
	))
	id := newContact(t, srv, map[string]any{
		"email": "z@example.com", "age": 41, "vip": true, "points": 7, "city": "Rome",
	})
	for _, zero := range []any{0, "0", 0.0, 0.5, "-0.9"} {
		r := do(t, srv, "POST", "/api/contacts/new", map[string]any{
			"email": "z@example.com", "age": zero, "points": zero, "city": zero,
		})
		wantStatus(t, r, http.StatusOK)
	}
	r := do(t, srv, "PATCH", "/api/contacts/"+strconv.Itoa(id)+"/edit", map[string]any{"age": 0, "vip": false})
	wantStatus(t, r, http.StatusOK)
	c, _ := srv.Contact(id)
	if c.Fields["age"] != 41 || c.Fields["vip"] != 1 || c.Points != 7 || c.Fields["city"] != "Rome" {
		t.Fatalf("zeros overwrote values on POST/PATCH: %+v points %d", c.Fields, c.Points)
	}

	r = do(t, srv, "PUT", "/api/contacts/"+strconv.Itoa(id)+"/edit", map[string]any{
		"email": "z@example.com", "age": 0, "vip": false, "points": 0,
	})
	wantStatus(t, r, http.StatusOK)
	c, _ = srv.Contact(id)
	if c.Fields["age"] != 0 || c.Fields["vip"] != 0 || c.Points != 0 {
		t.Fatalf("PUT must keep zeros: %+v points %d", c.Fields, c.Points)
	}
	if got := at(t, r.JSON(t), "contact.fields.all.age"); got != 0.0 {
		t.Errorf("fields.all.age = %v, want number 0", got)
	}
}

func TestBlankValuesAndOverwriteWithBlank(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	id := newContact(t, srv, map[string]any{"email": "b@example.com", "firstname": "Bo", "city": "Nice"})
	path := "/api/contacts/" + strconv.Itoa(id) + "/edit"

	wantStatus(t, do(t, srv, "PATCH", path, map[string]any{"firstname": "", "city": nil}), http.StatusOK)
	c, _ := srv.Contact(id)
	if c.Fields["firstname"] != "Bo" || c.Fields["city"] != "Nice" {
		t.Fatalf("blank values overwrote without overwriteWithBlank: %v", c.Fields)
	}

	wantStatus(t, do(t, srv, "POST", "/api/contacts/new", map[string]any{
		"email": "b@example.com", "firstname": "", "overwriteWithBlank": true,
	}), http.StatusOK)
	c, _ = srv.Contact(id)
	if _, ok := c.Fields["firstname"]; ok {
		t.Fatalf("overwriteWithBlank did not clear firstname: %v", c.Fields)
	}
	if c.Fields["city"] != "Nice" {
		t.Fatalf("overwriteWithBlank cleared a field absent from the payload: %v", c.Fields)
	}
}

func TestPutClearsMissingFieldsButKeepsTags(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	id := newContact(t, srv, map[string]any{"email": "p@example.com", "firstname": "Pia", "city": "Bern", "tags": []string{"a"}})
	r := do(t, srv, "PUT", "/api/contacts/"+strconv.Itoa(id)+"/edit", map[string]any{"firstname": "Pia"})
	wantStatus(t, r, http.StatusOK)
	c, _ := srv.Contact(id)
	if _, ok := c.Fields["city"]; ok {
		t.Errorf("PUT kept city: %v", c.Fields)
	}
	if _, ok := c.Fields["email"]; ok {
		t.Errorf("PUT kept email: %v", c.Fields)
	}
	if !slices.Equal(c.Tags, []string{"a"}) {
		t.Errorf("tags = %v, want [a]", c.Tags)
	}
}

func TestPatchMissingIs404(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	r := do(t, srv, "PATCH", "/api/contacts/42/edit", map[string]any{"firstname": "X"})
	wantStatus(t, r, http.StatusNotFound)
	wantBody(t, r, `{"errors":[{"code":404,"message":"Item was not found.","details":[]}]}`)
	if r.Header.Get("Mautic-Version") == "" {
		t.Error("controller errors carry Mautic-Version")
	}
	wantStatus(t, do(t, srv, "GET", "/api/contacts/42", nil), http.StatusNotFound)
	wantStatus(t, do(t, srv, "DELETE", "/api/contacts/42/delete", nil), http.StatusNotFound)
}

func TestTagsAreAdditiveAndMinusRemoves(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	id := newContact(t, srv, map[string]any{"email": "t@example.com", "tags": []string{"one", "two", "three"}})
	wantStatus(t, do(t, srv, "POST", "/api/contacts/new", map[string]any{
		"email": "t@example.com", "tags": "four, -two,ONE",
	}), http.StatusOK)
	c, _ := srv.Contact(id)
	if want := []string{"four", "one", "three"}; !slices.Equal(c.Tags, want) {
		t.Fatalf("tags = %v, want %v", c.Tags, want)
	}
	r := do(t, srv, "GET", "/api/contacts/"+strconv.Itoa(id), nil)
	tags := at(t, r.JSON(t), "contact.tags").([]any)
	if len(tags) != 3 || at(t, tags, "0.tag") != "four" || at(t, tags, "0.description") != nil {
		t.Errorf("tags JSON = %v", tags)
	}
}

func TestDoNotContactInPayload(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	id := newContact(t, srv, map[string]any{"email": "d@example.com", "doNotContact": []any{map[string]any{"channel": "email"}}})
	c, _ := srv.Contact(id)
	if len(c.DNC) != 1 || c.DNC[0].Reason != 3 || c.DNC[0].Channel != "email" {
		t.Fatalf("DNC = %+v, want email reason 3 (default)", c.DNC)
	}
	newContact(t, srv, map[string]any{"email": "d@example.com", "doNotContact": []any{map[string]any{"reason": 0}}})
	if c, _ = srv.Contact(id); len(c.DNC) != 0 {
		t.Fatalf("reason 0 must remove the DNC: %+v", c.DNC)
	}

	newContact(t, srv, map[string]any{"email": "d@example.com", "doNotContact": []any{map[string]any{"reason": 1, "comments": "unsub"}}})
	newContact(t, srv, map[string]any{"email": "d@example.com", "doNotContact": []any{map[string]any{"reason": 2, "comments": "bounce"}}})
	c, _ = srv.Contact(id)
	if len(c.DNC) != 1 || c.DNC[0].Reason != 1 || c.DNC[0].Comments != "unsub" {
		t.Fatalf("an unsubscribed DNC was overridden: %+v", c.DNC)
	}
}

func TestInvalidEmailSingle(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	r := do(t, srv, "POST", "/api/contacts/new", map[string]any{"email": "not-an-email"})
	wantStatus(t, r, http.StatusBadRequest)
	wantBody(t, r, `{"errors":[{"code":400,"message":"email: not-an-email is invalid.","details":{"email":["not-an-email is invalid."]}}]}`)
	if len(srv.Contacts()) != 0 {
		t.Error("an invalid payload created a contact")
	}
}

func TestUnknownKeysAndIDIgnored(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	r := do(t, srv, "POST", "/api/contacts/new", map[string]any{"id": 77, "email": "u@example.com", "nonsense": "x", "owner": 3})
	wantStatus(t, r, http.StatusCreated)
	if id := num(t, at(t, r.JSON(t), "contact.id")); id == 77 {
		t.Error("the id key must be ignored")
	}
	c := srv.Contacts()[0]
	if _, ok := c.Fields["nonsense"]; ok {
		t.Error("unknown keys must be ignored")
	}
}

func TestPointsPayloadSetsValue(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	id := newContact(t, srv, map[string]any{"email": "pts@example.com", "points": 10})
	newContact(t, srv, map[string]any{"email": "pts@example.com", "points": "4"})
	if c, _ := srv.Contact(id); c.Points != 4 {
		t.Fatalf("points = %d, want 4 (set, not added)", c.Points)
	}
}

func TestMergeOnEditWithAnotherContactsEmail(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	winner := newContact(t, srv, map[string]any{"email": "w@example.com", "firstname": "Win", "points": 5, "tags": "x"})
	loser := newContact(t, srv, map[string]any{"email": "l@example.com", "city": "Lyon", "points": 3, "tags": "y"})

	r := do(t, srv, "PATCH", "/api/contacts/"+strconv.Itoa(winner)+"/edit", map[string]any{"email": "L@example.com"})
	wantStatus(t, r, http.StatusOK)
	if _, ok := srv.Contact(loser); ok {
		t.Fatal("the other contact must be deleted by the merge")
	}
	c, _ := srv.Contact(winner)
	if c.Fields["email"] != "L@example.com" || c.Fields["city"] != "Lyon" || c.Fields["firstname"] != "Win" {
		t.Errorf("merged fields = %v", c.Fields)
	}
	if c.Points != 8 || !slices.Equal(c.Tags, []string{"x", "y"}) {
		t.Errorf("merged points %d tags %v, want 8 [x y]", c.Points, c.Tags)
	}
	wantStatus(t, do(t, srv, "PATCH", "/api/contacts/"+strconv.Itoa(loser)+"/edit", map[string]any{"city": "X"}), http.StatusNotFound)
}

func TestDeleteSerialisesWithNullID(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	id := newContact(t, srv, map[string]any{"email": "del@example.com"})
	r := do(t, srv, "DELETE", "/api/contacts/"+strconv.Itoa(id)+"/delete", nil)
	wantStatus(t, r, http.StatusOK)
	v := r.JSON(t)
	if at(t, v, "contact.id") != nil || at(t, v, "contact.fields.all.email") != "del@example.com" {
		t.Errorf("deleted contact JSON: %s", r.Body)
	}
	wantStatus(t, do(t, srv, "GET", "/api/contacts/"+strconv.Itoa(id), nil), http.StatusNotFound)
	if len(srv.Contacts()) != 0 {
		t.Error("contact still stored")
	}
}

func TestContactJSONShape(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	id := newContact(t, srv, map[string]any{
		"email": "shape@example.com", "firstname": "Sé/phine", "points": 4,
		"ipAddress": "10.0.0.1", "lastActive": "2024-01-02 03:04:05",
	})
	r := do(t, srv, "GET", "/api/contacts/"+strconv.Itoa(id), nil)
	wantStatus(t, r, http.StatusOK)
	body := string(r.Body)
	keys := []string{
		`"isPublished"`, `"dateAdded"`, `"dateModified"`, `"createdBy"`, `"createdByUser"`, `"modifiedBy"`,
		`"modifiedByUser"`, `"id"`, `"points"`, `"color"`, `"fields"`, `"lastActive"`, `"owner"`,
		`"ipAddresses"`, `"tags"`, `"utmtags"`, `"stage"`, `"dateIdentified"`, `"preferredProfileImage"`,
		`"doNotContact"`, `"frequencyRules"`,
	}
	last := -1
	for _, k := range keys {
		i := strings.Index(body, k)
		if i <= last {
			t.Fatalf("key %s missing or out of order in %s", k, body)
		}
		last = i
	}
	if !strings.Contains(body, `"firstname":"S\u00e9\/phine"`) {
		t.Errorf("strings must be escaped like PHP's json_encode: %s", body)
	}
	v := r.JSON(t)
	if !regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00$`).MatchString(at(t, v, "contact.dateAdded").(string)) {
		t.Errorf("dateAdded = %v, want ISO-8601 UTC", at(t, v, "contact.dateAdded"))
	}
	if at(t, v, "contact.fields.all.id") != float64(id) || at(t, v, "contact.fields.all.points") != 4.0 {
		t.Errorf("fields.all = %v", at(t, v, "contact.fields.all"))
	}
	if at(t, v, "contact.fields.all.title") != nil {
		t.Error("fields.all lists every alias, null when unset")
	}
	if got := at(t, v, "contact.fields.core.email.value"); got != "shape@example.com" {
		t.Errorf("fields.core.email.value = %v", got)
	}
	if got := at(t, v, "contact.fields.personal"); !slices.Equal(got.([]any), []any{}) {
		t.Errorf("empty groups are []: %v", got)
	}
	if got := at(t, v, "contact.lastActive"); got != "2024-01-02T03:04:05+00:00" {
		t.Errorf("lastActive = %v", got)
	}
	if !strings.Contains(body, `"ipAddresses":{"10.0.0.1":{"ipAddress":"10.0.0.1","ipDetails":[]}}`) {
		t.Errorf("ipAddresses not recorded: %s", body)
	}
}

func TestFormEncodedNew(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	r := do(t, srv, "POST", "/api/contacts/new", form{
		"email": {"f@example.com"}, "firstname": {"Form"}, "tags[]": {"a", "b"},
	})
	wantStatus(t, r, http.StatusCreated)
	c := srv.Contacts()[0]
	if c.Fields["firstname"] != "Form" || !slices.Equal(c.Tags, []string{"a", "b"}) {
		t.Fatalf("form payload: %+v", c)
	}
}

func TestRejectItemsSingle(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	srv.RejectItems(func(item map[string]any) (int, string) {
		if item["firstname"] == "Bad" {
			return http.StatusUnprocessableEntity, "firstname: not allowed"
		}
		return 0, ""
	})
	r := do(t, srv, "POST", "/api/contacts/new", map[string]any{"email": "r@example.com", "firstname": "Bad"})
	wantStatus(t, r, http.StatusUnprocessableEntity)
	wantBody(t, r, `{"errors":[{"code":422,"message":"firstname: not allowed","details":[]}]}`)
	wantStatus(t, do(t, srv, "POST", "/api/contacts/new", map[string]any{"email": "r@example.com"}), http.StatusCreated)
	srv.RejectItems(nil)
	wantStatus(t, do(t, srv, "POST", "/api/contacts/new", map[string]any{"email": "r@example.com", "firstname": "Bad"}), http.StatusOK)
}

func TestCustomUniqueIdentifier(t *testing.T) {
	t.Parallel()
	srv := newServer(t, mautictest.WithFields(mautictest.Field{Alias: "crm_id", UniqueIdentifier: true}))
	id := newContact(t, srv, map[string]any{"crm_id": "C-1", "email": "one@example.com"})
	r := do(t, srv, "POST", "/api/contacts/new", map[string]any{"crm_id": "c-1", "firstname": "Matched"})
	wantStatus(t, r, http.StatusOK)
	if got := num(t, at(t, r.JSON(t), "contact.id")); got != id {
		t.Fatalf("matched %d, want %d by crm_id", got, id)
	}
}

func TestNumberValidation(t *testing.T) {
	t.Parallel()
	srv := newServer(t, mautictest.WithFields(mautictest.Field{Alias: "age", Type: "number"}))
	r := do(t, srv, "POST", "/api/contacts/new", map[string]any{"email": "n@example.com", "age": "old", "firstname": []any{"x"}})
	wantStatus(t, r, http.StatusBadRequest)
	wantBody(t, r, `{"errors":[{"code":400,"message":"firstname: This value is not valid., age: This value is not valid.","details":{"firstname":["This value is not valid."],"age":["This value is not valid."]}}]}`)
}

func TestFormEncodedBodyQueryValues(t *testing.T) {
	t.Parallel()
	// PHP-style nested form parameters reach the payload.
	srv := newServer(t)
	body := url.Values{"email": {"nested@example.com"}, "doNotContact[0][channel]": {"sms"}, "doNotContact[0][reason]": {"2"}}
	wantStatus(t, do(t, srv, "POST", "/api/contacts/new", form(body)), http.StatusCreated)
	c := srv.Contacts()[0]
	if len(c.DNC) != 1 || c.DNC[0].Channel != "sms" || c.DNC[0].Reason != 2 {
		t.Fatalf("DNC from form = %+v", c.DNC)
	}
}
