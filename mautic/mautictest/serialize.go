package mautictest

import (
	"strconv"
)

// serialMode selects which of Mautic's contact serialisations to produce.
type serialMode int

const (
	// serialDetails is the default API view (group leadDetails and the
	// others LeadApiController sets, nulls included).
	serialDetails serialMode = iota
	// serialList is ?minimal=1 (leadList instead of leadDetails).
	serialList
	// serialBare is the DNC endpoints' view: no serialiser groups, no
	// fields.all, nulls dropped.
	serialBare
	// serialDeleted is a contact serialised after Doctrine removed it: the
	// id is null.
	serialDeleted
)

// contactJSONLocked renders c as Mautic's serialiser would (reference
// section 8).
func (s *Server) contactJSONLocked(c *contact, mode serialMode) obj {
	var id any = c.id
	if mode == serialDeleted {
		id = nil
	}
	modifiedBy, modifiedByUser := any(nil), any(nil)
	if !c.dateModified.IsZero() {
		modifiedBy, modifiedByUser = 1, "Admin User"
	}
	fields := obj{}
	for _, g := range fieldGroups {
		if mode == serialList && g != "core" {
			continue
		}
		fields = append(fields, kv{g, s.fieldGroupLocked(c, g)})
	}
	if mode != serialBare {
		fields = append(fields, kv{"all", s.allFieldsLocked(c, id)})
	}
	var ips any = []any{}
	if len(c.ips) > 0 {
		m := obj{}
		for _, ip := range c.ips {
			m = append(m, kv{ip, obj{{"ipAddress", ip}, {"ipDetails", []any{}}}})
		}
		ips = m
	}
	tags := []any{}
	for _, name := range s.tagNamesLocked(c) {
		t := s.tagLocked(name, false)
		tags = append(tags, obj{{"id", t.id}, {"tag", t.name}, {"description", nil}})
	}
	dnc := []any{}
	for _, d := range c.dnc {
		dnc = append(dnc, obj{
			{"id", d.id}, {"dateAdded", isoTime(d.dateAdded)}, {"reason", d.reason},
			{"comments", d.comments}, {"channel", d.channel}, {"channelId", d.channelID},
		})
	}
	out := obj{
		{"isPublished", true},
		{"dateAdded", isoTime(c.dateAdded)},
		{"dateModified", isoTime(c.dateModified)},
		{"createdBy", 1},
		{"createdByUser", "Admin User"},
		{"modifiedBy", modifiedBy},
		{"modifiedByUser", modifiedByUser},
		{"id", id},
		{"points", c.points},
		{"color", nil},
		{"fields", fields},
		{"lastActive", isoTime(c.lastActive)},
		{"owner", nil},
		{"ipAddresses", ips},
		{"tags", tags},
		{"utmtags", []any{}},
		{"stage", nil},
		{"dateIdentified", isoTime(c.dateIdentified)},
		{"preferredProfileImage", "gravatar"},
		{"doNotContact", dnc},
		{"frequencyRules", []any{}},
	}
	if mode == serialBare {
		kept := out[:0]
		for _, f := range out {
			if f.v != nil {
				kept = append(kept, f)
			}
		}
		out = kept
	}
	return out
}

// valueLocked is a field's value for fields.all: ints for points and
// booleans, int or float for numbers, strings or null otherwise.
func (s *Server) valueLocked(c *contact, f fieldDef) any {
	switch f.Alias {
	case "points":
		return c.points
	case "last_active":
		if c.lastActive.IsZero() {
			return nil
		}
		return dbTime(c.lastActive)
	}
	v, ok := c.fields[f.Alias]
	if !ok {
		return nil
	}
	if f.Type == "number" {
		return numberValue(v)
	}
	return v
}

// fieldGroupLocked renders fields.<group>: alias -> field details with the
// raw (string) value; empty groups are [].
func (s *Server) fieldGroupLocked(c *contact, group string) any {
	o := obj{}
	for _, f := range s.fields {
		if f.Group != group {
			continue
		}
		v := s.valueLocked(c, f)
		var raw any
		if v != nil {
			raw = fieldString(v)
		}
		fixed := "0"
		if f.fixed {
			fixed = "1"
		}
		entry := obj{
			{"id", strconv.Itoa(f.id)},
			{"label", f.Label},
			{"alias", f.Alias},
			{"type", f.Type},
			{"group", f.Group},
			{"object", "lead"},
			{"is_fixed", fixed},
			{"properties", "a:0:{}"},
			{"default_value", nil},
			{"value", raw},
		}
		if f.Type == "number" {
			entry = append(entry, kv{"normalizedValue", v})
		}
		o = append(o, kv{f.Alias, entry})
	}
	if len(o) == 0 {
		return []any{}
	}
	return o
}

// allFieldsLocked renders fields.all: the id, then every alias.
func (s *Server) allFieldsLocked(c *contact, id any) obj {
	all := obj{{"id", id}}
	for _, f := range s.fields {
		all = append(all, kv{f.Alias, s.valueLocked(c, f)})
	}
	return all
}
