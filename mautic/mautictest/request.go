package mautictest

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// maxInputVars is PHP's max_input_vars default: form-encoded bodies and
// query strings with more variables are silently truncated.
const maxInputVars = 1000

// errBadJSON is FOSRest's "Invalid json message received".
var errBadJSON = errors.New("invalid json message received")

// decodeBody decodes a request body the way PHP and FOSRest's body listener
// present it to Mautic: form-encoded bodies are parsed like PHP's parse_str
// (nested brackets, max_input_vars), JSON bodies (Content-Type JSON or none)
// decoded into maps and lists with json.Number values. A body of another
// content type is ignored. GET and HEAD bodies are ignored.
func decodeBody(r *http.Request, body []byte) (any, error) {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return nil, nil
	}
	mt, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch {
	case mt == "application/x-www-form-urlencoded":
		return parsePHPQuery(string(body)), nil
	case mt == "multipart/form-data":
		return parseMultipart(body, params["boundary"]), nil
	case mt == "" || mt == "application/json" || strings.HasSuffix(mt, "+json"):
		if len(bytes.TrimSpace(body)) == 0 {
			return nil, nil
		}
		return decodeJSON(body)
	}
	return nil, nil
}

// decodeJSON decodes a JSON body; like PHP's json_decode($s, true) followed
// by FOSRest's is_array check, anything but an object or array is an error.
func decodeJSON(body []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, errBadJSON
	}
	if dec.More() {
		return nil, errBadJSON
	}
	switch v.(type) {
	case map[string]any, []any:
		return v, nil
	}
	return nil, errBadJSON
}

// parseMultipart reads the fields of a multipart/form-data body (files are
// ignored) in order, then parses them like a form.
func parseMultipart(body []byte, boundary string) any {
	if boundary == "" {
		return nil
	}
	mr := multipart.NewReader(bytes.NewReader(body), boundary)
	var pairs []string
	for {
		part, err := mr.NextPart()
		if err != nil {
			break
		}
		if part.FileName() == "" {
			v, _ := io.ReadAll(part)
			pairs = append(pairs, url.QueryEscape(part.FormName())+"="+url.QueryEscape(string(v)))
		}
		_ = part.Close()
	}
	return parsePHPQuery(strings.Join(pairs, "&"))
}

// parsePHPQuery parses a URL-encoded string like PHP's parse_str: "a[b][]=1"
// nests, "[]" appends, and only the first max_input_vars variables count.
func parsePHPQuery(raw string) map[string]any {
	root := map[string]any{}
	n := 0
	for part := range strings.SplitSeq(raw, "&") {
		if part == "" {
			continue
		}
		if n++; n > maxInputVars {
			break
		}
		k, v, _ := strings.Cut(part, "=")
		k, err1 := url.QueryUnescape(k)
		v, err2 := url.QueryUnescape(v)
		if err1 != nil || err2 != nil || k == "" {
			continue
		}
		insertPHP(root, phpKeyPath(k), v)
	}
	return root
}

// phpKeyPath splits "a[b][]" into ["a", "b", ""].
func phpKeyPath(key string) []string {
	i := strings.IndexByte(key, '[')
	if i <= 0 {
		return []string{key}
	}
	path := []string{key[:i]}
	rest := key[i:]
	for len(rest) > 0 && rest[0] == '[' {
		j := strings.IndexByte(rest, ']')
		if j < 0 {
			break
		}
		path = append(path, rest[1:j])
		rest = rest[j+1:]
	}
	return path
}

func insertPHP(m map[string]any, path []string, v string) {
	key := path[0]
	if key == "" {
		key = strconv.Itoa(nextPHPIndex(m))
	}
	if len(path) == 1 {
		m[key] = v
		return
	}
	child, ok := m[key].(map[string]any)
	if !ok {
		child = map[string]any{}
		m[key] = child
	}
	insertPHP(child, path[1:], v)
}

// nextPHPIndex is the index "[]" appends at: one past the largest int key.
func nextPHPIndex(m map[string]any) int {
	next := 0
	for k := range m {
		if i, err := strconv.Atoi(k); err == nil && i >= next {
			next = i + 1
		}
	}
	return next
}

// listOf returns v as a list: a JSON array, or a map whose keys are all
// integers (a PHP list from a form or a JSON object like {"0":..}), in key
// order.
func listOf(v any) ([]any, bool) {
	switch x := v.(type) {
	case []any:
		return x, true
	case map[string]any:
		keys := make([]int, 0, len(x))
		for k := range x {
			i, err := strconv.Atoi(k)
			if err != nil {
				return nil, false
			}
			keys = append(keys, i)
		}
		slices.Sort(keys)
		out := make([]any, 0, len(keys))
		for _, k := range keys {
			out = append(out, x[strconv.Itoa(k)])
		}
		return out, true
	}
	return nil, false
}

// asMap returns v as a parameter map; a JSON array becomes an int-keyed map
// as PHP would see it.
func asMap(v any) map[string]any {
	switch x := v.(type) {
	case map[string]any:
		return x
	case []any:
		m := make(map[string]any, len(x))
		for i, e := range x {
			m[strconv.Itoa(i)] = e
		}
		return m
	}
	return map[string]any{}
}

// deepCopy copies decoded request values.
func deepCopy(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = deepCopy(e)
		}
		return m
	case []any:
		l := make([]any, len(x))
		for i, e := range x {
			l[i] = deepCopy(e)
		}
		return l
	}
	return v
}

// authKind classifies the credentials a request carries for Request.Auth:
// "basic", "bearer" (header, query or form access_token) or "none".
func authKind(r *http.Request, body []byte) string {
	switch {
	case isBasicHeader(r):
		return "basic"
	case bearerRe.MatchString(r.Header.Get("Authorization")), r.URL.Query().Has("access_token"):
		return "bearer"
	case bytes.Contains(body, []byte("access_token")):
		if payload, err := decodeBody(r, body); err == nil && formToken(r, payload) != "" {
			return "bearer"
		}
	}
	return "none"
}

// formToken is an access_token sent in a form-encoded body, which
// oauth2-php accepts (not in a JSON body).
func formToken(r *http.Request, payload any) string {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if r.Method == http.MethodGet || mt != "application/x-www-form-urlencoded" {
		return ""
	}
	t, _ := asMap(payload)["access_token"].(string)
	return t
}
