package mautictest

import (
	"net/http"
	"strconv"
	"time"
)

// call is one request that reached a controller.
type call struct {
	s      *Server
	w      http.ResponseWriter
	r      *http.Request
	params map[string]string // route parameters
	body   any               // decoded body: map[string]any, []any or nil
	rec    *Request
	ws     *writeSet
	query  map[string]any // PHP-parsed query, filled lazily
	// itemsDue is when the items handled so far are due to be done: each
	// item's latency is added to it, and the item waits until then, so
	// that timer overshoot does not add up over a batch's items.
	itemsDue time.Time
}

// phpQuery returns the query string parsed the PHP way.
func (c *call) phpQuery() map[string]any {
	if c.query == nil {
		c.query = parsePHPQuery(c.r.URL.RawQuery)
	}
	return c.query
}

// queryString returns a scalar query parameter.
func (c *call) queryString(name string) (string, bool) {
	v, ok := c.phpQuery()[name]
	if !ok {
		return "", false
	}
	s, ok := v.(string)
	return s, ok
}

// bodyMap returns the body as a parameter map.
func (c *call) bodyMap() map[string]any { return asMap(c.body) }

// bodyParam returns a scalar body parameter.
func (c *call) bodyParam(name string) (any, bool) {
	v, ok := c.bodyMap()[name]
	return v, ok
}

// id returns a digits-only route parameter.
func (c *call) id(name string) int {
	n, _ := strconv.Atoi(c.params[name])
	return n
}

// paging reads start and limit (default 30; 0 or less means no limit).
func (c *call) paging() (start, limit int) {
	limit = 30
	if v, ok := c.queryString("start"); ok {
		start = max(phpInt(v), 0)
	}
	if v, ok := c.queryString("limit"); ok {
		limit = max(phpInt(v), 0)
	}
	return start, limit
}

// view writes a controller response (FOSRest view through JMS) with
// Mautic-Version.
func (c *call) view(status int, payload any) {
	c.w.Header().Set("Mautic-Version", c.s.cfg.version)
	c.w.Header().Set("Cache-Control", "no-cache, private")
	writeBody(c.w, status, "application/json", encodePHP(payload, stylePlain))
}

// returnError writes FetchCommonApiController::returnError:
// {"errors":[{"code","message","details"}]} ("type" is null and dropped).
func (c *call) returnError(status int, message string, details any) {
	if details == nil {
		details = []any{}
	}
	c.view(status, obj{{"errors", []any{obj{{"code", status}, {"message", message}, {"details", details}}}}})
}

// returnItemError writes a failed single write.
func (c *call) returnItemError(e *itemError) { c.returnError(e.status, e.message, e.details) }

// notFound writes 404 "Item was not found.".
func (c *call) notFound() { c.returnError(http.StatusNotFound, msgNotFound, nil) }

// exception writes an uncaught exception's response (no Mautic-Version).
func (c *call) exception(status int) { writeExceptionError(c.w, status, "") }

// itemLatency waits the per-item latency once per item: n items of one
// call take n times the latency in all, however late each wait wakes.
func (c *call) itemLatency() {
	c.s.mu.Lock()
	d := c.s.sw.perItem
	c.s.mu.Unlock()
	if d <= 0 {
		return
	}
	now := time.Now()
	if c.itemsDue.IsZero() {
		c.itemsDue = now
	}
	c.itemsDue = c.itemsDue.Add(d)
	c.s.sleep(c.itemsDue.Sub(now))
}
