package mautictest

import (
	"maps"
	"slices"
	"strings"
	"time"
)

// Contact is a snapshot of a stored contact, for assertions.
type Contact struct {
	ID int
	// Fields maps field aliases to the stored values of the fields that are
	// set: strings for text-like fields, int or float64 for numbers, 0 or 1
	// for booleans, "2006-01-02 15:04:05" for datetimes (last_active
	// included). Email is stored as given, trimmed and stripped of
	// characters PHP's FILTER_SANITIZE_EMAIL removes (so "a@b.c," is
	// "a@b.c"). Points are in Points, not here.
	Fields map[string]any
	// Tags are the contact's tag names, sorted.
	Tags []string
	// DNC are the do-not-contact entries, one per channel.
	DNC []DNC
	// Points is the contact's points total.
	Points int
	// Segments are the ids of the segments the contact is a member of,
	// sorted.
	Segments []int
	// DateAdded is when the contact was created (server clock, UTC).
	DateAdded time.Time
	// PointsLog lists the points endpoint calls that changed this contact,
	// in order.
	PointsLog []PointsChange
}

// DNC is a do-not-contact entry.
type DNC struct {
	// Channel is e.g. "email" or "sms".
	Channel string
	// Reason is 1 (unsubscribed), 2 (bounced) or 3 (manual).
	Reason   int
	Comments string
}

// Request is a request the fake handled, as recorded after its response.
type Request struct {
	Method string
	// Path is the URL path without the base path.
	Path     string
	RawQuery string
	Body     []byte
	// Status is the response status; 0 when a hook hijacked the
	// connection.
	Status int
	// Auth is the kind of credentials sent: "basic", "bearer" or "none".
	Auth string
	// Items is the number of items of a batch request, else 1.
	Items int
	// Start and End are when the request arrived and when its response was
	// written (real time, not WithClock's).
	Start, End time.Time
}

// snapshotLocked copies a contact for the caller.
func (s *Server) snapshotLocked(c *contact) Contact {
	out := Contact{
		ID:        c.id,
		Fields:    maps.Clone(c.fields),
		Tags:      s.tagNamesLocked(c),
		Points:    c.points,
		Segments:  sortedSegments(c),
		DateAdded: c.dateAdded,
		PointsLog: slices.Clone(c.pointsLog),
	}
	for alias, v := range out.Fields {
		if f, ok := s.fieldLocked(alias); ok && f.Type == "number" {
			out.Fields[alias] = numberValue(v)
		}
	}
	if !c.lastActive.IsZero() {
		out.Fields["last_active"] = dbTime(c.lastActive)
	}
	for _, d := range c.dnc {
		out.DNC = append(out.DNC, DNC{Channel: d.channel, Reason: d.reason, Comments: d.comments})
	}
	return out
}

// Contacts returns every live contact, sorted by ID.
func (s *Server) Contacts() []Contact {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := slices.Sorted(maps.Keys(s.st.contacts))
	out := make([]Contact, 0, len(ids))
	for _, id := range ids {
		out = append(out, s.snapshotLocked(s.st.contacts[id]))
	}
	return out
}

// Contact returns the live contact with this id.
func (s *Server) Contact(id int) (Contact, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.st.contacts[id]
	if !ok {
		return Contact{}, false
	}
	return s.snapshotLocked(c), true
}

// ContactsByEmail returns the live contacts with this email
// (case-insensitive), sorted by ID. More than one means duplicates were
// created.
func (s *Server) ContactsByEmail(email string) []Contact {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Contact
	for _, c := range s.st.contacts {
		if strings.EqualFold(fieldString(c.fields["email"]), strings.TrimSpace(email)) {
			out = append(out, s.snapshotLocked(c))
		}
	}
	slices.SortFunc(out, func(a, b Contact) int { return a.ID - b.ID })
	return out
}

// SegmentMembers returns the ids of the contacts in a segment, sorted.
func (s *Server) SegmentMembers(segmentID int) []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ids []int
	for id, c := range s.st.contacts {
		if _, ok := c.segments[segmentID]; ok {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// record appends a handled request to the log.
func (s *Server) record(r *Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.st.requestCount++
	s.st.requests = append(s.st.requests, *r)
	if n := s.cfg.requestLogLimit; n > 0 && len(s.st.requests) > n {
		s.st.requests = s.st.requests[len(s.st.requests)-n:]
	}
}

// Requests returns the handled requests in the order their responses were
// written (all of them, or the last WithRequestLogLimit).
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Request, len(s.st.requests))
	for i, r := range s.st.requests {
		r.Body = slices.Clone(r.Body)
		out[i] = r
	}
	return out
}

// RequestCount is the number of requests handled since the start or the
// last Reset.
func (s *Server) RequestCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st.requestCount
}
