package mautictest

import (
	"net/http"
	"slices"
	"strconv"
	"time"
)

// handleGet serves GET /api/contacts/{id}.
func (s *Server) handleGet(c *call) {
	s.mu.Lock()
	ct := s.st.contacts[c.id("id")]
	var out obj
	if ct != nil {
		out = s.contactJSONLocked(ct, serialDetails)
	}
	s.mu.Unlock()
	if ct == nil {
		c.notFound()
		return
	}
	c.view(http.StatusOK, obj{{"contact", out}})
}

// handleNew serves POST /api/contacts/new: an upsert on the unique
// identifiers, 201 with Location when created, 200 when matched.
func (s *Server) handleNew(c *call) {
	out, status, ierr := c.upsert(c.bodyMap())
	if ierr != nil {
		c.returnItemError(ierr)
		return
	}
	if status == http.StatusCreated {
		c.w.Header().Set("Location", c.location(out))
	}
	c.view(status, obj{{"contact", out}})
}

// location is the Location header of a created contact.
func (c *call) location(contact obj) string {
	id, _ := contact.get("id")
	return c.s.cfg.basePath + "/api/contacts/" + strconv.Itoa(id.(int))
}

// upsert is checkForDuplicateContact followed by the form: it updates the
// newest contact matching the payload's unique identifiers, or creates one.
// The lookup and the insert are separate steps with the lock released in
// between, so overlapping requests for one new email both create a contact,
// as in Mautic (see the package documentation).
func (c *call) upsert(raw map[string]any) (obj, int, *itemError) {
	s := c.s
	p, ierr := s.prepare(raw, modePost)
	s.mu.Lock()
	var keys []string
	matchID := 0
	if ierr == nil {
		keys = p.uniqueKeys(s.uniqueAliasesLocked())
		if m := s.matchLocked(keys); len(m) > 0 {
			matchID = m[0].id
		}
	}
	s.lookedUpLocked(c.ws, s.rawUniqueKeysLocked(raw))
	s.mu.Unlock()
	if ierr != nil {
		return nil, 0, ierr
	}

	c.itemLatency()
	if matchID == 0 {
		s.awaitRivals(c.ws, keys)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	ct, status := s.st.contacts[matchID], http.StatusOK
	if ct == nil {
		ct, status = s.createContactLocked(), http.StatusCreated
	}
	s.applyLocked(ct, p, status == http.StatusCreated)
	return s.contactJSONLocked(ct, serialDetails), status, nil
}

// handleEdit serves PATCH and PUT /api/contacts/{id}/edit.
func (s *Server) handleEdit(c *call) {
	out, status, ierr := c.edit(c.id("id"), c.bodyMap(), c.r.Method == http.MethodPut)
	if ierr != nil {
		c.returnItemError(ierr)
		return
	}
	if status == http.StatusCreated {
		c.w.Header().Set("Location", c.location(out))
	}
	c.view(status, obj{{"contact", out}})
}

// edit is editEntityAction for one payload. PATCH needs the contact to
// exist (else 404); PUT on a missing id creates a new contact with a new id
// (201) and on an existing one clears every field the payload lacks. If the
// payload's unique identifier belongs to another contact, that contact is
// merged into this one and deleted.
func (c *call) edit(id int, raw map[string]any, put bool) (obj, int, *itemError) {
	s := c.s
	mode := modePatch
	if put {
		mode = modePut
	}
	p, ierr := s.prepare(raw, mode)
	s.mu.Lock()
	exists := s.st.contacts[id] != nil
	s.mu.Unlock()
	if !exists && !put {
		return nil, 0, &itemError{status: http.StatusNotFound, message: msgNotFound}
	}
	if ierr != nil {
		return nil, 0, ierr
	}
	c.itemLatency()

	s.mu.Lock()
	defer s.mu.Unlock()
	ct := s.st.contacts[id]
	if ct == nil {
		if !put {
			return nil, 0, &itemError{status: http.StatusNotFound, message: msgNotFound}
		}
		ct = s.createContactLocked()
		s.applyLocked(ct, p, true)
		return s.contactJSONLocked(ct, serialDetails), http.StatusCreated, nil
	}
	if m := s.matchLocked(p.uniqueKeys(s.uniqueAliasesLocked())); len(m) > 0 && m[0].id != ct.id {
		s.mergeLocked(ct, m[0])
	}
	s.applyLocked(ct, p, false)
	return s.contactJSONLocked(ct, serialDetails), http.StatusOK, nil
}

// mergeLocked is ContactMerger::merge: the loser's data goes into the
// winner and the loser is deleted. Field values come from whichever contact
// was modified (or added) last, falling back to the other's non-empty
// value; points are summed; tags, IP addresses and the latest lastActive
// are kept. The loser's segment memberships and DNC entries are lost.
func (s *Server) mergeLocked(winner, loser *contact) {
	s.unindexLocked(winner)
	defer s.indexLocked(winner)
	newest, oldest := winner, loser
	if dateOf(loser).After(dateOf(winner)) {
		newest, oldest = loser, winner
	}
	merged := map[string]any{}
	for alias, v := range oldest.fields {
		merged[alias] = v
	}
	for alias, v := range newest.fields {
		if fieldString(v) != "" {
			merged[alias] = v
		}
	}
	winner.fields = merged
	winner.points += loser.points
	for id := range loser.tags {
		winner.tags[id] = true
	}
	for _, ip := range loser.ips {
		winner.ips = appendUnique(winner.ips, ip)
	}
	if loser.lastActive.After(winner.lastActive) {
		winner.lastActive = loser.lastActive
	}
	if !loser.dateIdentified.IsZero() && (winner.dateIdentified.IsZero() || loser.dateIdentified.Before(winner.dateIdentified)) {
		winner.dateIdentified = loser.dateIdentified
	}
	s.deleteContactLocked(loser)
}

// dateOf is the date mergeFieldData compares: modified, else added.
func dateOf(c *contact) time.Time {
	if !c.dateModified.IsZero() {
		return c.dateModified
	}
	return c.dateAdded
}

func appendUnique(list []string, s string) []string {
	if slices.Contains(list, s) {
		return list
	}
	return append(list, s)
}

// handleDelete serves DELETE /api/contacts/{id}/delete. The contact is
// serialised after Doctrine removed it, so its id is null.
func (s *Server) handleDelete(c *call) {
	c.itemLatency()
	s.mu.Lock()
	ct := s.st.contacts[c.id("id")]
	var out obj
	if ct != nil {
		out = s.contactJSONLocked(ct, serialDeleted)
		s.deleteContactLocked(ct)
	}
	s.mu.Unlock()
	if ct == nil {
		c.notFound()
		return
	}
	c.view(http.StatusOK, obj{{"contact", out}})
}
