package mautictest

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// Batch endpoints (reference section 6.6). They answer 201 (new) or 200
// (edit, delete) whatever happens to the items: each item's outcome is in
// statusCodes[i] and errors[i]. A failed item is missing from "contacts",
// which therefore becomes a JSON object keyed by index unless its keys are
// still 0..n-1.

// batchItems returns the batch body as a list. ok is false when the body is
// not a PHP list (Mautic then fails with a TypeError once it reaches the
// first item); n is what validateBatchPayload counts.
func (c *call) batchItems() (items []any, n int, ok bool) {
	switch b := c.body.(type) {
	case nil:
		return nil, 0, true
	case []any:
		return b, len(b), true
	case map[string]any:
		items, ok := listOf(b)
		return items, len(b), ok
	}
	return nil, 0, false
}

// checkBatchLimit writes the over-limit 500 and returns false when n
// exceeds api_batch_max_limit.
func (c *call) checkBatchLimit(n int) bool {
	limit := c.s.cfg.batchLimit
	if n <= limit {
		return true
	}
	c.returnError(http.StatusInternalServerError, fmt.Sprintf("A max of %d entities are supported at a time.", limit), nil)
	return false
}

// batchResponse writes {"contacts":..,"statusCodes":[..],"errors"?:..}.
func (c *call) batchResponse(status int, contacts, codes, errs *phpArray) {
	payload := obj{{"contacts", contacts}, {"statusCodes", codes}}
	if errs.len() > 0 {
		payload = append(payload, kv{"errors", errs})
	}
	c.view(status, payload)
}

// handleBatchNew serves POST /api/contacts/batch/new: each item is an
// upsert exactly like /contacts/new, processed in order without a
// transaction.
func (s *Server) handleBatchNew(c *call) {
	items, n, isList := c.batchItems()
	if !c.checkBatchLimit(n) {
		return
	}
	if !isList {
		c.exception(http.StatusInternalServerError)
		return
	}
	c.rec.Items = len(items)
	contacts, codes, errs := newPHPArray(), newPHPArray(), newPHPArray()
	for i, it := range items {
		m, ok := it.(map[string]any)
		if !ok {
			c.exception(http.StatusInternalServerError)
			return
		}
		out, status, ierr := c.upsert(m)
		if ierr != nil {
			errs.set(i, ierr.batchShape())
			codes.set(i, ierr.status)
			continue
		}
		contacts.set(i, out)
		codes.set(i, status)
	}
	c.batchResponse(http.StatusCreated, contacts, codes, errs)
}

// itemID returns a batch-edit item's "id" when it is set (isset).
func itemID(m map[string]any) (id int, set bool) {
	v, ok := m["id"]
	if !ok || v == nil {
		return 0, false
	}
	if f, ok := phpFloat(v); ok {
		return truncInt(f), true
	}
	return 0, true // set but not numeric: never found
}

// handleBatchEdit serves PUT and PATCH /api/contacts/batch/edit. PATCH
// items whose contact does not exist fail with 404; PUT creates them. When
// some items carry an id, those without one get "ID is missing from the
// payload." (400), which PATCH then overwrites with 404 and which PUT
// reports even though it created the contact.
func (s *Server) handleBatchEdit(c *call) {
	items, n, isList := c.batchItems()
	if !c.checkBatchLimit(n) {
		return
	}
	if !isList {
		c.exception(http.StatusInternalServerError)
		return
	}
	c.rec.Items = len(items)
	put := c.r.Method == http.MethodPut
	contacts, codes, errs := newPHPArray(), newPHPArray(), newPHPArray()

	// getBatchEntities: the existing contacts, keyed by item index.
	hasIDs := slices.ContainsFunc(items, func(it any) bool {
		m, ok := it.(map[string]any)
		_, set := itemID(m)
		return ok && set
	})
	if hasIDs {
		s.mu.Lock()
		for i, it := range items {
			m, _ := it.(map[string]any)
			id, set := itemID(m)
			if !set {
				errs.set(i, (&itemError{status: http.StatusBadRequest, message: msgIDMissing}).batchShape())
				continue
			}
			if ct := s.st.contacts[id]; ct != nil {
				contacts.set(i, s.contactJSONLocked(ct, serialDetails))
			}
		}
		s.mu.Unlock()
	}

	for i, it := range items {
		m, ok := it.(map[string]any)
		if !ok {
			c.exception(http.StatusInternalServerError)
			return
		}
		id, _ := itemID(m)
		out, status, ierr := c.edit(id, m, put)
		if ierr != nil {
			if ierr.status == http.StatusNotFound {
				contacts.unset(i)
				ierr = &itemError{status: http.StatusNotFound, message: msgNotFound}
			}
			errs.set(i, ierr.batchShape())
			codes.set(i, ierr.status)
			continue
		}
		contacts.set(i, out)
		if e, ok := errs.vals[i].(obj); ok {
			code, _ := e.get("code")
			status = code.(int)
		}
		codes.set(i, status)
	}
	c.batchResponse(http.StatusOK, contacts, codes, errs)
}

// batchDeleteIDs parses ?ids=1,2,3 or ?ids[]=1&ids[]=2, returning ids by
// their original key.
func batchDeleteIDs(c *call) map[int]int {
	out := map[int]int{}
	switch v := c.phpQuery()["ids"].(type) {
	case string:
		if !strings.Contains(v, ",") && !phpIsNumeric(v) {
			return out
		}
		for i, part := range strings.Split(v, ",") {
			out[i] = phpInt(strings.TrimSpace(part))
		}
	case map[string]any:
		for k, x := range v {
			if i, err := strconv.Atoi(k); err == nil {
				out[i] = phpInt(x)
			}
		}
	}
	return out
}

// handleBatchDelete serves DELETE /api/contacts/batch/delete. The contacts
// are serialised before deletion; ids that do not exist are silently left
// out, so the list becomes an object keyed by position when one is missing.
func (s *Server) handleBatchDelete(c *call) {
	if !c.checkBatchLimit(len(c.phpQuery())) {
		return
	}
	byKey := batchDeleteIDs(c)
	keys := make([]int, 0, len(byKey))
	for k := range byKey {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	c.rec.Items = len(keys)
	for range keys {
		c.itemLatency()
	}
	s.mu.Lock()
	contacts := newPHPArray()
	var doomed []*contact
	for _, k := range keys {
		if ct := s.st.contacts[byKey[k]]; ct != nil && !slices.Contains(doomed, ct) {
			contacts.set(k, s.contactJSONLocked(ct, serialDetails))
			doomed = append(doomed, ct)
		}
	}
	for _, ct := range doomed {
		s.deleteContactLocked(ct)
	}
	s.mu.Unlock()
	c.view(http.StatusOK, obj{{"contacts", contacts}})
}
