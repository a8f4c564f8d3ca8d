package mautictest

import (
	"strings"
)

// Field is a contact field: a column of Mautic's leads table whose alias is
// the key used in contact payloads.
type Field struct {
	// Alias is the payload key, e.g. "firstname" or "loyalty_tier".
	Alias string
	// Label is the display name; it defaults to Alias.
	Label string
	// Type is Mautic's field type: text (the default), textarea, email,
	// number, boolean, tel, url, date, datetime, time, country, region,
	// locale, timezone, lookup, select, multiselect, html. Values are
	// validated and normalised by type (see the package documentation).
	Type string
	// UniqueIdentifier makes the field take part in upsert matching,
	// alongside email (any unique field matching is enough).
	UniqueIdentifier bool
	// Group is the field's group in fields.<group> of a contact: core (the
	// default), social, personal or professional.
	Group string
}

// fieldDef is a Field with the metadata Mautic reports.
type fieldDef struct {
	Field
	id    int
	order int
	fixed bool
}

// coreFields are Mautic's fixed contact fields in their installed order, so
// that email gets id 6 as on a fresh installation.
var coreFieldSpecs = []Field{
	{Alias: "title", Label: "Title", Type: "lookup"},
	{Alias: "firstname", Label: "First Name", Type: "text"},
	{Alias: "lastname", Label: "Last Name", Type: "text"},
	{Alias: "company", Label: "Primary company", Type: "text"},
	{Alias: "position", Label: "Position", Type: "text"},
	{Alias: "email", Label: "Email", Type: "email", UniqueIdentifier: true},
	{Alias: "mobile", Label: "Mobile", Type: "tel"},
	{Alias: "phone", Label: "Phone", Type: "tel"},
	{Alias: "points", Label: "Points", Type: "number"},
	{Alias: "fax", Label: "Fax", Type: "tel"},
	{Alias: "address1", Label: "Address Line 1", Type: "text"},
	{Alias: "address2", Label: "Address Line 2", Type: "text"},
	{Alias: "city", Label: "City", Type: "text"},
	{Alias: "state", Label: "State", Type: "region"},
	{Alias: "zipcode", Label: "Zip Code", Type: "text"},
	{Alias: "country", Label: "Country", Type: "country"},
	{Alias: "preferred_locale", Label: "Preferred Locale", Type: "locale"},
	{Alias: "timezone", Label: "Preferred Timezone", Type: "timezone"},
	{Alias: "last_active", Label: "Date Last Active", Type: "datetime"},
	{Alias: "attribution_date", Label: "Attribution Date", Type: "datetime"},
	{Alias: "attribution", Label: "Attribution", Type: "number"},
	{Alias: "website", Label: "Website", Type: "url"},
	{Alias: "facebook", Label: "Facebook", Type: "text", Group: "social"},
	{Alias: "foursquare", Label: "Foursquare", Type: "text", Group: "social"},
	{Alias: "instagram", Label: "Instagram", Type: "text", Group: "social"},
	{Alias: "linkedin", Label: "LinkedIn", Type: "text", Group: "social"},
	{Alias: "skype", Label: "Skype", Type: "text", Group: "social"},
	{Alias: "twitter", Label: "Twitter", Type: "text", Group: "social"},
}

// fieldGroups are the groups of fields.<group>, in serialisation order.
var fieldGroups = []string{"core", "social", "personal", "professional"}

// normalizeField fills a Field's defaults.
func normalizeField(f Field) Field {
	f.Alias = strings.TrimSpace(f.Alias)
	if f.Alias == "" {
		panic("mautictest: a field needs an alias")
	}
	if f.Label == "" {
		f.Label = f.Alias
	}
	f.Type = strings.ToLower(strings.TrimSpace(f.Type))
	if f.Type == "" {
		f.Type = "text"
	}
	if f.Group == "" {
		f.Group = "core"
	}
	return f
}

// newFieldList returns the core fields followed by extra ones.
func newFieldList(extra []Field) []fieldDef {
	var defs []fieldDef
	for _, f := range coreFieldSpecs {
		defs = addFieldDef(defs, normalizeField(f), true)
	}
	for _, f := range extra {
		defs = addFieldDef(defs, normalizeField(f), false)
	}
	return defs
}

// addFieldDef appends f, or replaces the field with the same alias.
func addFieldDef(defs []fieldDef, f Field, fixed bool) []fieldDef {
	for i := range defs {
		if strings.EqualFold(defs[i].Alias, f.Alias) {
			defs[i].Field = f
			return defs
		}
	}
	n := len(defs) + 1
	return append(defs, fieldDef{Field: f, id: n, order: n, fixed: fixed})
}

// AddField adds a custom contact field at runtime, as an administrator
// creating one in Mautic would; a field with the same alias is replaced.
// AddField panics on an empty alias.
func (s *Server) AddField(f Field) {
	f = normalizeField(f)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fields = addFieldDef(s.fields, f, false)
	s.reindexAllLocked()
}

// fieldLocked returns the definition of alias.
func (s *Server) fieldLocked(alias string) (fieldDef, bool) {
	for _, f := range s.fields {
		if f.Alias == alias {
			return f, true
		}
	}
	return fieldDef{}, false
}

// handleFields serves GET /api/fields/{object}: {"total":<int>,"fields":[...]}
// paged with start/limit like every list (limit defaults to 30).
func (s *Server) handleFields(c *call) {
	s.mu.Lock()
	var defs []fieldDef
	if c.params["object"] == "contact" || c.params["object"] == "lead" {
		defs = append(defs, s.fields...)
	}
	s.mu.Unlock()

	start, limit := c.paging()
	total := len(defs)
	defs = page(defs, start, limit)
	items := make([]any, 0, len(defs))
	for _, f := range defs {
		items = append(items, fieldJSON(f))
	}
	c.view(200, obj{{"total", total}, {"fields", items}})
}

// page applies start and limit (0 = no limit) to a list.
func page[T any](list []T, start, limit int) []T {
	if start > len(list) {
		start = len(list)
	}
	list = list[start:]
	if limit > 0 && limit < len(list) {
		list = list[:limit]
	}
	return list
}

// fieldJSON renders a field with the leadFieldDetails group's keys.
func fieldJSON(f fieldDef) obj {
	return obj{
		{"isPublished", true},
		{"dateAdded", nil},
		{"createdBy", nil},
		{"createdByUser", nil},
		{"dateModified", nil},
		{"modifiedBy", nil},
		{"modifiedByUser", nil},
		{"id", f.id},
		{"label", f.Label},
		{"alias", f.Alias},
		{"type", f.Type},
		{"group", f.Group},
		{"order", f.order},
		{"object", "lead"},
		{"defaultValue", nil},
		{"isRequired", false},
		{"isFixed", f.fixed},
		{"isListable", true},
		{"isVisible", true},
		{"isShortVisible", f.fixed},
		{"isUniqueIdentifier", f.UniqueIdentifier},
		{"isPubliclyUpdatable", false},
		{"properties", []any{}},
	}
}
