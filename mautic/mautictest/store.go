package mautictest

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"
)

// state is everything Reset forgets. It is guarded by Server.mu.
type state struct {
	contacts         map[int]*contact
	nextID           int
	uniq             map[string]map[int]struct{} // uniqueKey -> contact ids
	tagsByName       map[string]*tag             // lower-case name -> tag
	tagsByID         map[int]*tag
	nextDNCID        int
	access           map[string]*accessToken
	refresh          map[string]*refreshToken
	tokensIssued     int
	buckets          map[string]*bucket
	requests         []Request
	requestCount     int
	maxConcurrent    int
	maxConcurrentKey string
}

// contact is a stored contact (a row of Mautic's leads table and its
// relations).
type contact struct {
	id             int
	fields         map[string]any // alias -> string, float64 (number) or int (boolean)
	tags           map[int]bool   // tag ids
	dnc            []*dncRecord
	points         int
	segments       map[int]time.Time // segment id -> date added
	dateAdded      time.Time
	dateModified   time.Time // zero: never modified
	dateIdentified time.Time
	lastActive     time.Time
	ips            []string
	pointsLog      []PointsChange
}

// tag is a row of Mautic's lead_tags table; names are matched
// case-insensitively and keep the spelling they were first created with.
type tag struct {
	id   int
	name string
}

// dncRecord is a do-not-contact entry for one channel.
type dncRecord struct {
	id        int
	channel   string
	channelID any
	reason    int
	comments  string
	dateAdded time.Time
}

// segment is a configured segment (Mautic's "list").
type segment struct {
	id    int
	name  string
	alias string
}

func newSegments(ids []int) map[int]segment {
	if ids == nil {
		for i := range 10 {
			ids = append(ids, i+1)
		}
	}
	m := make(map[int]segment, len(ids))
	for _, id := range ids {
		m[id] = segment{id: id, name: fmt.Sprintf("Segment %d", id), alias: fmt.Sprintf("segment-%d", id)}
	}
	return m
}

// resetLocked replaces all data with an empty state.
func (s *Server) resetLocked() {
	s.st = state{
		contacts:   map[int]*contact{},
		nextID:     1,
		uniq:       map[string]map[int]struct{}{},
		tagsByName: map[string]*tag{},
		tagsByID:   map[int]*tag{},
		nextDNCID:  1,
		access:     map[string]*accessToken{},
		refresh:    map[string]*refreshToken{},
		buckets:    map[string]*bucket{},
	}
	s.seedRefreshLocked()
}

// Reset forgets all contacts, tags, tokens (refresh tokens given to
// WithRefreshToken are registered again), rate-limit windows, recorded
// requests and counters. Options, fields added with AddField and the
// runtime switches are kept; pending FailNext responses are dropped.
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.resetLocked()
	s.sw.failN = 0
}

// createContactLocked stores a new, empty contact.
func (s *Server) createContactLocked() *contact {
	now := s.now().UTC()
	c := &contact{
		id:        s.st.nextID,
		fields:    map[string]any{},
		tags:      map[int]bool{},
		segments:  map[int]time.Time{},
		dateAdded: now,
	}
	s.st.nextID++
	s.st.contacts[c.id] = c
	return c
}

// deleteContactLocked removes a contact and its index entries.
func (s *Server) deleteContactLocked(c *contact) {
	s.unindexLocked(c)
	delete(s.st.contacts, c.id)
}

// uniqueKey is the index key of a unique-identifier value: matching is
// case-insensitive, as MySQL's collation makes it.
func uniqueKey(alias, value string) string {
	return "u:" + alias + ":" + strings.ToLower(value)
}

// uniqueAliasesLocked lists the unique-identifier fields.
func (s *Server) uniqueAliasesLocked() []string {
	var out []string
	for _, f := range s.fields {
		if f.UniqueIdentifier {
			out = append(out, f.Alias)
		}
	}
	return out
}

// uniqueKeysOfLocked returns the index keys of c's unique values.
func (s *Server) uniqueKeysOfLocked(c *contact) []string {
	var keys []string
	for _, alias := range s.uniqueAliasesLocked() {
		if v := fieldString(c.fields[alias]); v != "" {
			keys = append(keys, uniqueKey(alias, v))
		}
	}
	return keys
}

func (s *Server) indexLocked(c *contact) {
	for _, k := range s.uniqueKeysOfLocked(c) {
		ids, ok := s.st.uniq[k]
		if !ok {
			ids = map[int]struct{}{}
			s.st.uniq[k] = ids
		}
		ids[c.id] = struct{}{}
	}
}

func (s *Server) unindexLocked(c *contact) {
	for _, k := range s.uniqueKeysOfLocked(c) {
		if ids, ok := s.st.uniq[k]; ok {
			delete(ids, c.id)
			if len(ids) == 0 {
				delete(s.st.uniq, k)
			}
		}
	}
}

// reindexAllLocked rebuilds the unique index (after a field change).
func (s *Server) reindexAllLocked() {
	s.st.uniq = map[string]map[int]struct{}{}
	for _, c := range s.st.contacts {
		s.indexLocked(c)
	}
}

// matchLocked finds the contacts whose unique fields match any of keys,
// newest first (LeadRepository orders by dateAdded DESC; ties by id).
func (s *Server) matchLocked(keys []string) []*contact {
	seen := map[int]bool{}
	var out []*contact
	for _, k := range keys {
		for id := range s.st.uniq[k] {
			if c := s.st.contacts[id]; c != nil && !seen[id] {
				seen[id] = true
				out = append(out, c)
			}
		}
	}
	slices.SortFunc(out, func(a, b *contact) int {
		if c := b.dateAdded.Compare(a.dateAdded); c != 0 {
			return c
		}
		return cmp.Compare(b.id, a.id)
	})
	return out
}

// tagLocked returns the tag named name, creating it if asked.
func (s *Server) tagLocked(name string, create bool) *tag {
	key := strings.ToLower(name)
	if t, ok := s.st.tagsByName[key]; ok {
		return t
	}
	if !create {
		return nil
	}
	t := &tag{id: len(s.st.tagsByID) + 1, name: name}
	s.st.tagsByName[key] = t
	s.st.tagsByID[t.id] = t
	return t
}

// tagNamesLocked returns c's tag names, sorted.
func (s *Server) tagNamesLocked(c *contact) []string {
	names := make([]string, 0, len(c.tags))
	for id := range c.tags {
		names = append(names, s.st.tagsByID[id].name)
	}
	slices.Sort(names)
	return names
}

// sortedSegments returns c's segment ids in order.
func sortedSegments(c *contact) []int {
	ids := make([]int, 0, len(c.segments))
	for id := range c.segments {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}
