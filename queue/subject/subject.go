// Package subject has NATS subject rules that both configuration checks
// and the queue need, without importing the NATS client.
package subject

import "strings"

// Valid reports whether s is a NATS subject; the wildcards * and > (last
// token only) are allowed when wild is true.
func Valid(s string, wild bool) bool {
	if s == "" {
		return false
	}
	toks := strings.Split(s, ".")
	for i, t := range toks {
		if t == "" || strings.ContainsAny(t, " \t\r\n") {
			return false
		}
		if !wild && (t == "*" || t == ">") {
			return false
		}
		if t == ">" && i != len(toks)-1 {
			return false
		}
	}
	return true
}

// Matches reports whether the filter (which may hold * and >) captures the
// subject.
func Matches(filter, subject string) bool {
	f := strings.Split(filter, ".")
	s := strings.Split(subject, ".")
	for i, t := range f {
		if t == ">" {
			return len(s) > i
		}
		if i >= len(s) || (t != "*" && t != s[i]) {
			return false
		}
	}
	return len(f) == len(s)
}
