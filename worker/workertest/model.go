// Package workertest is test support shared by the worker's and the
// command's tests: a seeded generator of contract event streams over a few
// contacts, a model of what Mautic's contacts must look like once such a
// stream is applied (in order, each event once), and the check of the
// Mautic fake's final state against it.
package workertest

import (
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/mautic-sync/mautic-sync/mautic/mautictest"
	"github.com/mautic-sync/mautic-sync/worker"
)

// Event is one generated input message.
type Event struct {
	Subject string
	Body    []byte
	ID      string
	Type    string
	Data    map[string]any
	Invalid bool // a body that breaks the contract
}

// Generate makes a seeded random stream over contacts contacts
// (c<k>@example.com on subject mautic.contacts.c<k>): every type, copies of
// earlier events (no Nats-Msg-Id, so they are stored), and with invalid
// set, some bodies that break the contract.
func Generate(r *rand.Rand, n, contacts int, invalid bool) []Event {
	var out []Event
	cities := []string{"Oslo", "Bergen", "Turku", "Lund", "Riga"}
	names := []string{"Ann", "Bo", "Cy", "Di"}
	tags := []string{"vip", "trial", "gold"}
	for i := range n {
		if i > 10 && r.IntN(12) == 0 { // a copy of an earlier event
			out = append(out, out[r.IntN(len(out))])
			continue
		}
		k := r.IntN(contacts)
		subject := fmt.Sprintf("mautic.contacts.c%d", k)
		if invalid && r.IntN(15) == 0 {
			body := fmt.Appendf(nil, `{"specversion":"1.0","id":"bad-%d","source":"/model","type":"contact.upsert","time":"2026-11-25T10:00:00Z","data":{"fields":{}}}`, i)
			out = append(out, Event{Subject: subject, Body: body, ID: fmt.Sprintf("bad-%d", i), Invalid: true})
			continue
		}
		email := fmt.Sprintf("c%d@example.com", k)
		id := fmt.Sprintf("ev-%d", i)
		var typ string
		data := map[string]any{"email": email}
		switch x := r.IntN(100); {
		case x < 35:
			typ = worker.TypeUpsert
			f := map[string]any{"city": cities[r.IntN(len(cities))]}
			if r.IntN(2) == 0 {
				f["firstname"] = names[r.IntN(len(names))]
			}
			var ts []string
			if r.IntN(3) == 0 {
				t := tags[r.IntN(len(tags))]
				if r.IntN(3) == 0 {
					t = "-" + t
				}
				ts = append(ts, t)
			}
			data["fields"], data["tags"] = f, ts
		case x < 43:
			typ = worker.TypeDelete
		case x < 55:
			typ, data["segment_id"] = worker.TypeSegmentAdd, 1+r.IntN(3)
		case x < 62:
			typ, data["segment_id"] = worker.TypeSegmentRemove, 1+r.IntN(3)
		case x < 72:
			typ = worker.TypeDNCAdd
			data["channel"], data["reason"] = []string{"email", "sms"}[r.IntN(2)], 1+r.IntN(3)
		case x < 78:
			typ, data["channel"] = worker.TypeDNCRemove, []string{"email", "sms"}[r.IntN(2)]
		default:
			typ = worker.TypePointsAdd
			d := 1 + r.IntN(5)
			if r.IntN(3) == 0 {
				d = -d
			}
			data["delta"] = d
		}
		wire := map[string]any{}
		for k, v := range data {
			wire[k] = v
		}
		if ts, ok := wire["tags"].([]string); ok && len(ts) == 0 {
			delete(wire, "tags")
		}
		d, _ := json.Marshal(wire)
		body := fmt.Appendf(nil, `{"specversion":"1.0","id":%q,"source":"/model","type":%q,"time":"2026-11-25T10:00:00Z","data":%s}`, id, typ, d)
		out = append(out, Event{Subject: subject, Body: body, ID: id, Type: typ, Data: data})
	}
	return out
}

// WithoutRejects drops the events the model rejects (points for a
// contact that does not exist), for the tests where acknowledgements can
// be lost: a rejected event whose Term is lost may end with two outcomes.
func WithoutRejects(events []Event) []Event {
	m := NewModel()
	var out []Event
	for _, e := range events {
		if e.Invalid || m.Apply(e.ID, e.Type, e.Data) {
			out = append(out, e)
		}
	}
	return out
}

// Contact is the model of one contact.
type Contact struct {
	City, Firstname string
	Tags            map[string]bool
	Segments        map[int]bool
	DNC             map[string]int
	Points          int
	PointEvents     []string // ids of points events applied to it
}

// Model applies events to contacts by email.
type Model struct {
	Contacts map[string]*Contact
	Applied  map[string]bool // event ids that took effect (or needed nothing)
}

// NewModel returns an empty model.
func NewModel() *Model {
	return &Model{Contacts: map[string]*Contact{}, Applied: map[string]bool{}}
}

// Apply applies one event; it reports false when the event is rejected
// (dead-lettered), which leaves it free to be applied by a later copy.
func (m *Model) Apply(id, typ string, data map[string]any) bool {
	if m.Applied[id] {
		return true // a copy: the ledger skips it
	}
	email := data["email"].(string)
	c := m.Contacts[email]
	ensure := func() *Contact {
		if c == nil {
			c = &Contact{Tags: map[string]bool{}, Segments: map[int]bool{}, DNC: map[string]int{}}
			m.Contacts[email] = c
		}
		return c
	}
	switch typ {
	case worker.TypeUpsert:
		ensure()
		f := data["fields"].(map[string]any)
		if v, ok := f["city"]; ok {
			c.City = v.(string)
		}
		if v, ok := f["firstname"]; ok {
			c.Firstname = v.(string)
		}
		for _, t := range data["tags"].([]string) {
			if name, ok := strings.CutPrefix(t, "-"); ok {
				delete(c.Tags, name)
			} else {
				c.Tags[t] = true
			}
		}
	case worker.TypeDelete:
		delete(m.Contacts, email)
	case worker.TypeSegmentAdd:
		ensure().Segments[data["segment_id"].(int)] = true
	case worker.TypeSegmentRemove:
		if c != nil {
			delete(c.Segments, data["segment_id"].(int))
		}
	case worker.TypeDNCAdd:
		ensure()
		ch, reason := data["channel"].(string), data["reason"].(int)
		if old, ok := c.DNC[ch]; !ok || old != 1 {
			c.DNC[ch] = reason // an unsubscribe (1) is never overridden
		}
	case worker.TypeDNCRemove:
		if c != nil {
			delete(c.DNC, data["channel"].(string))
		}
	case worker.TypePointsAdd:
		if c == nil {
			return false // no contact: rejected
		}
		c.Points += data["delta"].(int)
		c.PointEvents = append(c.PointEvents, id)
	}
	m.Applied[id] = true
	return true
}

// genEvent is one generated input message.

// CheckState compares the fake's contacts with the model m of events:
// every contact of the model exists once with its fields, tags, segments,
// Do-Not-Contact channels and points (a points event whose result says
// uncertain may be missing, never doubled), no points event was applied
// twice, no contact exists that the model lacks, no email has two
// contacts, and no two writes for one contact were ever in flight together.
func CheckState(t testing.TB, m *Model, fake *mautictest.Server, events []Event, uncertain map[string]bool) {
	t.Helper()
	pointsLog := map[string]int{}
	for _, c := range fake.Contacts() {
		for _, p := range c.PointsLog {
			pointsLog[p.EventName]++
		}
	}
	for name, count := range pointsLog {
		if count > 1 {
			t.Errorf("points event %q applied %d times", name, count)
		}
	}
	for email, want := range m.Contacts {
		got := fake.ContactsByEmail(email)
		if len(got) != 1 {
			t.Errorf("%s: %d contacts in Mautic, want 1", email, len(got))
			continue
		}
		c := got[0]
		wantPoints := 0
		for _, id := range want.PointEvents {
			if uncertain[id] && pointsLog["mautic-sync "+id] == 0 {
				continue // cut off before Mautic applied it: at most once
			}
			wantPoints += deltaOf(events, id)
		}
		if c.Points != wantPoints {
			t.Errorf("%s: points %d, want %d", email, c.Points, wantPoints)
		}
		if fmt.Sprint(c.Fields["city"]) != orNil(want.City) || fmt.Sprint(c.Fields["firstname"]) != orNil(want.Firstname) {
			t.Errorf("%s: city %v firstname %v, want %q %q", email, c.Fields["city"], c.Fields["firstname"], want.City, want.Firstname)
		}
		if wantTags := slices.Sorted(maps.Keys(want.Tags)); !slices.Equal(c.Tags, wantTags) {
			t.Errorf("%s: tags %v, want %v", email, c.Tags, wantTags)
		}
		if wantSegs := slices.Sorted(maps.Keys(want.Segments)); !slices.Equal(c.Segments, wantSegs) {
			t.Errorf("%s: segments %v, want %v", email, c.Segments, wantSegs)
		}
		gotDNC := map[string]int{}
		for _, d := range c.DNC {
			gotDNC[d.Channel] = d.Reason
		}
		if fmt.Sprint(gotDNC) != fmt.Sprint(want.DNC) {
			t.Errorf("%s: DNC %v, want %v", email, gotDNC, want.DNC)
		}
	}
	emails := map[string]int{}
	for _, c := range fake.Contacts() {
		email := strings.ToLower(fmt.Sprint(c.Fields["email"]))
		emails[email]++
		if _, ok := m.Contacts[email]; !ok {
			t.Errorf("contact %d (%v) exists in Mautic but not in the model", c.ID, c.Fields["email"])
		}
	}
	for email, n := range emails {
		if n > 1 {
			t.Errorf("%s: %d contacts in Mautic (a duplicate)", email, n)
		}
	}
	if got := fake.MaxConcurrentWritesPerContact(); got > 1 {
		t.Errorf("%d concurrent writes for one contact (%s), want at most 1", got, fake.MaxConcurrentWritesKey())
		logOverlappingWrites(t, fake.Requests())
	}
}

// logOverlappingWrites logs the pairs of write requests whose times
// overlap, to find the contact two of them touched.
func logOverlappingWrites(t testing.TB, reqs []mautictest.Request) {
	t.Helper()
	var writes []mautictest.Request
	for _, r := range reqs {
		if r.Method != http.MethodGet && strings.HasPrefix(r.Path, "/api/") {
			writes = append(writes, r)
		}
	}
	for i, a := range writes {
		for _, b := range writes[i+1:] {
			if a.Start.Before(b.End) && b.Start.Before(a.End) {
				t.Logf("overlap: %s %s?%s %.300s (status %d, %s-%s)\n      with %s %s?%s %.300s (status %d, %s-%s)", a.Method, a.Path, a.RawQuery, a.Body, a.Status, a.Start.Format("05.000"), a.End.Format("05.000"), b.Method, b.Path, b.RawQuery, b.Body, b.Status, b.Start.Format("05.000"), b.End.Format("05.000"))
			}
		}
	}
}

func deltaOf(events []Event, id string) int {
	for _, e := range events {
		if e.ID == id {
			return e.Data["delta"].(int)
		}
	}
	return 0
}

func orNil(s string) string {
	if s == "" {
		return "<nil>"
	}
	return s
}
