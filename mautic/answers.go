package mautic

// Decoders of the answers that carry contacts (issue #6). Mautic answers
// batch/new, batch/edit, batch/delete and contact searches with every
// contact in full, each field with its metadata (about 6 KB a contact,
// 1.2 MB for a batch of 200), but the client needs only each contact's
// top-level id (and, for searches, its email). These decoders walk the
// answer with gjson and read only that, skipping each contact's other
// members without decoding them.
//
// They accept and refuse what encoding/json did on the declarations they
// replace (kept as the reference in answers_test.go, which checks the two
// against each other): member names matched case-insensitively and the
// last of duplicate members winning, an id that is a JSON integer or null
// (a string, a fraction or an out-of-range number is an error), `contacts`
// and `errors` as an array, an object keyed by decimal item index (PHP
// arrays) or null. One deliberate difference: a search answer is no longer
// refused for a number beyond float64's range in some field of a contact.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
	"unsafe"

	"github.com/tidwall/gjson"
)

// answer is the value a call decodes its body into. It decodes itself in
// one of two ways:
//   - UnmarshalJSON, when Client.do decodes the body with encoding/json,
//     which has already checked that it is JSON (and buffered and scanned
//     it whole);
//   - decodeBody, given the whole body (see readAnswer), which checks it
//     with validJSON first.
//
// Either way, a body that is JSON but not the answer expected leaves its
// error in err (not returned to the JSON decoder), for the caller to report
// with its context.
type answer[T any] struct {
	parse   func(js string) (T, error)
	decoded bool
	val     T
	err     error
}

// UnmarshalJSON decodes b, a valid JSON value. Nothing retains b.
func (a *answer[T]) UnmarshalJSON(b []byte) error {
	a.val, a.err = a.parse(bytesString(b))
	a.decoded = true
	return nil
}

// decodeBody decodes a whole body. Nothing retains body.
func (a *answer[T]) decodeBody(body []byte) error {
	if !validJSON(body) {
		return errors.New("not valid JSON")
	}
	return a.UnmarshalJSON(body)
}

// result is the decoded answer. A body that never reached the decoder is
// taken for null.
func (a *answer[T]) result() (T, error) {
	if !a.decoded {
		return a.parse("null")
	}
	return a.val, a.err
}

// bodyDecoder is a value that decodes itself from the whole body of an
// answer, without encoding/json: see readAnswer.
type bodyDecoder interface {
	decodeBody(body []byte) error
}

// answerReader reads answers' bodies into buffers it reuses (one per
// Client).
type answerReader struct{ bufs sync.Pool }

// maxPooledBody bounds the buffers kept for reuse.
const maxPooledBody = 8 << 20

// readAnswer reads a successful answer's body whole (at most maxBody
// bytes; size is its Content-Length, or -1) into a reused buffer and
// hands it to d. It is the cheap alternative to decoding with a
// json.Decoder, which grows a buffer of its own by doubling and scans the
// body twice before d sees it (4.2 MB and about 10 ms for a 200-contact
// answer, against 3.5 ms and a few KB here). Client.do calls it for a v
// that is a bodyDecoder.
func (ar *answerReader) readAnswer(r io.Reader, size int64, d bodyDecoder) error {
	buf, _ := ar.bufs.Get().(*bytes.Buffer)
	if buf == nil {
		buf = new(bytes.Buffer)
	}
	defer func() {
		if buf.Cap() <= maxPooledBody {
			buf.Reset()
			ar.bufs.Put(buf)
		}
	}()
	buf.Reset()
	if size > 0 && size < maxBody {
		buf.Grow(int(size) + bytes.MinRead) // room for the read that sees EOF
	}
	if _, err := buf.ReadFrom(io.LimitReader(r, maxBody)); err != nil {
		return err
	}
	return d.decodeBody(buf.Bytes())
}

// maxFastBrackets is how many '{' and '[' a body may hold to be checked
// by gjson.ValidBytes. It recurses once per level of nesting, so a body
// nested a few million deep overflows the goroutine stack, which is fatal
// (measured: 8 MB of '['); a body with more brackets than this is checked
// by encoding/json instead, which refuses nesting deeper than 10000. A
// 200-contact answer of the fake holds about 14,000.
const maxFastBrackets = 1 << 16

// validJSON reports whether b is exactly one JSON value.
func validJSON(b []byte) bool {
	if bytes.Count(b, []byte{'{'})+bytes.Count(b, []byte{'['}) > maxFastBrackets {
		return json.Valid(b)
	}
	return gjson.ValidBytes(b)
}

// bytesString is b as a string without copying. Parsers use it on bodies
// and never retain it: whatever they return is copied out (strings.Clone,
// json.Unmarshal), so the body's buffer can be reused.
func bytesString(b []byte) string {
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// kindOf is the first byte of a JSON value ('{', '[', '"', 'n', 't', 'f', a
// digit or '-'), or 0 for a missing one.
func kindOf(v gjson.Result) byte {
	if v.Raw == "" {
		return 0
	}
	return v.Raw[0]
}

func isNumber(k byte) bool { return k == '-' || k >= '0' && k <= '9' }

// unquote decodes a JSON string literal as encoding/json does (invalid
// UTF-8 and lone surrogates become U+FFFD). The result may share memory
// with raw.
func unquote(raw string) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return "", false
	}
	s := raw[1 : len(raw)-1]
	if strings.IndexByte(s, '\\') < 0 && utf8.ValidString(s) {
		return s, true
	}
	var out string
	if err := json.Unmarshal([]byte(raw), &out); err != nil {
		return "", false
	}
	return out, true
}

// eachMember calls fn with each member of obj, a JSON object, in order.
func eachMember(obj gjson.Result, fn func(name string, v gjson.Result) error) error {
	var err error
	obj.ForEach(func(k, v gjson.Result) bool {
		name, ok := unquote(k.Raw)
		if !ok {
			err = fmt.Errorf("bad member name %.20q", k.Raw)
			return false
		}
		err = fn(name, v)
		return err == nil
	})
	return err
}

// eachElement calls fn with each element of arr, a JSON array, in order.
func eachElement(arr gjson.Result, fn func(i int, v gjson.Result) error) error {
	var err error
	i := 0
	arr.ForEach(func(_, v gjson.Result) bool {
		err = fn(i, v)
		i++
		return err == nil
	})
	return err
}

// eachIndexed calls fn with each element of v, a JSON array or an object
// keyed by decimal index, with its index; null or missing has none.
func eachIndexed(v gjson.Result, fn func(i int, el gjson.Result) error) error {
	switch kindOf(v) {
	case 0, 'n':
		return nil
	case '[':
		return eachElement(v, fn)
	case '{':
		return eachMember(v, func(name string, el gjson.Result) error {
			i, err := strconv.Atoi(name)
			if err != nil {
				return fmt.Errorf("key %q is not an item index", name)
			}
			return fn(i, el)
		})
	}
	return fmt.Errorf("want an array or object, got %.20q", v.Raw)
}

// setInt sets *dst to v, a JSON integer; null leaves it unchanged.
func setInt(dst *int, v gjson.Result) error {
	k := kindOf(v)
	if k == 'n' {
		return nil
	}
	if isNumber(k) {
		if n, err := strconv.ParseInt(v.Raw, 10, strconv.IntSize); err == nil {
			*dst = int(n)
			return nil
		}
	}
	return fmt.Errorf("want an integer, got %.20q", v.Raw)
}

// topMember returns the last member of the top-level object js matching
// name (case-insensitively); null has none. It calls also, when not nil,
// with every member.
func topMember(js, name string, also func(name string, v gjson.Result) error) (gjson.Result, error) {
	top := gjson.Parse(js)
	var found gjson.Result
	switch kindOf(top) {
	case 'n':
		return found, nil
	case '{':
		err := eachMember(top, func(n string, v gjson.Result) error {
			if strings.EqualFold(n, name) {
				found = v
			}
			if also != nil {
				return also(n, v)
			}
			return nil
		})
		return found, err
	}
	return found, fmt.Errorf("want a JSON object, got %.20q", top.Raw)
}

// contactID reads a contact's top-level id: 0 for null or no id.
func contactID(c gjson.Result) (int, error) {
	switch kindOf(c) {
	case 'n':
		return 0, nil
	case '{':
		id := 0
		err := eachMember(c, func(name string, v gjson.Result) error {
			if strings.EqualFold(name, "id") {
				return setInt(&id, v)
			}
			return nil
		})
		return id, err
	}
	return 0, fmt.Errorf("want a contact, got %.20q", c.Raw)
}

// parseBatch reads the answer of /contacts/batch/new and /batch/edit
// ({"contacts":..,"statusCodes":[..],"errors":..}) for the n items sent.
// `contacts` and `errors` are arrays when their keys are 0..k, else
// objects keyed by the original item index.
func parseBatch(js string, n int) ([]ItemResult, error) {
	var codes []int
	var errs gjson.Result
	contacts, err := topMember(js, "contacts", func(name string, v gjson.Result) error {
		if strings.EqualFold(name, "errors") {
			errs = v
		}
		if !strings.EqualFold(name, "statusCodes") {
			return nil
		}
		switch kindOf(v) {
		case 'n':
			codes = nil
			return nil
		case '[':
			// As encoding/json decodes into a slice it already holds: a
			// null element of a repeated statusCodes keeps what the one
			// before had there.
			if cap(codes) == 0 {
				codes = make([]int, 0, n)
			}
			i := 0
			err := eachElement(v, func(_ int, el gjson.Result) error {
				switch {
				case i < len(codes):
				case i < cap(codes):
					codes = codes[:i+1]
				default:
					codes = append(codes, 0)
				}
				err := setInt(&codes[i], el)
				i++
				return err
			})
			codes = codes[:i]
			if i == 0 {
				codes = []int{}
			}
			return err
		}
		return fmt.Errorf("want an array, got %.20q", v.Raw)
	})
	if err != nil {
		return nil, fmt.Errorf("decode answer: %w", err)
	}
	if len(codes) != n {
		return nil, fmt.Errorf("response has %d status codes for %d items", len(codes), n)
	}
	out := make([]ItemResult, n)
	for i, c := range codes {
		out[i].Status = c
	}
	err = eachIndexed(contacts, func(i int, c gjson.Result) error {
		id, err := contactID(c)
		if i >= 0 && i < n {
			out[i].ContactID = id
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("decode contacts: %w", err)
	}
	var details []*ErrorDetail
	err = eachIndexed(errs, func(i int, e gjson.Result) error {
		d := new(ErrorDetail)
		if err := json.Unmarshal([]byte(e.Raw), d); err != nil {
			return err
		}
		if i >= 0 && i < n {
			if details == nil {
				details = make([]*ErrorDetail, n)
			}
			details[i] = d
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("decode errors: %w", err)
	}
	for i := range out {
		if details != nil && details[i] != nil {
			out[i].Error = details[i]
			if out[i].Status < 300 { // a contradiction: trust the error
				out[i].Status = max(details[i].Code, http.StatusBadRequest)
			}
		} else if out[i].Status >= 200 && out[i].Status < 300 && out[i].ContactID <= 0 {
			out[i].Error = &ErrorDetail{Code: out[i].Status, Message: "Mautic reported success but returned no contact"}
			out[i].Status = http.StatusBadGateway
		}
	}
	return out, nil
}

// parseDeleted reads the answer of /contacts/batch/delete: the ids of the
// contacts it lists, in the order of their keys.
func parseDeleted(js string) ([]int, error) {
	contacts, err := topMember(js, "contacts", nil)
	if err != nil {
		return nil, fmt.Errorf("decode answer: %w", err)
	}
	type entry struct{ index, id int }
	var got []entry
	err = eachIndexed(contacts, func(i int, c gjson.Result) error {
		id, err := contactID(c)
		got = append(got, entry{i, id})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("decode contacts: %w", err)
	}
	// By index; of duplicate keys ("1", "01"), the last.
	slices.SortStableFunc(got, func(a, b entry) int { return a.index - b.index })
	ids := make([]int, 0, len(got))
	for j, e := range got {
		if j+1 < len(got) && got[j+1].index == e.index {
			continue
		}
		ids = append(ids, e.id)
	}
	return ids, nil
}

type listedContact struct {
	id    int
	email string
}

// parseContactList reads a contact search answer: {"total":..,"contacts":
// {"<id>":{...}}}, contacts being [] when empty. Of duplicate keys, the
// last counts.
func parseContactList(js string) ([]listedContact, error) {
	contacts, err := topMember(js, "contacts", nil)
	if err != nil {
		return nil, fmt.Errorf("decode answer: %w", err)
	}
	var out []listedContact
	switch kindOf(contacts) {
	case 0, 'n':
	case '[':
		err = eachElement(contacts, func(_ int, c gjson.Result) error {
			lc, err := listed(c)
			out = append(out, lc)
			return err
		})
	case '{':
		var seen map[string]int
		err = eachMember(contacts, func(key string, c gjson.Result) error {
			lc, err := listed(c)
			if j, dup := seen[key]; dup {
				out[j] = lc
				return err
			}
			if seen == nil {
				seen = map[string]int{}
			}
			seen[key] = len(out)
			out = append(out, lc)
			return err
		})
	default:
		err = fmt.Errorf("want an array or object, got %.20q", contacts.Raw)
	}
	if err != nil {
		return nil, fmt.Errorf("decode contacts: %w", err)
	}
	return out, nil
}

// listed reads a listed contact's id and fields.all.email. Like the
// encoding/json decode it replaces, repeated "fields" and "all" members
// merge, and an "all" that is null drops the email read before.
func listed(c gjson.Result) (listedContact, error) {
	var lc listedContact
	switch kindOf(c) {
	case 'n':
		return lc, nil
	case '{':
	default:
		return lc, fmt.Errorf("want a contact, got %.20q", c.Raw)
	}
	all := func(name string, v gjson.Result) error {
		if name != "email" {
			return nil
		}
		lc.email = ""
		if kindOf(v) == '"' {
			s, _ := unquote(v.Raw)
			lc.email = strings.Clone(s) // not the body's memory
		}
		return nil
	}
	fields := func(name string, v gjson.Result) error {
		if !strings.EqualFold(name, "all") {
			return nil
		}
		switch kindOf(v) {
		case 'n':
			lc.email = ""
			return nil
		case '{':
			return eachMember(v, all)
		}
		return fmt.Errorf("want fields.all as an object, got %.20q", v.Raw)
	}
	err := eachMember(c, func(name string, v gjson.Result) error {
		switch {
		case strings.EqualFold(name, "id"):
			return setInt(&lc.id, v)
		case strings.EqualFold(name, "fields"):
			switch kindOf(v) {
			case 'n':
				return nil
			case '{':
				return eachMember(v, fields)
			}
			return fmt.Errorf("want fields as an object, got %.20q", v.Raw)
		}
		return nil
	})
	return lc, err
}
