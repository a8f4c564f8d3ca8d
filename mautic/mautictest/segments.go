package mautictest

import (
	"net/http"
	"slices"
	"strconv"
)

// Segment endpoints (ListApiController). There is no batch-remove route.

// segmentJSON renders a segment for the segment list endpoints.
func segmentJSON(sg segment) obj {
	return obj{
		{"isPublished", true},
		{"id", sg.id},
		{"name", sg.name},
		{"alias", sg.alias},
		{"description", nil},
		{"isGlobal", true},
		{"isPreferenceCenter", false},
		{"filters", []any{}},
	}
}

func (s *Server) sortedSegmentIDs() []int {
	ids := make([]int, 0, len(s.segments))
	for id := range s.segments {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// handleSegmentList serves GET /api/segments: {"total":N,"lists":{...}}.
func (s *Server) handleSegmentList(c *call) {
	lists := obj{}
	for _, id := range s.sortedSegmentIDs() {
		lists = append(lists, kv{strconv.Itoa(id), segmentJSON(s.segments[id])})
	}
	c.view(http.StatusOK, obj{{"total", len(lists)}, {"lists", lists}})
}

// handleSegmentGet serves GET /api/segments/{id}: {"list":{...}}.
func (s *Server) handleSegmentGet(c *call) {
	sg, ok := s.segments[c.id("id")]
	if !ok {
		c.notFound()
		return
	}
	c.view(http.StatusOK, obj{{"list", segmentJSON(sg)}})
}

// segmentMembership adds or removes one contact: 404 "Item was not found."
// for an unknown segment, 404 "Contact not found." for an unknown contact,
// else 200 {"success":1} (also when nothing changed).
func (s *Server) segmentMembership(c *call, add bool) {
	if _, ok := s.segments[c.id("id")]; !ok {
		c.notFound()
		return
	}
	c.itemLatency()
	s.mu.Lock()
	ct := s.st.contacts[c.id("contactId")]
	if ct != nil {
		s.setMemberLocked(ct, c.id("id"), add)
	}
	s.mu.Unlock()
	if ct == nil {
		c.returnError(http.StatusNotFound, msgContactNotFound, nil)
		return
	}
	c.view(http.StatusOK, obj{{"success", 1}})
}

func (s *Server) setMemberLocked(ct *contact, segmentID int, add bool) {
	if !add {
		delete(ct.segments, segmentID)
		return
	}
	if _, ok := ct.segments[segmentID]; !ok {
		ct.segments[segmentID] = s.now().UTC()
	}
}

// handleSegmentAdd serves POST /api/segments/{id}/contact/{contactId}/add.
func (s *Server) handleSegmentAdd(c *call) { s.segmentMembership(c, true) }

// handleSegmentRemove serves POST /api/segments/{id}/contact/{contactId}/remove.
func (s *Server) handleSegmentRemove(c *call) { s.segmentMembership(c, false) }

// handleSegmentAddMany serves POST /api/segments/{id}/contacts/add with body
// {"ids":[...]}: {"success":1,"details":{"<id>":{"success":bool}}}, false
// for contacts that do not exist. Without ids: 400.
func (s *Server) handleSegmentAddMany(c *call) {
	if _, ok := s.segments[c.id("id")]; !ok {
		c.notFound()
		return
	}
	raw, present := c.bodyParam("ids")
	ids, isList := listOf(raw)
	if !present || raw == nil {
		c.returnError(http.StatusBadRequest, msgBadRequest, nil)
		return
	}
	if !isList {
		ids = []any{raw}
	}
	c.rec.Items = len(ids)
	for range ids {
		c.itemLatency()
	}
	details := obj{}
	s.mu.Lock()
	for _, v := range ids {
		key, _ := phpString(v)
		ct := s.st.contacts[phpInt(v)]
		if ct != nil {
			s.setMemberLocked(ct, c.id("id"), true)
		}
		details = setKey(details, key, obj{{"success", ct != nil}})
	}
	s.mu.Unlock()
	c.view(http.StatusOK, obj{{"success", 1}, {"details", details}})
}

// handleContactSegments serves GET /api/contacts/{id}/segments:
// {"total":N,"lists":{"<id>":{...}}} ([] when none).
func (s *Server) handleContactSegments(c *call) {
	s.mu.Lock()
	ct := s.st.contacts[c.id("id")]
	var lists any = []any{}
	total := 0
	if ct != nil {
		o := obj{}
		for _, id := range sortedSegments(ct) {
			sg := s.segments[id]
			o = append(o, kv{strconv.Itoa(id), obj{
				{"id", sg.id}, {"name", sg.name}, {"alias", sg.alias},
				{"dateAdded", dbTime(ct.segments[id])}, {"manuallyRemoved", 0}, {"manuallyAdded", 1},
			}})
		}
		total = len(o)
		if total > 0 {
			lists = o
		}
	}
	s.mu.Unlock()
	if ct == nil {
		c.notFound()
		return
	}
	c.view(http.StatusOK, obj{{"total", total}, {"lists", lists}})
}
