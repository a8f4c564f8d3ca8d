package mautictest

import (
	"fmt"
	"strings"
)

// Validation messages of the contact form.
const (
	msgInvalidValue = "This value is not valid."
	// msgInvalidEmailFmt is mautic.email.address.invalid_format.
	msgInvalidEmailFmt = "%s is invalid."
)

// normalizeValue validates a payload value for a field and converts it to
// what Mautic stores: strings for text-like fields, float64 for numbers,
// 0/1 for booleans, "Y-m-d H:i:s" for datetimes. Blank values (null, "")
// come back as nil. A non-empty message means the value is invalid.
func normalizeValue(f Field, v any) (any, string) {
	if v == nil {
		return nil, ""
	}
	if list, ok := listOf(v); ok {
		if f.Type != "multiselect" {
			return nil, msgInvalidValue
		}
		parts := make([]string, 0, len(list))
		for _, e := range list {
			s, ok := phpString(e)
			if !ok {
				return nil, msgInvalidValue
			}
			parts = append(parts, s)
		}
		v = strings.Join(parts, "|")
	}
	if s, ok := v.(string); ok && strings.TrimSpace(s) == "" {
		return nil, ""
	}

	switch f.Type {
	case "number":
		n, ok := phpFloat(v)
		if !ok {
			return nil, msgInvalidValue
		}
		return n, ""
	case "boolean":
		return normalizeBool(v)
	case "email":
		s, ok := phpString(v)
		if !ok {
			return nil, msgInvalidValue
		}
		s = cleanEmail(s)
		if s == "" {
			return nil, ""
		}
		if !validEmail(s) {
			return nil, fmt.Sprintf(msgInvalidEmailFmt, s)
		}
		return s, ""
	case "datetime", "date", "time":
		s, ok := phpString(v)
		if !ok {
			return nil, msgInvalidValue
		}
		t, ok := parseDate(s)
		if !ok {
			return nil, msgInvalidValue
		}
		switch f.Type {
		case "date":
			return t.Format("2006-01-02"), ""
		case "time":
			return t.Format("15:04:05"), ""
		}
		return dbTime(t), ""
	}
	s, ok := phpString(v)
	if !ok {
		return nil, msgInvalidValue
	}
	if strings.TrimSpace(s) == "" {
		return nil, ""
	}
	return s, ""
}

func normalizeBool(v any) (any, string) {
	if b, ok := v.(bool); ok {
		if b {
			return 1, ""
		}
		return 0, ""
	}
	if f, ok := phpFloat(v); ok && (f == 0 || f == 1) {
		return int(f), ""
	}
	s, _ := phpString(v)
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "true", "yes", "on":
		return 1, ""
	case "false", "no", "off":
		return 0, ""
	}
	return nil, msgInvalidValue
}

// cleanEmail trims and keeps only the characters PHP's
// FILTER_SANITIZE_EMAIL allows, so "a@b.c," matches "a@b.c".
func cleanEmail(s string) string {
	s = strings.TrimSpace(s)
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
			return r
		case strings.ContainsRune("!#$%&'*+-=?^_`{|}~@.[]", r):
			return r
		}
		return -1
	}, s)
}

// validEmail is a lenient syntax check: one "@" with text on both sides.
func validEmail(s string) bool {
	local, domain, ok := strings.Cut(s, "@")
	return ok && local != "" && domain != "" && !strings.Contains(domain, "@") &&
		!strings.HasPrefix(domain, ".") && !strings.HasSuffix(domain, ".")
}
