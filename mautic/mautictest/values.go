package mautictest

import (
	"encoding/json"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// PHP's loose value semantics, which Mautic's quirks follow.

// numericRe matches what PHP 8's is_numeric accepts (after trimming).
var numericRe = regexp.MustCompile(`^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$`)

// phpString converts a scalar the way PHP's (string) cast does; ok is false
// for arrays and maps.
func phpString(v any) (string, bool) {
	switch x := v.(type) {
	case nil:
		return "", true
	case string:
		return x, true
	case json.Number:
		return x.String(), true
	case bool:
		if x {
			return "1", true
		}
		return "", true
	case int:
		return strconv.Itoa(x), true
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), true
	}
	return "", false
}

// phpFloat returns v's numeric value when PHP's is_numeric would accept it.
func phpFloat(v any) (float64, bool) {
	switch x := v.(type) {
	case json.Number:
		f, err := x.Float64()
		return f, err == nil
	case float64:
		return x, true
	case int:
		return float64(x), true
	case string:
		t := strings.TrimSpace(x)
		if !numericRe.MatchString(t) {
			return 0, false
		}
		f, err := strconv.ParseFloat(t, 64)
		return f, err == nil
	}
	return 0, false
}

// phpIsNumeric is PHP's is_numeric.
func phpIsNumeric(v any) bool {
	_, ok := phpFloat(v)
	return ok
}

// phpInt is PHP's (int) cast: leading digits of a string, truncation of a
// float, 0/1 for booleans.
func phpInt(v any) int {
	switch x := v.(type) {
	case bool:
		if x {
			return 1
		}
		return 0
	case int:
		return x
	case float64:
		return truncInt(x)
	case json.Number:
		if f, err := x.Float64(); err == nil {
			return truncInt(f)
		}
	case string:
		t := strings.TrimLeft(x, " \t\n\r\v\f")
		end := 0
		for end < len(t) && (t[end] >= '0' && t[end] <= '9' || end == 0 && (t[0] == '-' || t[0] == '+')) {
			end++
		}
		if f, ok := phpFloat(t); ok {
			return truncInt(f)
		}
		n, _ := strconv.Atoi(t[:end])
		return n
	}
	return 0
}

func truncInt(f float64) int {
	if math.IsNaN(f) || math.IsInf(f, 0) || math.Abs(f) > 1<<62 {
		return 0
	}
	return int(f)
}

// phpEmpty is PHP's empty().
func phpEmpty(v any) bool {
	switch x := v.(type) {
	case nil:
		return true
	case bool:
		return !x
	case string:
		return x == "" || x == "0"
	case json.Number, float64, int:
		f, _ := phpFloat(x)
		return f == 0
	case []any:
		return len(x) == 0
	case map[string]any:
		return len(x) == 0
	}
	return false
}

// droppedZero is the POST/PATCH quirk of CustomFieldsApiControllerTrait:
// every numeric value whose (int) cast is 0 is removed from the payload, so
// 0, "0", 0.0 and fractions between -1 and 1 never reach the contact.
func droppedZero(v any) bool {
	if _, isBool := v.(bool); isBool {
		return false
	}
	f, ok := phpFloat(v)
	return ok && truncInt(f) == 0
}

// fieldString renders a stored value as the string MySQL would return.
func fieldString(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case int:
		return strconv.Itoa(x)
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	}
	s, _ := phpString(v)
	return s
}

// numberValue renders a number field's value for fields.all: an int when
// integral, else a float.
func numberValue(v any) any {
	f, ok := v.(float64)
	if !ok {
		return v
	}
	if f == math.Trunc(f) && math.Abs(f) < 1<<53 {
		return int(f)
	}
	return f
}

// isoTime formats a date as JMS does ('c', UTC): 2024-10-24T15:54:35+00:00.
func isoTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC().Format("2006-01-02T15:04:05-07:00")
}

// dbTime formats a date as MySQL returns it.
func dbTime(t time.Time) string {
	return t.UTC().Format("2006-01-02 15:04:05")
}

// parseDate accepts the date formats clients send (a strtotime subset).
func parseDate(s string) (time.Time, bool) {
	s = strings.TrimSpace(s)
	for _, layout := range []string{
		time.RFC3339Nano, "2006-01-02 15:04:05", "2006-01-02T15:04:05",
		"2006-01-02 15:04", "2006-01-02", "2006-01-02T15:04:05Z0700",
		"2006-01-02 15:04:05 -0700", time.RFC1123Z, time.RFC1123,
	} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), true
		}
	}
	if rest, ok := strings.CutPrefix(s, "@"); ok {
		if n, err := strconv.ParseInt(rest, 10, 64); err == nil {
			return time.Unix(n, 0).UTC(), true
		}
	}
	return time.Time{}, false
}
