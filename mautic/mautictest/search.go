package mautictest

import (
	"strings"
)

// The ?search= mini-language of Mautic's contact list, reduced to what
// sync clients use: "email:foo@bar.com" is a PREFIX match (LIKE 'value%'),
// "+email:x" is strict (=), "!" negates, "ids:1,2,3" selects ids, any field
// alias works as a command, "*" is a wildcard, and a bare word matches
// first name, last name, email, company or city containing it. Terms are
// AND-ed.

// searchTerm is one term of a search string.
type searchTerm struct {
	command string // "" for a bare term
	value   string
	strict  bool
	negate  bool
}

// catchAllColumns are searched by bare terms.
var catchAllColumns = []string{"firstname", "lastname", "email", "company", "city"}

// parseSearch splits a search string into terms, honouring double quotes.
func parseSearch(q string) []searchTerm {
	var terms []searchTerm
	for _, tok := range splitQuoted(q) {
		var t searchTerm
		for len(tok) > 0 && (tok[0] == '!' || tok[0] == '+') {
			if tok[0] == '!' {
				t.negate = true
			} else {
				t.strict = true
			}
			tok = tok[1:]
		}
		if cmd, val, ok := strings.Cut(tok, ":"); ok && cmd != "" {
			t.command, t.value = strings.ToLower(cmd), strings.Trim(val, `"`)
		} else {
			t.value = strings.Trim(tok, `"`)
		}
		if t.value == "" && t.command == "" {
			continue
		}
		terms = append(terms, t)
	}
	return terms
}

func splitQuoted(q string) []string {
	var out []string
	var cur strings.Builder
	quoted := false
	for _, r := range q {
		switch {
		case r == '"':
			quoted = !quoted
			cur.WriteRune(r)
		case (r == ' ' || r == '\t') && !quoted:
			if cur.Len() > 0 {
				out = append(out, cur.String())
				cur.Reset()
			}
		default:
			cur.WriteRune(r)
		}
	}
	if cur.Len() > 0 {
		out = append(out, cur.String())
	}
	return out
}

// match reports whether the term (before negation) matches the contact.
func (t searchTerm) match(s *Server, ct *contact) bool {
	pattern := strings.ReplaceAll(t.value, "*", "%")
	switch {
	case t.command == "ids":
		for _, v := range csvValues(t.value) {
			if phpInt(v) == ct.id {
				return true
			}
		}
		return false
	case t.command == "name":
		return t.columnMatch(s, ct, "firstname", pattern) || t.columnMatch(s, ct, "lastname", pattern)
	case t.command != "":
		if _, ok := s.fieldLocked(t.command); ok {
			return t.columnMatch(s, ct, t.command, pattern)
		}
		// Not a command: search the whole token as text.
		pattern = t.command + ":" + pattern
	}
	for _, col := range catchAllColumns {
		v, _ := s.columnLocked(ct, col)
		if v != nil && likeMatch(fieldString(v), "%"+pattern+"%") {
			return true
		}
	}
	return false
}

func (t searchTerm) columnMatch(s *Server, ct *contact, col, pattern string) bool {
	v, _ := s.columnLocked(ct, col)
	if v == nil {
		return false
	}
	if t.strict {
		return strings.EqualFold(fieldString(v), t.value)
	}
	return likeMatch(fieldString(v), pattern+"%")
}
