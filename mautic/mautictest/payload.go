package mautictest

import (
	"slices"
	"strings"
	"time"
)

// writeMode is the HTTP method semantics a contact payload is applied with.
type writeMode int

const (
	// modePost is POST /contacts/new and batch/new: zeros dropped, blanks
	// ignored unless overwriteWithBlank.
	modePost writeMode = iota
	// modePatch is PATCH edit: the same rules as POST.
	modePatch
	// modePut is PUT edit: fields missing from the payload are cleared,
	// blanks overwrite, zeros are kept.
	modePut
)

// payload is a validated contact payload ready to apply.
type payload struct {
	raw            map[string]any // the request's parameters
	fields         map[string]any // alias -> normalised value; nil is blank
	points         *int
	tags           []string
	dnc            []dncInput
	ip             string
	lastActive     time.Time
	overwriteBlank bool
	clearMissing   bool
}

// dncInput is one entry of a payload's doNotContact list.
type dncInput struct {
	channel   string
	reason    int
	comments  string
	channelID any
}

// prepare validates and normalises a contact payload as Mautic's form
// does, then applies the POST/PATCH filters of setCustomFieldValues.
func (s *Server) prepare(raw map[string]any, mode writeMode) (*payload, *itemError) {
	s.mu.Lock()
	reject := s.sw.reject
	defs := slices.Clone(s.fields)
	s.mu.Unlock()
	if reject != nil {
		if status, msg := reject(deepCopy(raw).(map[string]any)); status != 0 {
			return nil, &itemError{status: status, message: msg, details: []any{}}
		}
	}

	p := &payload{raw: raw, fields: map[string]any{}, overwriteBlank: mode == modePut, clearMissing: mode == modePut}
	var details obj
	var msgs []string
	for _, f := range defs {
		v, ok := raw[f.Alias]
		if !ok {
			continue
		}
		nv, msg := normalizeValue(f.Field, v)
		if msg != "" {
			details = append(details, kv{f.Alias, []string{msg}})
			msgs = append(msgs, f.Alias+": "+msg)
			continue
		}
		p.fields[f.Alias] = nv
	}
	if len(details) > 0 {
		return nil, &itemError{status: 400, message: strings.Join(msgs, ", "), details: details}
	}

	if mode != modePut {
		for alias, v := range p.fields {
			if v != nil && droppedZero(v) {
				delete(p.fields, alias)
			}
		}
	}
	if v, ok := p.fields["points"]; ok {
		delete(p.fields, "points")
		if v != nil || mode == modePut {
			n := phpInt(v)
			p.points = &n
		}
	}
	if v, ok := p.fields["last_active"]; ok && v != nil {
		p.lastActive, _ = parseDate(fieldString(v))
	}
	delete(p.fields, "last_active")

	if v, ok := raw["overwriteWithBlank"]; ok && !phpEmpty(v) {
		p.overwriteBlank = true
	}
	p.tags = parseTags(raw["tags"])
	p.dnc = parseDNCList(raw["doNotContact"])
	if ip, ok := phpString(raw["ipAddress"]); ok {
		p.ip = strings.TrimSpace(ip)
	}
	if la, ok := phpString(raw["lastActive"]); ok && la != "" {
		if t, ok := parseDate(la); ok {
			p.lastActive = t
		}
	}
	return p, nil
}

// uniqueKeys returns the index keys of the payload's unique-identifier
// values: the identity checkForDuplicateContact matches on.
func (p *payload) uniqueKeys(uniqueAliases []string) []string {
	var keys []string
	for _, alias := range uniqueAliases {
		if v := fieldString(p.fields[alias]); v != "" {
			keys = append(keys, uniqueKey(alias, v))
		}
	}
	return keys
}

// parseTags reads "tags": a list or a comma-separated string.
func parseTags(v any) []string {
	var raw []string
	if list, ok := listOf(v); ok {
		for _, e := range list {
			if s, ok := phpString(e); ok {
				raw = append(raw, s)
			}
		}
	} else if s, ok := phpString(v); ok {
		raw = strings.Split(s, ",")
	}
	var out []string
	for _, t := range raw {
		if t = strings.TrimSpace(t); t != "" && t != "-" {
			out = append(out, t)
		}
	}
	return out
}

// parseDNCList reads "doNotContact": [{"channel","reason","comments"}].
func parseDNCList(v any) []dncInput {
	if phpEmpty(v) {
		return nil
	}
	list, _ := listOf(v)
	var out []dncInput
	for _, e := range list {
		m, ok := e.(map[string]any)
		if !ok {
			continue
		}
		in := dncInput{channel: "email", reason: dncManual, channelID: m["channelId"]}
		if ch, _ := phpString(m["channel"]); ch != "" && !phpEmpty(ch) {
			in.channel = ch
		}
		if c, _ := phpString(m["comments"]); !phpEmpty(c) {
			in.comments = c
		}
		if r, ok := m["reason"]; ok {
			in.reason = phpInt(r)
		}
		out = append(out, in)
	}
	return out
}

// applyLocked writes a prepared payload to c.
func (s *Server) applyLocked(c *contact, p *payload, isNew bool) {
	s.unindexLocked(c)
	defer s.indexLocked(c)
	now := s.now().UTC()
	for _, f := range s.fields {
		if f.Alias == "points" || f.Alias == "last_active" {
			continue
		}
		v, present := p.fields[f.Alias]
		switch {
		case !present:
			if p.clearMissing {
				delete(c.fields, f.Alias)
			}
		case v == nil:
			if p.overwriteBlank {
				delete(c.fields, f.Alias)
			}
		default:
			c.fields[f.Alias] = v
		}
	}
	if p.points != nil {
		c.points = *p.points
	}
	s.modifyTagsLocked(c, p.tags)
	for _, d := range p.dnc {
		switch {
		case d.reason == dncContactable:
			if !isNew {
				s.removeDNCLocked(c, d.channel)
			}
		default:
			s.addDNCLocked(c, d.channel, d.reason, d.comments, d.channelID)
		}
	}
	if p.ip != "" && !slices.Contains(c.ips, p.ip) {
		c.ips = append(c.ips, p.ip)
	}
	if !p.lastActive.IsZero() {
		c.lastActive = p.lastActive
	}
	if c.dateIdentified.IsZero() && fieldString(c.fields["email"]) != "" {
		c.dateIdentified = now
	}
	if !isNew {
		c.dateModified = now
	}
}

// modifyTagsLocked is LeadModel::modifyTags: names are added, "-name"
// removes; tags not named are kept.
func (s *Server) modifyTagsLocked(c *contact, tags []string) {
	for _, t := range tags {
		if name, ok := strings.CutPrefix(t, "-"); ok {
			if tg := s.tagLocked(strings.TrimSpace(name), false); tg != nil {
				delete(c.tags, tg.id)
			}
			continue
		}
		c.tags[s.tagLocked(t, true).id] = true
	}
}
