package mautictest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"unicode/utf8"
)

// Mautic's JSON comes from two PHP encoders. Controllers serialise through
// JMS (json_encode with default flags: "/" and non-ASCII escaped). Symfony's
// JsonResponse, used by ApiSubscriber and ExceptionController, also sets
// JSON_HEX_TAG|JSON_HEX_APOS|JSON_HEX_AMP|JSON_HEX_QUOT, which is why the
// api_disabled message reads "Mautic\u0027s". Both are reproduced byte for
// byte by encodePHP.

// jsonStyle selects the PHP encoder being imitated.
type jsonStyle int

const (
	// stylePlain is json_encode with default flags (JMS, oauth2-php).
	stylePlain jsonStyle = iota
	// styleHex is Symfony's JsonResponse (the JSON_HEX_* flags).
	styleHex
)

// obj is a JSON object that keeps its keys in insertion order, as a PHP
// associative array does.
type obj []kv

// kv is one member of an obj.
type kv struct {
	k string
	v any
}

// get returns the value stored under k.
func (o obj) get(k string) (any, bool) {
	for _, f := range o {
		if f.k == k {
			return f.v, true
		}
	}
	return nil, false
}

// setKey sets k in o, keeping its position when it exists (PHP semantics).
func setKey(o obj, k string, v any) obj {
	for i := range o {
		if o[i].k == k {
			o[i].v = v
			return o
		}
	}
	return append(o, kv{k, v})
}

// phpArray is an int-keyed PHP array that keeps insertion order. Like
// json_encode, it encodes as a JSON list only when its keys are exactly
// 0..n-1 in order, and as an object keyed by index otherwise. This is how a
// batch response's "contacts" turns into an object once an item fails.
type phpArray struct {
	keys []int
	vals map[int]any
}

func newPHPArray() *phpArray { return &phpArray{vals: map[int]any{}} }

// set stores v under k, keeping k's position when it already exists.
func (a *phpArray) set(k int, v any) {
	if _, ok := a.vals[k]; !ok {
		a.keys = append(a.keys, k)
	}
	a.vals[k] = v
}

// unset removes k.
func (a *phpArray) unset(k int) {
	if _, ok := a.vals[k]; !ok {
		return
	}
	delete(a.vals, k)
	a.keys = slices.DeleteFunc(a.keys, func(x int) bool { return x == k })
}

func (a *phpArray) len() int { return len(a.keys) }

func (a *phpArray) isList() bool {
	for i, k := range a.keys {
		if k != i {
			return false
		}
	}
	return true
}

// encodePHP encodes v the way the chosen PHP encoder would. It supports the
// value types this package builds responses from.
func encodePHP(v any, style jsonStyle) []byte {
	var b bytes.Buffer
	writeValue(&b, v, style)
	return b.Bytes()
}

func writeValue(b *bytes.Buffer, v any, style jsonStyle) {
	switch x := v.(type) {
	case nil:
		b.WriteString("null")
	case bool:
		b.WriteString(strconv.FormatBool(x))
	case int:
		b.WriteString(strconv.Itoa(x))
	case int64:
		b.WriteString(strconv.FormatInt(x, 10))
	case float64:
		writeFloat(b, x)
	case json.Number:
		b.WriteString(x.String())
	case string:
		writeString(b, x, style)
	case obj:
		b.WriteByte('{')
		for i, f := range x {
			if i > 0 {
				b.WriteByte(',')
			}
			writeString(b, f.k, style)
			b.WriteByte(':')
			writeValue(b, f.v, style)
		}
		b.WriteByte('}')
	case *phpArray:
		if x.isList() {
			writeList(b, x.keys, func(k int) { writeValue(b, x.vals[k], style) })
			return
		}
		b.WriteByte('{')
		for i, k := range x.keys {
			if i > 0 {
				b.WriteByte(',')
			}
			writeString(b, strconv.Itoa(k), style)
			b.WriteByte(':')
			writeValue(b, x.vals[k], style)
		}
		b.WriteByte('}')
	case []any:
		writeList(b, x, func(e any) { writeValue(b, e, style) })
	case []obj:
		writeList(b, x, func(e obj) { writeValue(b, e, style) })
	case []string:
		writeList(b, x, func(e string) { writeString(b, e, style) })
	case []int:
		writeList(b, x, func(e int) { b.WriteString(strconv.Itoa(e)) })
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		o := make(obj, 0, len(keys))
		for _, k := range keys {
			o = append(o, kv{k, x[k]})
		}
		writeValue(b, o, style)
	default:
		// Not reached by this package's own values; keep output valid JSON.
		writeString(b, fmt.Sprint(x), style)
	}
}

// writeList writes a JSON array of xs, each element by each.
func writeList[T any](b *bytes.Buffer, xs []T, each func(T)) {
	b.WriteByte('[')
	for i, e := range xs {
		if i > 0 {
			b.WriteByte(',')
		}
		each(e)
	}
	b.WriteByte(']')
}

func writeFloat(b *bytes.Buffer, f float64) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		b.WriteString("0")
		return
	}
	if f == math.Trunc(f) && math.Abs(f) < 1e15 {
		// JMS sets JSON_PRESERVE_ZERO_FRACTION.
		b.WriteString(strconv.FormatFloat(f, 'f', 1, 64))
		return
	}
	b.WriteString(strconv.FormatFloat(f, 'g', -1, 64))
}

const hexDigits = "0123456789abcdef"

// writeString writes s as PHP's json_encode does: "/" as "\/", non-ASCII
// as \uXXXX (lower-case hex, UTF-16 surrogate pairs) and, for styleHex,
// < > & ' " as \u003C \u003E \u0026 \u0027 \u0022.
func writeString(b *bytes.Buffer, s string, style jsonStyle) {
	b.WriteByte('"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			i++
			switch {
			case c == '"' && style == styleHex:
				b.WriteString(`\u0022`)
			case c == '"':
				b.WriteString(`\"`)
			case c == '\\':
				b.WriteString(`\\`)
			case c == '/':
				b.WriteString(`\/`)
			case c == '\b':
				b.WriteString(`\b`)
			case c == '\f':
				b.WriteString(`\f`)
			case c == '\n':
				b.WriteString(`\n`)
			case c == '\r':
				b.WriteString(`\r`)
			case c == '\t':
				b.WriteString(`\t`)
			case c < 0x20:
				b.WriteString(`\u00`)
				b.WriteByte(hexDigits[c>>4])
				b.WriteByte(hexDigits[c&0xF])
			case style == styleHex && c == '<':
				b.WriteString(`\u003C`)
			case style == styleHex && c == '>':
				b.WriteString(`\u003E`)
			case style == styleHex && c == '&':
				b.WriteString(`\u0026`)
			case style == styleHex && c == '\'':
				b.WriteString(`\u0027`)
			default:
				b.WriteByte(c)
			}
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		if r >= 0x10000 {
			r -= 0x10000
			writeU16(b, 0xD800+(r>>10))
			writeU16(b, 0xDC00+(r&0x3FF))
			continue
		}
		writeU16(b, r)
	}
	b.WriteByte('"')
}

func writeU16(b *bytes.Buffer, r rune) {
	b.WriteString(`\u`)
	for shift := 12; shift >= 0; shift -= 4 {
		b.WriteByte(hexDigits[(r>>shift)&0xF])
	}
}
