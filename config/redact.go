package config

import "strings"

// redactedURL hides what may be credentials in a URL that need not parse:
// everything between the scheme and the last '@' ("user:password@").
func redactedURL(s string) string {
	at := strings.LastIndexByte(s, '@')
	if at < 0 {
		return s
	}
	scheme := ""
	if i := strings.Index(s, "://"); i >= 0 && i < at {
		scheme = s[:i+3]
	}
	return scheme + "redacted" + s[at:]
}
