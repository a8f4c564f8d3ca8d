// Package bench holds the parts of `mautic-sync bench` that do not need the
// service's own wiring: the event mix and its generator, the latency
// histogram, process statistics, the Prometheus text parser, the model of
// Mautic's throughput ceiling, and the infrastructure the service runs
// against (an embedded NATS server and the Mautic fake behind a counting
// middleware, in this process or in a helper process).
package bench

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mautic-sync/mautic-sync/worker"
)

// Types is every event type, in the order reports list them.
var Types = []string{
	worker.TypeUpsert, worker.TypeDelete, worker.TypeSegmentAdd, worker.TypeSegmentRemove,
	worker.TypeDNCAdd, worker.TypeDNCRemove, worker.TypePointsAdd,
}

// Mix is the share of each event type, in percent of the events (or any
// weights: they are normalised).
type Mix map[string]float64

// ParseMix reads "upsert=80,segment.add=10,points.add=10". Type names may
// omit the "contact." prefix.
func ParseMix(s string) (Mix, error) {
	m := Mix{}
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, weight, ok := strings.Cut(part, "=")
		if !ok {
			return nil, fmt.Errorf("mix %q: want type=weight", part)
		}
		typ := name
		if !strings.HasPrefix(typ, "contact.") {
			typ = "contact." + typ
		}
		if !slices.Contains(Types, typ) {
			return nil, fmt.Errorf("mix %q: unknown event type %q (one of upsert, delete, segment.add, segment.remove, dnc.add, dnc.remove, points.add)", part, name)
		}
		w, err := strconv.ParseFloat(weight, 64)
		if err != nil || w < 0 {
			return nil, fmt.Errorf("mix %q: weight must be a number >= 0", part)
		}
		m[typ] += w
	}
	total := 0.0
	for _, w := range m {
		total += w
	}
	if total <= 0 {
		return nil, fmt.Errorf("mix %q: no event type has a weight", s)
	}
	for k, w := range m {
		if w == 0 {
			delete(m, k)
			continue
		}
		m[k] = w / total
	}
	return m, nil
}

// String is the mix in ParseMix's syntax, in percent.
func (m Mix) String() string {
	var parts []string
	for _, t := range Types {
		if w, ok := m[t]; ok {
			parts = append(parts, strings.TrimPrefix(t, "contact.")+"="+strconv.FormatFloat(w*100, 'g', 4, 64))
		}
	}
	return strings.Join(parts, ",")
}

// OnlyUpserts reports whether every event is an upsert.
func (m Mix) OnlyUpserts() bool { return len(m) == 1 && m[worker.TypeUpsert] > 0 }

// Generator makes events: contact-change events of the mix, named by
// email, for contacts 0..Contacts-1. With at least as many contacts as
// events, event i is about contact i (every contact once); otherwise the
// contact is drawn at random. Event ids carry the event's number and the
// time it was made, so that an outcome tells its publish-to-outcome
// latency without a table.
type Generator struct {
	Mix      Mix
	Contacts int
	Events   int
	Segments int // segment ids 1..Segments for segment events

	rng    *rand.Rand
	cum    []float64
	types  []string
	now    func() time.Time
	buf    []byte
	bodyTS string
}

// NewGenerator returns a generator with a fixed seed.
func NewGenerator(mix Mix, contacts, events, segments int, seed uint64) *Generator {
	g := &Generator{Mix: mix, Contacts: max(contacts, 1), Events: events, Segments: max(segments, 1),
		rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), now: time.Now}
	acc := 0.0
	for _, t := range Types {
		if w, ok := mix[t]; ok {
			acc += w
			g.types = append(g.types, t)
			g.cum = append(g.cum, acc)
		}
	}
	g.bodyTS = time.Now().UTC().Format(time.RFC3339)
	return g
}

// Event is one generated event.
type Event struct {
	Index   int
	ID      string
	Type    string
	Contact int
	Subject string
	Body    []byte // valid until the next call of Next
}

// ContactEmail is the address of contact c.
func ContactEmail(c int) string { return "c" + strconv.Itoa(c) + "@bench.example" }

// ContactSubject is the subject of contact c's events.
func ContactSubject(c int) string { return "mautic.contacts.c" + strconv.Itoa(c) }

// Next makes event i, stamped with the current time.
func (g *Generator) Next(i int) Event {
	typ := g.types[len(g.types)-1]
	if len(g.types) > 1 {
		x := g.rng.Float64() * g.cum[len(g.cum)-1]
		for j, c := range g.cum {
			if x < c {
				typ = g.types[j]
				break
			}
		}
	}
	c := i
	if g.Contacts < g.Events {
		c = g.rng.IntN(g.Contacts)
	}
	id := EventID(i, g.now())
	b := g.buf[:0]
	b = append(b, `{"specversion":"1.0","id":"`...)
	b = append(b, id...)
	b = append(b, `","source":"/mautic-sync/bench","type":"`...)
	b = append(b, typ...)
	b = append(b, `","time":"`...)
	b = append(b, g.bodyTS...)
	b = append(b, `","data":{"email":"`...)
	b = append(b, ContactEmail(c)...)
	b = append(b, '"')
	switch typ {
	case worker.TypeUpsert:
		b = append(b, `,"fields":{"firstname":"Bench","lastname":"Contact `...)
		b = strconv.AppendInt(b, int64(c), 10)
		b = append(b, `","city":"`...)
		b = append(b, cities[i%len(cities)]...)
		b = append(b, `","company":"Acme","position":"Buyer"},"tags":["bench"]`...)
	case worker.TypeSegmentAdd, worker.TypeSegmentRemove:
		b = append(b, `,"segment_id":`...)
		b = strconv.AppendInt(b, int64(1+g.rng.IntN(g.Segments)), 10)
	case worker.TypeDNCAdd:
		b = append(b, `,"channel":"email","reason":3,"comments":"bench"`...)
	case worker.TypePointsAdd:
		b = append(b, `,"delta":`...)
		b = strconv.AppendInt(b, int64(1+g.rng.IntN(5)), 10)
	}
	b = append(b, "}}"...)
	g.buf = b
	return Event{Index: i, ID: id, Type: typ, Contact: c, Subject: ContactSubject(c), Body: b}
}

var cities = []string{"Oslo", "Bergen", "Lyon", "Porto", "Graz", "Turku", "Cork", "Gdansk"}

// EventID is the id of event i made at t: "bench-<i>-<unix nanoseconds>".
func EventID(i int, t time.Time) string {
	return "bench-" + strconv.Itoa(i) + "-" + strconv.FormatInt(t.UnixNano(), 10)
}

// ParseEventID returns the number and the publish time of a bench event
// id; ok is false for any other id.
func ParseEventID(id string) (i int, t time.Time, ok bool) {
	rest, found := strings.CutPrefix(id, "bench-")
	if !found {
		return 0, time.Time{}, false
	}
	a, b, found := strings.Cut(rest, "-")
	if !found {
		return 0, time.Time{}, false
	}
	n, err1 := strconv.Atoi(a)
	ns, err2 := strconv.ParseInt(b, 10, 64)
	if err1 != nil || err2 != nil || n < 0 {
		return 0, time.Time{}, false
	}
	return n, time.Unix(0, ns), true
}
