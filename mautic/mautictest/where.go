package mautictest

import (
	"cmp"
	"errors"
	"strings"
	"time"
)

// where[] filters (CommonRepository::buildWhereClauseFromArray) with SQL
// semantics: comparisons are numeric when both sides are numbers, else
// case-insensitive; NULL compares false except with isNull/isEmpty.

var (
	errUnknownColumn = errors.New("unknown column")
	errBadWhere      = errors.New("malformed where clause")
)

// cond is one where[] statement.
type cond struct {
	col  string
	expr string
	val  any
	sub  []cond // andX / orX
}

// parseWhere reads where[i][col|expr|val]; statements marked "internal"
// are dropped as Mautic does.
func parseWhere(v any) ([]cond, error) {
	if v == nil {
		return nil, nil
	}
	list, ok := listOf(v)
	if !ok {
		if m, isMap := v.(map[string]any); isMap {
			for _, e := range m {
				list = append(list, e)
			}
		} else {
			return nil, errBadWhere
		}
	}
	var out []cond
	for _, e := range list {
		m, ok := e.(map[string]any)
		if !ok {
			return nil, errBadWhere
		}
		if _, internal := m["internal"]; internal {
			continue
		}
		expr, _ := m["expr"].(string)
		c := cond{expr: expr, val: m["val"]}
		switch expr {
		case "":
			return nil, errBadWhere
		case "andX", "orX":
			sub, err := parseWhere(m["val"])
			if err != nil {
				return nil, err
			}
			c.sub = sub
		default:
			col, _ := m["col"].(string)
			if col == "" {
				return nil, errBadWhere
			}
			c.col = strings.TrimPrefix(col, "l.")
		}
		out = append(out, c)
	}
	return out, nil
}

// eval applies the statement to a contact.
func (c cond) eval(s *Server, ct *contact) (bool, error) {
	switch c.expr {
	case "andX", "orX":
		for _, sub := range c.sub {
			ok, err := sub.eval(s, ct)
			if err != nil {
				return false, err
			}
			if ok == (c.expr == "orX") {
				return ok, nil
			}
		}
		return c.expr == "andX", nil
	}
	v, err := s.columnLocked(ct, c.col)
	if err != nil {
		return false, err
	}
	switch c.expr {
	case "isNull":
		return v == nil, nil
	case "isNotNull":
		return v != nil, nil
	case "isEmpty":
		return v == nil || fieldString(v) == "", nil
	case "isNotEmpty":
		return v != nil && fieldString(v) != "", nil
	}
	if v == nil {
		return false, nil
	}
	switch c.expr {
	case "eq":
		return compareSQL(v, c.val) == 0, nil
	case "neq":
		return compareSQL(v, c.val) != 0, nil
	case "lt":
		return compareSQL(v, c.val) < 0, nil
	case "lte":
		return compareSQL(v, c.val) <= 0, nil
	case "gt":
		return compareSQL(v, c.val) > 0, nil
	case "gte":
		return compareSQL(v, c.val) >= 0, nil
	case "like":
		p, _ := phpString(c.val)
		return likeMatch(fieldString(v), p), nil
	case "notLike":
		p, _ := phpString(c.val)
		return !likeMatch(fieldString(v), p), nil
	case "in", "notIn":
		in := false
		for _, x := range csvValues(c.val) {
			if compareSQL(v, x) == 0 {
				in = true
				break
			}
		}
		return in == (c.expr == "in"), nil
	case "between", "notBetween":
		bounds := csvValues(c.val)
		if len(bounds) != 2 {
			return false, errBadWhere
		}
		in := compareSQL(v, bounds[0]) >= 0 && compareSQL(v, bounds[1]) <= 0
		return in == (c.expr == "between"), nil
	}
	return false, errBadWhere
}

// csvValues reads an in/between value: a list or a comma-separated string.
func csvValues(v any) []any {
	if list, ok := listOf(v); ok {
		return list
	}
	s, _ := phpString(v)
	var out []any
	for part := range strings.SplitSeq(s, ",") {
		out = append(out, strings.TrimSpace(part))
	}
	return out
}

// compareSQL compares like MySQL: numerically when both sides are numbers,
// else as case-insensitive strings.
func compareSQL(a, b any) int {
	if a == nil || b == nil {
		switch {
		case a == nil && b == nil:
			return 0
		case a == nil:
			return -1
		}
		return 1
	}
	fa, okA := phpFloat(a)
	fb, okB := phpFloat(b)
	if okA && okB {
		return cmp.Compare(fa, fb)
	}
	return strings.Compare(strings.ToLower(fieldString(a)), strings.ToLower(fieldString(b)))
}

// likeMatch is SQL LIKE, case-insensitive: % is any run, _ one character,
// \ escapes.
func likeMatch(s, pattern string) bool {
	sr, pr := []rune(strings.ToLower(s)), []rune(strings.ToLower(pattern))
	var match func(i, j int) bool
	match = func(i, j int) bool {
		for j < len(pr) {
			switch pr[j] {
			case '%':
				for k := i; k <= len(sr); k++ {
					if match(k, j+1) {
						return true
					}
				}
				return false
			case '_':
				if i >= len(sr) {
					return false
				}
			case '\\':
				if j+1 < len(pr) {
					j++
				}
				fallthrough
			default:
				if i >= len(sr) || sr[i] != pr[j] {
					return false
				}
			}
			i, j = i+1, j+1
		}
		return i == len(sr)
	}
	return match(0, 0)
}

// optTime renders an optional date column.
func optTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return dbTime(t)
}
