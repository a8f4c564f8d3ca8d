package mautictest

import (
	"net/http"
	"slices"
	"strings"
)

// route is one API route below /api. Pattern segments in braces are
// parameters; names ending in "id" (or "id" itself) must be digits, as
// Mautic's CoreSubscriber requires.
type route struct {
	methods []string
	pattern []string
	handle  func(*Server, *call)
	// touch is set on routes that write contacts; it names the contacts
	// they touch for MaxConcurrentWritesPerContact and the duplicate race.
	touch touchFunc
}

func newRoute(methods, pattern string, touch touchFunc, h func(*Server, *call)) *route {
	return &route{
		methods: strings.Split(methods, "|"),
		pattern: strings.Split(strings.Trim(pattern, "/"), "/"),
		handle:  h,
		touch:   touch,
	}
}

// routes lists the implemented Mautic API routes. As with Symfony, the
// first route whose path matches and accepts the method wins; a path that
// matches only with other methods is a 405.
var routes = []*route{
	newRoute("GET", "/contacts", nil, (*Server).handleList),
	newRoute("POST", "/contacts/new", touchNew, (*Server).handleNew),
	newRoute("POST", "/contacts/batch/new", touchBatchNew, (*Server).handleBatchNew),
	newRoute("PUT|PATCH", "/contacts/batch/edit", touchBatchEdit, (*Server).handleBatchEdit),
	newRoute("DELETE", "/contacts/batch/delete", touchBatchDelete, (*Server).handleBatchDelete),
	newRoute("GET", "/contacts/{id}", nil, (*Server).handleGet),
	newRoute("PUT|PATCH", "/contacts/{id}/edit", touchEdit, (*Server).handleEdit),
	newRoute("DELETE", "/contacts/{id}/delete", touchParam("id"), (*Server).handleDelete),
	newRoute("GET", "/contacts/{id}/segments", nil, (*Server).handleContactSegments),
	newRoute("POST", "/contacts/{id}/dnc/{channel}/add", touchParam("id"), (*Server).handleDNCAdd),
	newRoute("POST", "/contacts/{id}/dnc/{channel}/remove", touchParam("id"), (*Server).handleDNCRemove),
	newRoute("POST", "/contacts/{leadId}/points/{operator}/{delta}", touchParam("leadId"), (*Server).handlePoints),
	newRoute("GET", "/fields/{object}", nil, (*Server).handleFields),
	newRoute("GET", "/segments", nil, (*Server).handleSegmentList),
	newRoute("GET", "/segments/{id}", nil, (*Server).handleSegmentGet),
	newRoute("POST", "/segments/{id}/contact/{contactId}/add", touchParam("contactId"), (*Server).handleSegmentAdd),
	newRoute("POST", "/segments/{id}/contact/{contactId}/remove", touchParam("contactId"), (*Server).handleSegmentRemove),
	newRoute("POST", "/segments/{id}/contacts/add", touchSegmentMany, (*Server).handleSegmentAddMany),
}

// matchRoute finds the route for method and path (below /api). When the
// path exists only for other methods, it returns those methods.
func matchRoute(method, path string) (*route, map[string]string, []string) {
	segs := strings.Split(strings.TrimPrefix(path, "/"), "/")
	var allowed []string
	for _, rt := range routes {
		params, ok := rt.match(segs)
		if !ok {
			continue
		}
		if rt.accepts(method) {
			return rt, params, nil
		}
		for _, m := range rt.methods {
			if !slices.Contains(allowed, m) {
				allowed = append(allowed, m)
			}
		}
	}
	return nil, nil, allowed
}

func (rt *route) accepts(method string) bool {
	if method == http.MethodHead {
		method = http.MethodGet
	}
	return slices.Contains(rt.methods, method)
}

func (rt *route) match(segs []string) (map[string]string, bool) {
	if len(segs) != len(rt.pattern) {
		return nil, false
	}
	var params map[string]string
	for i, p := range rt.pattern {
		if !strings.HasPrefix(p, "{") {
			if segs[i] != p {
				return nil, false
			}
			continue
		}
		name := strings.Trim(p, "{}")
		if segs[i] == "" || (strings.HasSuffix(strings.ToLower(name), "id") && !isDigits(segs[i])) {
			return nil, false
		}
		if params == nil {
			params = map[string]string{}
		}
		params[name] = segs[i]
	}
	return params, true
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
