package worker

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mautic-sync/mautic-sync/mautic"
)

// stepKind is one kind of Mautic call. An event becomes an op that passes
// through one or two steps (a lookup or bare upsert first, when it names
// its contact by email but the call needs an id).
type stepKind int

const (
	stepUpsert        stepKind = iota + 1 // POST /contacts/batch/new
	stepEdit                              // PATCH /contacts/batch/edit
	stepFind                              // GET /contacts?where[] email in (...)
	stepDelete                            // DELETE /contacts/batch/delete
	stepSegmentAdd                        // POST /segments/{id}/contacts/add
	stepSegmentRemove                     // POST /segments/{id}/contact/{cid}/remove (no batch route)
	stepPoints                            // POST /contacts/{id}/points/... (no batch route)
)

// endpoint is a bounded label for logs and metrics.
func (k stepKind) endpoint() string {
	switch k {
	case stepUpsert:
		return "contacts/batch/new"
	case stepEdit:
		return "contacts/batch/edit"
	case stepFind:
		return "contacts/find"
	case stepDelete:
		return "contacts/batch/delete"
	case stepSegmentAdd:
		return "segments/contacts/add"
	case stepSegmentRemove:
		return "segments/contact/remove"
	case stepPoints:
		return "contacts/points"
	}
	return "unknown"
}

// maxFindBatch bounds emails per lookup: they travel in the URL.
const maxFindBatch = 50

// limit is the most ops one call of this kind carries.
func (k stepKind) limit(batchSize int) int {
	switch k {
	case stepSegmentRemove, stepPoints:
		return 1
	case stepFind:
		return min(batchSize, maxFindBatch)
	}
	return batchSize
}

// queueKey groups ops that can share a call.
type queueKey struct {
	kind    stepKind
	segment int // segment id for stepSegmentAdd
}

// op is the unit of work for one contact: one event, or a run of
// consecutive upserts of one contact merged into one item.
type op struct {
	events []*pending // in stream order; events[0] heads the lanes
	ev     *Event     // the event that decides the steps (merged for upserts)
	step   stepKind
	// contactIDs are the resolved Mautic ids (newest first) once known.
	contactIDs []int
	ignored    []IgnoredField
	// attempts counts item-level transient failures, for the backoff.
	attempts int
	// dispatched is set while a call for the op's step runs.
	dispatched bool
	// queued is when the op was queued for its current step; lingered
	// how long it waited for batches that went out unfilled, at most the
	// linger: its later steps linger only for the rest.
	queued   time.Time
	lingered time.Duration
	// checked: the ledger was consulted. intended: a points intent is
	// recorded. uncertain: a points call got no answer.
	checked, intended, uncertain bool
}

func (o *op) key() queueKey {
	if o.step == stepSegmentAdd {
		return queueKey{kind: o.step, segment: o.ev.SegmentID}
	}
	return queueKey{kind: o.step}
}

// contactID is the id the op acts on: the event's own, else the newest
// resolved one.
func (o *op) contactID() int {
	if o.ev.MauticID > 0 {
		return o.ev.MauticID
	}
	if len(o.contactIDs) > 0 {
		return o.contactIDs[0]
	}
	return 0
}

// newOp plans the steps of an event, merged with the upserts that follow
// it directly in its lanes.
func newOp(head *pending, followers []*pending) *op {
	o := &op{events: []*pending{head}, ev: head.ev}
	if head.ev.Type == TypeUpsert {
		for _, f := range followers {
			if !o.canMerge(f) {
				break
			}
			o.events = append(o.events, f)
		}
		if len(o.events) > 1 {
			o.ev = mergeUpserts(o.events)
		}
	}
	o.step = firstStep(o.ev)
	return o
}

// canMerge reports whether upsert p may join the op's upserts: same
// contact, and not a second copy of an event id already in it (that one
// must settle as a duplicate).
func (o *op) canMerge(p *pending) bool {
	if p.ev == nil || p.ev.Type != TypeUpsert || o.ev.Type != TypeUpsert || p.ev.Identity() != o.ev.Identity() {
		return false
	}
	for _, e := range o.events {
		if e.ev.ID == p.ev.ID {
			return false
		}
	}
	return true
}

func firstStep(ev *Event) stepKind {
	byID := ev.MauticID > 0
	switch ev.Type {
	case TypeUpsert, TypeDNCAdd:
		if byID {
			return stepEdit
		}
		return stepUpsert // creates a bare contact for dnc.add, as the contract says
	case TypeSegmentAdd:
		if byID {
			return stepSegmentAdd
		}
		return stepUpsert // ensure the contact exists, then add
	case TypeDelete:
		if byID {
			return stepDelete
		}
		return stepFind
	case TypeSegmentRemove:
		if byID {
			return stepSegmentRemove
		}
		return stepFind
	case TypeDNCRemove:
		if byID {
			return stepEdit
		}
		return stepFind
	case TypePointsAdd:
		if byID {
			return stepPoints
		}
		return stepFind
	}
	panic("worker: unplanned event type " + ev.Type)
}

// mergeUpserts folds consecutive upserts of one contact into one: later
// values win; a blank value only counts from an event that asked to
// overwrite with blanks; tags keep their last add or remove.
func mergeUpserts(ps []*pending) *Event {
	m := *ps[0].ev
	m.Fields = map[string]any{}
	m.Tags = nil
	m.OverwriteWithBlank = false
	tagOp := map[string]string{}
	var tagOrder []string
	for _, p := range ps {
		e := p.ev
		for k, v := range e.Fields {
			if isBlank(v) && !e.OverwriteWithBlank {
				continue
			}
			m.Fields[k] = v
		}
		for _, t := range e.Tags {
			name := strings.TrimPrefix(t, "-")
			if _, seen := tagOp[name]; !seen {
				tagOrder = append(tagOrder, name)
			}
			tagOp[name] = t
		}
		if e.MauticID == 0 && m.MauticID == 0 {
			m.Email = e.Email
		}
	}
	for _, v := range m.Fields {
		if isBlank(v) {
			m.OverwriteWithBlank = true // only blanks from events that asked for it remain
			break
		}
	}
	for _, name := range tagOrder {
		m.Tags = append(m.Tags, tagOp[name])
	}
	return &m
}

func isBlank(v any) bool {
	switch x := v.(type) {
	case nil:
		return true
	case string:
		return x == ""
	}
	return false
}

// isNumericZero reports values Mautic drops on POST and PATCH.
func isNumericZero(v any) bool {
	var s string
	switch x := v.(type) {
	case json.Number:
		s = x.String()
	case string:
		s = strings.TrimSpace(x)
	default:
		return false
	}
	f, err := strconv.ParseFloat(s, 64)
	return err == nil && f == 0
}

// contactItem builds the batch item of an upsert, edit or DNC op.
func (o *op) contactItem() mautic.Contact {
	ev := o.ev
	item := mautic.Contact{}
	switch ev.Type {
	case TypeUpsert:
		for k, v := range ev.Fields {
			item[k] = v
		}
		if len(ev.Tags) > 0 {
			item["tags"] = ev.Tags
		}
		if ev.OverwriteWithBlank {
			item["overwriteWithBlank"] = true
		}
	case TypeDNCAdd:
		item["doNotContact"] = []mautic.DoNotContact{{Channel: ev.Channel, Reason: ev.Reason, Comments: ev.Comments}}
	case TypeDNCRemove:
		item["doNotContact"] = []mautic.DoNotContact{{Channel: ev.Channel, Reason: 0}}
	}
	if id := o.contactID(); id > 0 && o.step == stepEdit {
		item["id"] = id
	} else if ev.Email != "" {
		item["email"] = ev.Email
	}
	return item
}

// ignoredFields lists the upsert's fields that Mautic drops silently:
// aliases it does not know (when the field list is known) and numeric
// zeros.
func ignoredFields(ev *Event, known map[string]bool) []IgnoredField {
	var out []IgnoredField
	for k, v := range ev.Fields {
		switch {
		case known != nil && !known[k]:
			out = append(out, IgnoredField{Field: k, Kind: "unknown_field", Reason: "Mautic has no contact field with this alias and ignores it"})
		case isNumericZero(v):
			out = append(out, IgnoredField{Field: k, Kind: "numeric_zero", Reason: "Mautic ignores a numeric 0 on create and update (mautic/mautic#15030)"})
		}
	}
	slices.SortFunc(out, func(a, b IgnoredField) int { return strings.Compare(a.Field, b.Field) })
	return out
}

// itemError formats a failed item's message.
func itemError(endpoint string, status int, d *mautic.ErrorDetail) string {
	msg := "failed"
	if d != nil && d.Message != "" {
		msg = d.Message
	}
	return fmt.Sprintf("Mautic %s refused the item (HTTP %d): %s", endpoint, status, msg)
}
