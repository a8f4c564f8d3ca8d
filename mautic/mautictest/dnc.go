package mautictest

import (
	"net/http"
	"slices"
)

// Do-not-contact reasons (LeadBundle/Entity/DoNotContact.php).
const (
	dncContactable  = 0
	dncUnsubscribed = 1
	dncBounced      = 2
	dncManual       = 3
)

// addDNCLocked is DoNotContact::addDncForContact: a channel without an
// entry gets one; an entry with another reason is updated unless the
// contact unsubscribed (reason 1), which nothing but a removal overrides.
func (s *Server) addDNCLocked(c *contact, channel string, reason int, comments string, channelID any) {
	now := s.now().UTC()
	i := slices.IndexFunc(c.dnc, func(d *dncRecord) bool { return d.channel == channel })
	if i < 0 {
		c.dnc = append(c.dnc, &dncRecord{
			id: s.st.nextDNCID, channel: channel, channelID: channelID,
			reason: reason, comments: comments, dateAdded: now,
		})
		s.st.nextDNCID++
		return
	}
	d := c.dnc[i]
	if d.reason == reason || d.reason == dncUnsubscribed {
		return
	}
	d.reason, d.comments, d.dateAdded = reason, comments, now
}

// removeDNCLocked deletes the channel's entry and reports whether one
// existed.
func (s *Server) removeDNCLocked(c *contact, channel string) bool {
	n := len(c.dnc)
	c.dnc = slices.DeleteFunc(c.dnc, func(d *dncRecord) bool { return d.channel == channel })
	return len(c.dnc) != n
}

// handleDNCAdd serves POST /api/contacts/{id}/dnc/{channel}/add with
// optional body reason (default 3), comments and channelId. It answers
// {"contact":{...}} without serialiser groups (no fields.all).
func (s *Server) handleDNCAdd(c *call) {
	reason := dncManual
	if v, ok := c.bodyParam("reason"); ok && v != nil {
		reason = phpInt(v)
	}
	comments, _ := phpString(c.bodyMap()["comments"])
	var channelID any
	if v, ok := c.bodyParam("channelId"); ok && phpInt(v) != 0 {
		channelID = phpInt(v)
	}
	c.itemLatency()

	s.mu.Lock()
	ct := s.st.contacts[c.id("id")]
	var out obj
	if ct != nil && reason != 0 {
		s.addDNCLocked(ct, c.params["channel"], reason, comments, channelID)
		ct.dateModified = s.now().UTC()
		out = s.contactJSONLocked(ct, serialBare)
	}
	s.mu.Unlock()
	switch {
	case ct == nil:
		c.notFound()
	case reason == 0:
		c.returnError(http.StatusBadRequest, "Invalid reason code given", []any{"Reason code needs to be an integer and higher than 0."})
	default:
		c.view(http.StatusOK, obj{{"contact", out}})
	}
}

// handleDNCRemove serves POST /api/contacts/{id}/dnc/{channel}/remove:
// {"recordFound":bool,"contact":{...}}.
func (s *Server) handleDNCRemove(c *call) {
	c.itemLatency()
	s.mu.Lock()
	ct := s.st.contacts[c.id("id")]
	var out obj
	found := false
	if ct != nil {
		found = s.removeDNCLocked(ct, c.params["channel"])
		out = s.contactJSONLocked(ct, serialBare)
	}
	s.mu.Unlock()
	if ct == nil {
		c.notFound()
		return
	}
	c.view(http.StatusOK, obj{{"recordFound", found}, {"contact", out}})
}
