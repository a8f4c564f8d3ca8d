package mautictest

import (
	"cmp"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// handleList serves GET /api/contacts (reference section 6.1):
// {"total":"<string>","contacts":{"<id>":{...}}}, ordered by id unless
// orderBy says otherwise, paged with start and limit (default 30, 0 = all),
// filtered by search and where[]. A malformed where[] or an unknown column
// is an uncaught database error (500).
func (s *Server) handleList(c *call) {
	q := c.phpQuery()
	where, err := parseWhere(q["where"])
	if err != nil {
		c.exception(http.StatusInternalServerError)
		return
	}
	search, _ := q["search"].(string)
	terms := parseSearch(search)
	orderBy, _ := q["orderBy"].(string)
	dir, _ := q["orderByDir"].(string)
	start, limit := c.paging()
	mode := serialDetails
	if m, _ := q["minimal"].(string); !phpEmpty(m) {
		mode = serialList
	}

	s.mu.Lock()
	var matched []*contact
	var colErr error
	for _, ct := range s.st.contacts {
		ok, err := s.matchesLocked(ct, where, terms)
		if err != nil {
			colErr = err
			break
		}
		if ok {
			matched = append(matched, ct)
		}
	}
	if colErr == nil {
		colErr = s.sortContactsLocked(matched, orderBy, dir)
	}
	if colErr != nil {
		s.mu.Unlock()
		c.exception(http.StatusInternalServerError)
		return
	}
	total := len(matched)
	contacts := obj{}
	for _, ct := range page(matched, start, limit) {
		contacts = append(contacts, kv{strconv.Itoa(ct.id), s.contactJSONLocked(ct, mode)})
	}
	s.mu.Unlock()
	c.view(http.StatusOK, obj{{"total", strconv.Itoa(total)}, {"contacts", contacts}})
}

// matchesLocked applies where[] and search to one contact.
func (s *Server) matchesLocked(ct *contact, where []cond, terms []searchTerm) (bool, error) {
	for _, w := range where {
		ok, err := w.eval(s, ct)
		if err != nil || !ok {
			return false, err
		}
	}
	for _, t := range terms {
		if t.match(s, ct) == t.negate {
			return false, nil
		}
	}
	return true, nil
}

// sortContactsLocked orders contacts by orderBy (comma-separated columns,
// optionally prefixed "l.") and orderByDir, then by id.
func (s *Server) sortContactsLocked(list []*contact, orderBy, dir string) error {
	var cols []string
	for col := range strings.SplitSeq(orderBy, ",") {
		if col = strings.TrimPrefix(strings.TrimSpace(col), "l."); col != "" {
			if !s.isColumnLocked(col) {
				return errUnknownColumn
			}
			cols = append(cols, col)
		}
	}
	desc := strings.EqualFold(strings.TrimSpace(dir), "DESC")
	slices.SortFunc(list, func(a, b *contact) int {
		for _, col := range cols {
			va, _ := s.columnLocked(a, col)
			vb, _ := s.columnLocked(b, col)
			if r := compareSQL(va, vb); r != 0 {
				if desc {
					return -r
				}
				return r
			}
		}
		if desc && len(cols) > 0 {
			return cmp.Compare(b.id, a.id)
		}
		return cmp.Compare(a.id, b.id)
	})
	return nil
}

// baseColumns are the leads-table columns that are not field aliases.
var baseColumns = []string{
	"id", "points", "date_added", "dateAdded", "date_modified", "dateModified",
	"date_identified", "dateIdentified", "last_active", "lastActive", "is_published",
}

// isColumnLocked reports whether col is a leads-table column.
func (s *Server) isColumnLocked(col string) bool {
	_, isField := s.fieldLocked(col)
	return isField || slices.Contains(baseColumns, col)
}

// columnLocked reads a leads-table column: id, points, dates or a field
// alias. Unknown columns are an error, as in SQL.
func (s *Server) columnLocked(ct *contact, col string) (any, error) {
	switch col {
	case "id":
		return ct.id, nil
	case "points":
		return ct.points, nil
	case "date_added", "dateAdded":
		return dbTime(ct.dateAdded), nil
	case "date_modified", "dateModified":
		return optTime(ct.dateModified), nil
	case "date_identified", "dateIdentified":
		return optTime(ct.dateIdentified), nil
	case "last_active", "lastActive":
		return optTime(ct.lastActive), nil
	case "is_published":
		return 1, nil
	}
	f, ok := s.fieldLocked(col)
	if !ok {
		return nil, errUnknownColumn
	}
	return s.valueLocked(ct, f), nil
}
