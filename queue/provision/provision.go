// Package provision brings the JetStream streams and the consumer that
// mautic-sync uses in line with its configuration, and says what it
// changes. Unlike queue.Ensure, which runs at start-up and only creates
// what is missing, provision also updates existing streams and the
// consumer, touching only the fields mautic-sync manages:
//
//   - streams: subjects, duplicate window, storage
//   - consumer: ack policy, ack wait, max ack pending, max deliver, filter subjects
//
// Every other setting of an existing stream or consumer (limits, replicas,
// retention, descriptions, ...) is left as it is.
//
// Plan compares and returns a structured Plan; Apply carries one out.
package provision

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mautic-sync/mautic-sync/queue"
)

// Kind is what an Item provisions.
type Kind string

// Kinds of items.
const (
	KindStream   Kind = "stream"
	KindConsumer Kind = "consumer"
)

// Action is what Apply does with an item.
type Action string

// Actions.
const (
	Create    Action = "create"
	Unchanged Action = "unchanged"
	Update    Action = "update"
)

// Managed field names, as shown in a Change.
const (
	FieldSubjects       = "subjects"
	FieldDuplicates     = "duplicate window"
	FieldStorage        = "storage"
	FieldAckPolicy      = "ack policy"
	FieldAckWait        = "ack wait"
	FieldMaxAckPending  = "max ack pending"
	FieldMaxDeliver     = "max deliver"
	FieldFilterSubjects = "filter subjects"
)

// Change is one managed field that differs. For a created item Old is "".
type Change struct {
	Field string
	Old   string
	New   string
	// Immutable is set when JetStream cannot change the field of an
	// existing stream or consumer: the item would have to be deleted and
	// created again, which provision never does (it would lose messages
	// or the consumer's position).
	Immutable bool
}

// Item is one stream or the consumer.
type Item struct {
	Kind   Kind
	Name   string
	Stream string // the consumer's stream; "" for a stream
	Action Action
	// Changes lists the managed fields that Apply sets: every one for
	// Create, those that differ for Update, none for Unchanged.
	Changes []Change

	stream   *jetstream.StreamConfig   // desired config to send
	consumer *jetstream.ConsumerConfig // desired config to send
}

// String names the item, e.g. "stream MAUTIC_CONTACTS" or
// "consumer mautic-sync on stream MAUTIC_CONTACTS".
func (it Item) String() string {
	if it.Kind == KindConsumer {
		return fmt.Sprintf("consumer %s on stream %s", it.Name, it.Stream)
	}
	return fmt.Sprintf("stream %s", it.Name)
}

// Plan is the comparison of the server's state with the topology: the
// three streams (input, results, dead letters) and then the consumer.
type Plan struct {
	Items []Item
}

// Changed reports whether applying the plan changes anything.
func (p Plan) Changed() bool {
	for _, it := range p.Items {
		if it.Action != Unchanged {
			return true
		}
	}
	return false
}

// Blocked returns a description of every change JetStream cannot make in
// place; Apply refuses a plan that has any.
func (p Plan) Blocked() []string {
	var out []string
	for _, it := range p.Items {
		for _, c := range it.Changes {
			if c.Immutable {
				out = append(out, fmt.Sprintf("%s: %s %s → %s cannot be changed in place", it, c.Field, c.Old, c.New))
			}
		}
	}
	return out
}

// NewPlan compares the server's streams and consumer with the topology.
// It changes nothing.
func NewPlan(ctx context.Context, js jetstream.JetStream, t queue.Topology) (Plan, error) {
	var p Plan
	// As queue.Ensure creates them (descriptions are set on creation only).
	wants := []struct {
		name, desc string
		subjects   []string
	}{
		{t.Stream, "contact-change events for mautic-sync", t.Subjects},
		{t.ResultStream, "mautic-sync results, one per applied event", []string{t.ResultSubject}},
		{t.DLQStream, "mautic-sync dead letters", []string{t.DLQSubject}},
	}
	for _, w := range wants {
		it, err := planStream(ctx, js, jetstream.StreamConfig{
			Name: w.name, Subjects: w.subjects, Duplicates: t.Duplicates, Storage: jetstream.FileStorage,
			Description: w.desc,
		})
		if err != nil {
			return Plan{}, err
		}
		p.Items = append(p.Items, it)
	}
	it, err := planConsumer(ctx, js, t)
	if err != nil {
		return Plan{}, err
	}
	p.Items = append(p.Items, it)
	return p, nil
}

func planStream(ctx context.Context, js jetstream.JetStream, want jetstream.StreamConfig) (Item, error) {
	it := Item{Kind: KindStream, Name: want.Name}
	s, err := js.Stream(ctx, want.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		it.Action = Create
		it.stream = &want
		it.Changes = []Change{
			{Field: FieldSubjects, New: listString(want.Subjects)},
			{Field: FieldDuplicates, New: want.Duplicates.String()},
			{Field: FieldStorage, New: storageString(want.Storage)},
		}
		return it, nil
	}
	if err != nil {
		return Item{}, fmt.Errorf("provision: look up stream %s: %w (is JetStream enabled on the server?)", want.Name, err)
	}
	info := s.CachedInfo()
	cur := info.Config
	next := cur // only the managed fields change
	if !sameSet(cur.Subjects, want.Subjects) {
		it.Changes = append(it.Changes, Change{Field: FieldSubjects, Old: listString(cur.Subjects), New: listString(want.Subjects)})
		next.Subjects = want.Subjects
	}
	if cur.Duplicates != want.Duplicates {
		it.Changes = append(it.Changes, Change{Field: FieldDuplicates, Old: cur.Duplicates.String(), New: want.Duplicates.String()})
		next.Duplicates = want.Duplicates
	}
	if cur.Storage != want.Storage {
		it.Changes = append(it.Changes, Change{Field: FieldStorage, Old: storageString(cur.Storage), New: storageString(want.Storage), Immutable: true})
	}
	it.Action = Unchanged
	if len(it.Changes) > 0 {
		it.Action = Update
		it.stream = &next
	}
	return it, nil
}

// consumerMaxDeliver is the consumer's MaxDeliver: unlimited, because the
// worker counts deliveries itself and dead-letters with the payload; the
// server must not drop messages silently first.
const consumerMaxDeliver = -1

func planConsumer(ctx context.Context, js jetstream.JetStream, t queue.Topology) (Item, error) {
	it := Item{Kind: KindConsumer, Name: t.Consumer, Stream: t.Stream}
	want := jetstream.ConsumerConfig{
		Durable:       t.Consumer,
		Description:   "mautic-sync worker",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       t.AckWait,
		MaxAckPending: t.MaxAckPending,
		MaxDeliver:    consumerMaxDeliver,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
	cons, err := js.Consumer(ctx, t.Stream, t.Consumer)
	if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
		it.Action = Create
		it.consumer = &want
		it.Changes = []Change{
			{Field: FieldAckPolicy, New: ackPolicyString(want.AckPolicy)},
			{Field: FieldAckWait, New: want.AckWait.String()},
			{Field: FieldMaxAckPending, New: fmt.Sprint(want.MaxAckPending)},
			{Field: FieldMaxDeliver, New: maxDeliverString(want.MaxDeliver)},
			{Field: FieldFilterSubjects, New: filterString(nil)},
		}
		return it, nil
	}
	if err != nil {
		return Item{}, fmt.Errorf("provision: look up consumer %s on stream %s: %w", t.Consumer, t.Stream, err)
	}
	cur := cons.CachedInfo().Config
	next := cur
	if cur.AckPolicy != want.AckPolicy {
		it.Changes = append(it.Changes, Change{Field: FieldAckPolicy, Old: ackPolicyString(cur.AckPolicy), New: ackPolicyString(want.AckPolicy), Immutable: true})
	}
	if cur.AckWait != want.AckWait {
		it.Changes = append(it.Changes, Change{Field: FieldAckWait, Old: cur.AckWait.String(), New: want.AckWait.String()})
		next.AckWait = want.AckWait
	}
	if cur.MaxAckPending != want.MaxAckPending {
		it.Changes = append(it.Changes, Change{Field: FieldMaxAckPending, Old: fmt.Sprint(cur.MaxAckPending), New: fmt.Sprint(want.MaxAckPending)})
		next.MaxAckPending = want.MaxAckPending
	}
	if normMaxDeliver(cur.MaxDeliver) != want.MaxDeliver {
		it.Changes = append(it.Changes, Change{Field: FieldMaxDeliver, Old: maxDeliverString(cur.MaxDeliver), New: maxDeliverString(want.MaxDeliver)})
		next.MaxDeliver = want.MaxDeliver
		next.BackOff = nil // a backoff list longer than MaxDeliver is refused
	}
	if filters := filtersOf(cur); len(filters) > 0 {
		it.Changes = append(it.Changes, Change{Field: FieldFilterSubjects, Old: filterString(filters), New: filterString(nil)})
		next.FilterSubject, next.FilterSubjects = "", nil
	}
	it.Action = Unchanged
	if len(it.Changes) > 0 {
		it.Action = Update
		it.consumer = &next
	}
	return it, nil
}

// ErrBlocked is returned by Apply for a plan with changes JetStream cannot
// make in place.
var ErrBlocked = errors.New("provision: the plan has changes JetStream cannot make in place; nothing was changed")

// Apply carries out the plan: creates and updates streams, then the
// consumer. It refuses, changing nothing, a plan with immutable changes.
// It stops at the first failure; what was done before stays done, and
// planning again shows what is left.
func Apply(ctx context.Context, js jetstream.JetStream, p Plan) error {
	if b := p.Blocked(); len(b) > 0 {
		return fmt.Errorf("%w:\n  %s", ErrBlocked, strings.Join(b, "\n  "))
	}
	for _, it := range p.Items {
		var err error
		switch {
		case it.Action == Unchanged:
			continue
		case it.stream == nil && it.consumer == nil:
			return fmt.Errorf("provision: %s: not from NewPlan", it)
		case it.Kind == KindStream && it.Action == Create:
			_, err = js.CreateStream(ctx, *it.stream)
		case it.Kind == KindStream:
			_, err = js.UpdateStream(ctx, *it.stream)
		case it.Action == Create:
			_, err = js.CreateConsumer(ctx, it.Stream, *it.consumer)
		default:
			_, err = js.UpdateConsumer(ctx, it.Stream, *it.consumer)
		}
		if err != nil {
			return fmt.Errorf("provision: %s %s: %w", it.Action, it, err)
		}
	}
	return nil
}

// Run plans and, unless dryRun, applies. The plan is returned in both
// cases (and with an apply error).
func Run(ctx context.Context, js jetstream.JetStream, t queue.Topology, dryRun bool) (Plan, error) {
	p, err := NewPlan(ctx, js, t)
	if err != nil || dryRun {
		return p, err
	}
	return p, Apply(ctx, js, p)
}

func filtersOf(c jetstream.ConsumerConfig) []string {
	var out []string
	if c.FilterSubject != "" {
		out = append(out, c.FilterSubject)
	}
	return append(out, c.FilterSubjects...)
}

func normMaxDeliver(n int) int {
	if n <= 0 {
		return -1
	}
	return n
}

func maxDeliverString(n int) string {
	if n <= 0 {
		return "unlimited"
	}
	return fmt.Sprint(n)
}

func filterString(f []string) string {
	if len(f) == 0 {
		return "none (the whole stream)"
	}
	return listString(f)
}

func listString(l []string) string { return "[" + strings.Join(l, ", ") + "]" }

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b))
}

func storageString(s jetstream.StorageType) string {
	if s == jetstream.MemoryStorage {
		return "memory"
	}
	return "file"
}

func ackPolicyString(p jetstream.AckPolicy) string {
	switch p {
	case jetstream.AckNonePolicy:
		return "none"
	case jetstream.AckAllPolicy:
		return "all"
	case jetstream.AckExplicitPolicy:
		return "explicit"
	}
	return p.String()
}
