// Package provision brings the JetStream streams and the consumer that
// mautic-sync uses in line with its configuration, and says what it
// changes. Unlike queue.Ensure, which runs at start-up and only creates
// what is missing, provision also updates existing streams and the
// consumer, touching only the fields mautic-sync manages:
//
//   - streams: subjects, duplicate window, storage, and the input stream's
//     partition transform when partitioned
//   - consumer: ack policy, ack wait, max ack pending, max deliver, filter
//     subjects, and the priority policy of partition consumers
//   - key-value buckets (the members of elastic partitioning, the shared
//     rate budget): TTL, storage
//
// Every other setting of an existing stream or consumer (limits, replicas,
// retention, descriptions, ...) is left as it is. Replicas are set on what
// is created (Options.Replicas).
//
// Partitioned (Options.Partitioning.Count > 0): the input stream gets the
// subject transform that puts the partition in the subject; each partition
// gets its consumer (<consumer>-p<i>, pinned-client priority policy); the
// unpartitioned consumer, when it exists, is narrowed to the subjects
// stored before partitioning (<prefix>.*), so that it finishes those and
// takes no partitioned message, and is never created. See docs/scaling.md.
//
// Plan compares and returns a structured Plan; Apply carries one out.
package provision

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mautic-sync/mautic-sync/queue"
)

// Kind is what an Item provisions.
type Kind string

// Kinds of items.
const (
	KindStream   Kind = "stream"
	KindConsumer Kind = "consumer"
	KindBucket   Kind = "key-value bucket"
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
	FieldTransform      = "subject transform"
	FieldPriority       = "priority policy"
	FieldTTL            = "ttl"
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
	bucket   *jetstream.KeyValueConfig // desired config to send
}

// String names the item, e.g. "stream MAUTIC_CONTACTS" or
// "consumer mautic-sync on stream MAUTIC_CONTACTS".
func (it Item) String() string {
	switch it.Kind {
	case KindConsumer:
		return fmt.Sprintf("consumer %s on stream %s", it.Name, it.Stream)
	case KindBucket:
		return fmt.Sprintf("key-value bucket %s", it.Name)
	}
	return fmt.Sprintf("stream %s", it.Name)
}

// Plan is the comparison of the server's state with the topology: the
// three streams (input, results, dead letters), then the consumer (or, when
// partitioned, the unpartitioned consumer if it exists and the partition
// consumers), then the key-value buckets of Options.
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

// Options are what provisioning needs beyond the topology.
type Options struct {
	// Partitioning, when Count > 0, partitions the input stream.
	Partitioning queue.Partitioning
	// Buckets are key-value buckets to create (the members bucket of
	// elastic partitioning, the shared rate budget's bucket).
	Buckets []jetstream.KeyValueConfig
	// Replicas of what is created (0 or 1: one).
	Replicas int
}

// NewPlan compares the server's streams and consumer with the topology.
// It changes nothing.
func NewPlan(ctx context.Context, js jetstream.JetStream, t queue.Topology) (Plan, error) {
	return NewPlanWith(ctx, js, t, Options{})
}

// NewPlanWith is NewPlan with partitioning, buckets and replicas. It
// changes nothing.
func NewPlanWith(ctx context.Context, js jetstream.JetStream, t queue.Topology, o Options) (Plan, error) {
	var p Plan
	part := o.Partitioning
	part.Replicas = o.Replicas
	// As queue.Ensure creates them (descriptions are set on creation only).
	wants := append([]jetstream.StreamConfig{queue.InputStreamConfig(t, part)}, queue.OutcomeStreamConfigs(t, o.Replicas)...)
	for i, w := range wants {
		it, err := planStream(ctx, js, w, i == 0 && part.Count > 0, part)
		if err != nil {
			return Plan{}, err
		}
		p.Items = append(p.Items, it)
	}
	if part.Count == 0 {
		it, err := planConsumer(ctx, js, t.Stream, unpartitionedConsumer(t), false)
		if err != nil {
			return Plan{}, err
		}
		p.Items = append(p.Items, it)
	} else {
		legacy := unpartitionedConsumer(t)
		legacy.FilterSubject = part.LegacyFilter()
		it, err := planConsumer(ctx, js, t.Stream, legacy, true)
		if err != nil {
			return Plan{}, err
		}
		if it.Action != Create { // exists: narrow it; missing: never create it
			p.Items = append(p.Items, it)
		}
		for i := range part.Count {
			it, err := planConsumer(ctx, js, t.Stream, queue.PartitionConsumerConfig(t, part, i), false)
			if err != nil {
				return Plan{}, err
			}
			p.Items = append(p.Items, it)
		}
	}
	for _, b := range o.Buckets {
		b.Replicas = max(b.Replicas, o.Replicas, 1)
		it, err := planBucket(ctx, js, b)
		if err != nil {
			return Plan{}, err
		}
		p.Items = append(p.Items, it)
	}
	return p, nil
}

// unpartitionedConsumer is the durable consumer of an unpartitioned
// stream, as queue.Ensure creates it.
func unpartitionedConsumer(t queue.Topology) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       t.Consumer,
		Description:   "mautic-sync worker",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       t.AckWait,
		MaxAckPending: t.MaxAckPending,
		MaxDeliver:    consumerMaxDeliver,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
}

// planStream plans one stream; the input stream of a partitioned topology
// (partitioned set) also has its subject transform managed.
func planStream(ctx context.Context, js jetstream.JetStream, want jetstream.StreamConfig, partitioned bool, part queue.Partitioning) (Item, error) {
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
		if partitioned {
			it.Changes = append(it.Changes, Change{Field: FieldTransform, New: queue.TransformString(want.SubjectTransform)})
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
	if partitioned && !part.SameTransform(cur.SubjectTransform) {
		// Adding the transform partitions what is stored from now on.
		// Changing the number of partitions would move contacts between
		// partitions while their older events wait in the old ones: it
		// needs the drain described in docs/scaling.md, not an update.
		c := Change{Field: FieldTransform, Old: queue.TransformString(cur.SubjectTransform), New: queue.TransformString(want.SubjectTransform)}
		if cur.SubjectTransform != nil && cur.SubjectTransform.Destination != "" {
			c.Immutable = true
		}
		it.Changes = append(it.Changes, c)
		next.SubjectTransform = want.SubjectTransform
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

// planConsumer plans one consumer. keepOthers leaves the managed fields
// other than the filter as they are (the unpartitioned consumer while it
// finishes the messages stored before partitioning).
func planConsumer(ctx context.Context, js jetstream.JetStream, stream string, want jetstream.ConsumerConfig, keepOthers bool) (Item, error) {
	it := Item{Kind: KindConsumer, Name: want.Durable, Stream: stream}
	cons, err := js.Consumer(ctx, stream, want.Durable)
	if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
		it.Action = Create
		it.consumer = &want
		it.Changes = []Change{
			{Field: FieldAckPolicy, New: ackPolicyString(want.AckPolicy)},
			{Field: FieldAckWait, New: want.AckWait.String()},
			{Field: FieldMaxAckPending, New: fmt.Sprint(want.MaxAckPending)},
			{Field: FieldMaxDeliver, New: maxDeliverString(want.MaxDeliver)},
			{Field: FieldFilterSubjects, New: filterString(filtersOf(want))},
		}
		if want.PriorityPolicy != jetstream.PriorityPolicyNone {
			it.Changes = append(it.Changes, Change{Field: FieldPriority, New: priorityString(want)})
		}
		return it, nil
	}
	if err != nil {
		return Item{}, fmt.Errorf("provision: look up consumer %s on stream %s: %w", want.Durable, stream, err)
	}
	cur := cons.CachedInfo().Config
	next := cur
	if keepOthers {
		want.AckWait, want.MaxAckPending, want.MaxDeliver = cur.AckWait, cur.MaxAckPending, normMaxDeliver(cur.MaxDeliver)
	}
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
	if filters, wantFilters := filtersOf(cur), filtersOf(want); !sameSet(filters, wantFilters) {
		it.Changes = append(it.Changes, Change{Field: FieldFilterSubjects, Old: filterString(filters), New: filterString(wantFilters)})
		next.FilterSubject, next.FilterSubjects = want.FilterSubject, want.FilterSubjects
	}
	if priorityString(cur) != priorityString(want) {
		it.Changes = append(it.Changes, Change{Field: FieldPriority, Old: priorityString(cur), New: priorityString(want)})
		next.PriorityPolicy, next.PriorityGroups, next.PinnedTTL = want.PriorityPolicy, want.PriorityGroups, want.PinnedTTL
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
		case it.stream == nil && it.consumer == nil && it.bucket == nil:
			return fmt.Errorf("provision: %s: not from NewPlan", it)
		case it.Kind == KindStream && it.Action == Create:
			_, err = js.CreateStream(ctx, *it.stream)
		case it.Kind == KindStream:
			_, err = js.UpdateStream(ctx, *it.stream)
		case it.Kind == KindBucket && it.Action == Create:
			_, err = js.CreateKeyValue(ctx, *it.bucket)
		case it.Kind == KindBucket:
			_, err = js.UpdateKeyValue(ctx, *it.bucket)
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
	return RunWith(ctx, js, t, Options{}, dryRun)
}

// RunWith is Run with partitioning, buckets and replicas.
func RunWith(ctx context.Context, js jetstream.JetStream, t queue.Topology, o Options, dryRun bool) (Plan, error) {
	p, err := NewPlanWith(ctx, js, t, o)
	if err != nil || dryRun {
		return p, err
	}
	return p, Apply(ctx, js, p)
}

// planBucket plans a key-value bucket: TTL and storage are managed.
func planBucket(ctx context.Context, js jetstream.JetStream, want jetstream.KeyValueConfig) (Item, error) {
	it := Item{Kind: KindBucket, Name: want.Bucket}
	kv, err := js.KeyValue(ctx, want.Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		it.Action = Create
		it.bucket = &want
		it.Changes = []Change{
			{Field: FieldTTL, New: ttlString(want.TTL)},
			{Field: FieldStorage, New: storageString(want.Storage)},
		}
		return it, nil
	}
	if err != nil {
		return Item{}, fmt.Errorf("provision: look up key-value bucket %s: %w", want.Bucket, err)
	}
	st, err := kv.Status(ctx)
	if err != nil {
		return Item{}, fmt.Errorf("provision: key-value bucket %s: %w", want.Bucket, err)
	}
	info := st.(*jetstream.KeyValueBucketStatus).StreamInfo()
	next := jetstream.KeyValueConfig{Bucket: want.Bucket, Description: info.Config.Description, MaxValueSize: info.Config.MaxMsgSize,
		History: uint8(max(info.Config.MaxMsgsPerSubject, 1)), TTL: info.Config.MaxAge, MaxBytes: info.Config.MaxBytes,
		Storage: info.Config.Storage, Replicas: info.Config.Replicas, Compression: info.Config.Compression != jetstream.NoCompression}
	if info.Config.MaxAge != want.TTL {
		it.Changes = append(it.Changes, Change{Field: FieldTTL, Old: ttlString(info.Config.MaxAge), New: ttlString(want.TTL)})
		next.TTL = want.TTL
	}
	if info.Config.Storage != want.Storage {
		it.Changes = append(it.Changes, Change{Field: FieldStorage, Old: storageString(info.Config.Storage), New: storageString(want.Storage), Immutable: true})
	}
	it.Action = Unchanged
	if len(it.Changes) > 0 {
		it.Action = Update
		it.bucket = &next
	}
	return it, nil
}

func ttlString(d time.Duration) string {
	if d <= 0 {
		return "none"
	}
	return d.String()
}

// priorityString shows a consumer's priority policy, its groups and pin
// timeout; "none" without one.
func priorityString(c jetstream.ConsumerConfig) string {
	if c.PriorityPolicy == jetstream.PriorityPolicyNone {
		return "none"
	}
	s := queue.PriorityPolicyString(c.PriorityPolicy) + " " + listString(c.PriorityGroups)
	if c.PriorityPolicy == jetstream.PriorityPolicyPinned {
		s += " pin timeout " + c.PinnedTTL.String()
	}
	return s
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
