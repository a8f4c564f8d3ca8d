package mautictest

import (
	"fmt"
	"net/http"
	"strings"
)

// Mautic has three producers of JSON errors, each with its own element
// shape and key order (reference section 2); plus HTML pages from PHP
// fatals, proxies and maintenance mode, and the rate limiter's literal body.

// Messages used by more than one handler.
const (
	msgNotFound        = "Item was not found."
	msgContactNotFound = "Contact not found."
	msgBadRequest      = "This is a bad request."
	msgIDMissing       = "ID is missing from the payload."
	msgAPIDisabled     = "API disabled. You need to enable the API in the API settings of Mautic's Configuration."
	msgBasicDisabled   = "Basic Auth disabled. You need to enable HTTP basic auth in the API settings of Mautic's Configuration."
	msgNoCredentials   = "API authorization denied."
	msgBadBasic        = "Authorization denied, invalid credentials."
	msgTokenInvalid    = "The access token provided is invalid."
	msgTokenExpired    = "The access token provided has expired."
	msgOneAuthMethod   = "Only one method may be used to authenticate at a time (Auth header, GET or POST)."
)

// genericMessage is ExceptionController's text for exceptions whose message
// it does not show.
func genericMessage(status int) string {
	return fmt.Sprintf("Looks like I encountered an error (error #%d). If I do it again, please report me to the system administrator!", status)
}

// itemError is a failed batch item or a failed single write, before it is
// rendered in one of the two shapes Mautic uses for it.
type itemError struct {
	status  int
	message string
	// details is nil for controller-level errors ({message,code,type:"api"}
	// in batches) and an obj or []any for validation errors.
	details any
}

// batchShape renders e as an element of a batch response's "errors".
func (e *itemError) batchShape() obj {
	if e.details == nil {
		return obj{{"message", e.message}, {"code", e.status}, {"type", "api"}}
	}
	return obj{{"code", e.status}, {"message", e.message}, {"details", e.details}, {"type", nil}}
}

// writeBody writes a complete response.
func writeBody(w http.ResponseWriter, status int, contentType string, body []byte) {
	if contentType != "" {
		w.Header().Set("Content-Type", contentType)
	}
	w.Header().Set("Content-Length", fmt.Sprint(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// writeSubscriberError writes an ApiSubscriber error (api disabled, basic
// auth, OAuth): {"errors":[{"message","code","type"}]} from a JsonResponse,
// without Mautic-Version.
func writeSubscriberError(w http.ResponseWriter, status int, message, typ string) {
	body := obj{{"errors", []any{obj{{"message", message}, {"code", status}, {"type", typ}}}}}
	w.Header().Set("Cache-Control", "no-cache, private")
	writeBody(w, status, "application/json", encodePHP(body, styleHex))
}

// writeExceptionError writes ExceptionController's JSON:
// {"errors":[{"message","code","type":null}]}, without Mautic-Version. An
// empty message stands for the generic text.
func writeExceptionError(w http.ResponseWriter, status int, message string) {
	if message == "" {
		message = genericMessage(status)
	}
	body := obj{{"errors", []any{obj{{"message", message}, {"code", status}, {"type", nil}}}}}
	w.Header().Set("Cache-Control", "no-cache, private")
	writeBody(w, status, "application/json", encodePHP(body, styleHex))
}

// rateLimitBody is the rate limiter's literal response, spaces included.
func rateLimitBody(limit int) []byte {
	return fmt.Appendf(nil, `{ "errors": [ { "code": 429, "message": "You exceeded the rate limit of %d API calls per hour.", "details": [] } ]}`, limit)
}

// writeHTMLPage writes an HTML error page like the ones a PHP fatal error,
// Mautic's maintenance mode ("Site is offline") or a reverse proxy produce.
func writeHTMLPage(w http.ResponseWriter, status int) {
	text := http.StatusText(status)
	if text == "" {
		text = "Error"
	}
	var page string
	switch {
	case status == http.StatusServiceUnavailable:
		page = `<!DOCTYPE html>
<html>
<head>
    <meta charset="UTF-8" />
    <title>Site is offline</title>
</head>
<body>
    <h2>Site is offline</h2>
    <p>The site is currently offline due to maintenance. Please check back later.</p>
</body>
</html>
`
	case status == http.StatusNotFound:
		page = `<!DOCTYPE html>
<html>
<head><meta charset="UTF-8" /><title>404 Not Found</title></head>
<body><h1>Not Found</h1><p>The requested URL was not found on this server.</p></body>
</html>
`
	case status >= 500:
		page = fmt.Sprintf("<html>\r\n<head><title>%d %s</title></head>\r\n<body>\r\n<center><h1>%d %s</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n",
			status, text, status, text)
	default:
		page = fmt.Sprintf("<!DOCTYPE html>\n<html>\n<head><title>%d %s</title></head>\n<body><h1>%s</h1></body>\n</html>\n",
			status, text, text)
	}
	writeBody(w, status, "text/html; charset=UTF-8", []byte(page))
}

// writeRaw writes an injected response (FailNext).
func writeRaw(w http.ResponseWriter, status int, body, contentType string) {
	if strings.TrimSpace(contentType) == "" {
		contentType = http.DetectContentType([]byte(body))
	}
	writeBody(w, status, contentType, []byte(body))
}
