package mautictest

import (
	"slices"
	"strconv"
	"time"
)

// Mautic has no unique index on email: checkForDuplicateContact reads, then
// the form inserts. Two overlapping upserts of a new email both create a
// contact. The fake reproduces that race deterministically: an upsert that
// found no match waits, before inserting, until every other in-flight write
// registered for the same identifier has done its own lookup (bounded by
// raceWaitCap, and at least raceWaitMin when such a rival exists). It also
// measures how many writes touch one contact at once.

const (
	raceWaitMin = time.Millisecond
	raceWaitCap = 100 * time.Millisecond
)

// inflight tracks write requests that are being processed.
type inflight struct {
	counts  map[string]int // identity key -> in-flight writes touching it
	pending map[string]int // unique key -> upsert lookups not done yet
	changed chan struct{}  // closed and replaced on every change
}

func newInflight() inflight {
	return inflight{counts: map[string]int{}, pending: map[string]int{}, changed: make(chan struct{})}
}

// writeSet is one write request's registration.
type writeSet struct {
	keys    []string       // distinct identity keys, counted in inflight.counts
	pending map[string]int // this request's lookups not done yet
}

// touchFunc lists, under the lock, the identity keys a write request
// touches ("id:N" and unique-identifier keys) and the unique keys of the
// upsert lookups it will make (one per item).
type touchFunc func(s *Server, c *call) (keys, lookups []string)

// beginWrite registers a write request.
func (s *Server) beginWrite(c *call, touch touchFunc) *writeSet {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys, lookups := touch(s, c)
	ws := &writeSet{pending: map[string]int{}}
	for _, k := range keys {
		if slices.Contains(ws.keys, k) {
			continue
		}
		ws.keys = append(ws.keys, k)
		s.inflight.counts[k]++
		if n := s.inflight.counts[k]; n > s.st.maxConcurrent {
			s.st.maxConcurrent, s.st.maxConcurrentKey = n, k
		}
	}
	for _, k := range lookups {
		ws.pending[k]++
		s.inflight.pending[k]++
	}
	s.notifyLocked()
	return ws
}

// endWrite releases a write request's registration.
func (s *Server) endWrite(ws *writeSet) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range ws.keys {
		if s.inflight.counts[k]--; s.inflight.counts[k] <= 0 {
			delete(s.inflight.counts, k)
		}
	}
	for k, n := range ws.pending {
		if s.inflight.pending[k] -= n; s.inflight.pending[k] <= 0 {
			delete(s.inflight.pending, k)
		}
	}
	clear(ws.pending)
	s.notifyLocked()
}

// lookedUpLocked records that one item of ws did its lookup for keys.
func (s *Server) lookedUpLocked(ws *writeSet, keys []string) {
	if ws == nil {
		return
	}
	for _, k := range keys {
		if ws.pending[k] == 0 {
			continue
		}
		ws.pending[k]--
		if s.inflight.pending[k]--; s.inflight.pending[k] <= 0 {
			delete(s.inflight.pending, k)
		}
	}
	s.notifyLocked()
}

func (s *Server) notifyLocked() {
	close(s.inflight.changed)
	s.inflight.changed = make(chan struct{})
}

// awaitRivals is the gap between an upsert's lookup and its insert: when
// another write on one of keys is in flight, it waits until all such
// writes have looked the identifier up (so they miss this insert too).
func (s *Server) awaitRivals(ws *writeSet, keys []string) {
	if ws == nil || len(keys) == 0 {
		return
	}
	deadline := time.NewTimer(raceWaitCap)
	defer deadline.Stop()
	minWait := time.NewTimer(raceWaitMin)
	defer minWait.Stop()
	rivals := false
	for {
		s.mu.Lock()
		contended, waiting := false, false
		for _, k := range keys {
			if s.inflight.counts[k] > 1 {
				contended = true
				if s.inflight.pending[k]-ws.pending[k] > 0 {
					waiting = true
				}
			}
		}
		changed := s.inflight.changed
		s.mu.Unlock()
		rivals = rivals || contended
		if !waiting {
			if rivals {
				select {
				case <-minWait.C:
				case <-s.closed:
				}
			}
			return
		}
		select {
		case <-changed:
		case <-deadline.C:
			return
		case <-s.closed:
			return
		}
	}
}

// MaxConcurrentWritesPerContact is the largest number of write requests
// that were in flight at the same moment touching the same contact (by id
// or by unique identifier such as email). A client that serialises writes
// per contact keeps it at 1.
func (s *Server) MaxConcurrentWritesPerContact() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st.maxConcurrent
}

// MaxConcurrentWritesKey is the contact key ("id:N", or a unique
// identifier such as "email:a@b.c") that reached
// MaxConcurrentWritesPerContact first: where to look when it is above 1.
func (s *Server) MaxConcurrentWritesKey() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st.maxConcurrentKey
}

// rawUniqueKeysLocked returns the unique keys of a raw payload item, as
// prepare will normalise them.
func (s *Server) rawUniqueKeysLocked(raw map[string]any) []string {
	var keys []string
	for _, f := range s.fields {
		if !f.UniqueIdentifier {
			continue
		}
		if v, msg := normalizeValue(f.Field, raw[f.Alias]); msg == "" && fieldString(v) != "" {
			keys = append(keys, uniqueKey(f.Alias, fieldString(v)))
		}
	}
	return keys
}

// contactKeysLocked are the identity keys of contact id.
func (s *Server) contactKeysLocked(id int) []string {
	keys := []string{"id:" + strconv.Itoa(id)}
	if c := s.st.contacts[id]; c != nil {
		keys = append(keys, s.uniqueKeysOfLocked(c)...)
	}
	return keys
}

// itemKeysLocked are the identity keys of a payload item: its unique keys
// and the ids of the contacts they currently match.
func (s *Server) itemKeysLocked(raw map[string]any) (keys, lookups []string) {
	lookups = s.rawUniqueKeysLocked(raw)
	keys = append(keys, lookups...)
	for _, m := range s.matchLocked(lookups) {
		keys = append(keys, "id:"+strconv.Itoa(m.id))
	}
	return keys, lookups
}

// Touch functions of the write routes.

func touchNew(s *Server, c *call) ([]string, []string) { return s.itemKeysLocked(c.bodyMap()) }

func touchBatchNew(s *Server, c *call) (keys, lookups []string) {
	items, _ := listOf(c.body)
	for _, it := range items {
		if m, ok := it.(map[string]any); ok {
			k, l := s.itemKeysLocked(m)
			keys, lookups = append(keys, k...), append(lookups, l...)
		}
	}
	return keys, lookups
}

func touchEdit(s *Server, c *call) ([]string, []string) {
	keys, _ := s.itemKeysLocked(c.bodyMap())
	return append(s.contactKeysLocked(c.id("id")), keys...), nil
}

func touchBatchEdit(s *Server, c *call) (keys, _ []string) {
	items, _ := listOf(c.body)
	for _, it := range items {
		m, ok := it.(map[string]any)
		if !ok {
			continue
		}
		if id, ok := phpFloat(m["id"]); ok {
			keys = append(keys, s.contactKeysLocked(truncInt(id))...)
		}
		k, _ := s.itemKeysLocked(m)
		keys = append(keys, k...)
	}
	return keys, nil
}

func touchBatchDelete(s *Server, c *call) (keys, _ []string) {
	for _, id := range batchDeleteIDs(c) {
		keys = append(keys, s.contactKeysLocked(id)...)
	}
	return keys, nil
}

func touchSegmentMany(s *Server, c *call) (keys, _ []string) {
	list, _ := listOf(c.bodyMap()["ids"])
	for _, v := range list {
		keys = append(keys, s.contactKeysLocked(phpInt(v))...)
	}
	return keys, nil
}

// touchParam touches the contact named by a route parameter.
func touchParam(name string) touchFunc {
	return func(s *Server, c *call) ([]string, []string) {
		return s.contactKeysLocked(c.id(name)), nil
	}
}
