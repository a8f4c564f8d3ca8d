package queue

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// PriorityGroup is the priority group every replica pulls partition
// consumers with. The consumers use the pinned-client policy: the server
// delivers a partition's messages to one client (the pinned one) at a time
// and moves the pin only when that client stops pulling for the pin's
// timeout or gives the pin up (unpin).
const PriorityGroup = "mautic-sync"

// Partitioning says how the input stream is split into partitions. The
// stream's subject transform turns <prefix>.<key> into
// <prefix>.<partition>.<key>, the partition being a deterministic hash of
// the key ({{partition(N,1)}}), so that every event of one contact lands
// in one partition. Each partition has its own durable pull consumer.
type Partitioning struct {
	// Count is the number of partitions; 0 means unpartitioned.
	Count int
	// Prefix is the subject prefix the key follows, e.g. mautic.contacts.
	Prefix string
	// PinTTL is how long the server keeps a partition pinned to a client
	// that sends no pull request (the takeover time of a dead replica).
	PinTTL time.Duration
	// Replicas is the replica count of what is created (0 or 1: one).
	Replicas int
}

// Transform is the input stream's subject transform.
func (p Partitioning) Transform() *jetstream.SubjectTransformConfig {
	return &jetstream.SubjectTransformConfig{
		Source:      p.Prefix + ".*",
		Destination: fmt.Sprintf("%s.{{partition(%d,1)}}.{{wildcard(1)}}", p.Prefix, p.Count),
	}
}

// Filter is the subject filter of partition i's consumer.
func (p Partitioning) Filter(i int) string { return p.Prefix + "." + strconv.Itoa(i) + ".*" }

// LegacyFilter matches the subjects the stream stored before it was
// partitioned (<prefix>.<key>), and no partitioned one: the filter the
// unpartitioned consumer gets while it finishes them.
func (p Partitioning) LegacyFilter() string { return p.Prefix + ".*" }

// Of returns the partition of a stored (transformed) subject, or -1.
func (p Partitioning) Of(subject string) int {
	rest, ok := strings.CutPrefix(subject, p.Prefix+".")
	if !ok {
		return -1
	}
	tok, _, ok := strings.Cut(rest, ".")
	if !ok {
		return -1
	}
	n, err := strconv.Atoi(tok)
	if err != nil || n < 0 || n >= p.Count {
		return -1
	}
	return n
}

// PartitionConsumer names partition i's durable consumer: <base>-p<i>.
func PartitionConsumer(base string, i int) string { return base + "-p" + strconv.Itoa(i) }

// SameTransform reports whether the stream's transform is the one p asks for.
func (p Partitioning) SameTransform(t *jetstream.SubjectTransformConfig) bool {
	want := p.Transform()
	return t != nil && t.Source == want.Source && t.Destination == want.Destination
}

// TransformString shows a transform for messages ("none" when nil).
func TransformString(t *jetstream.SubjectTransformConfig) string {
	if t == nil || (t.Source == "" && t.Destination == "") {
		return "none"
	}
	return t.Source + " → " + t.Destination
}

// InputStreamConfig is the input stream as mautic-sync creates it, with
// the partition transform when p partitions it.
func InputStreamConfig(t Topology, p Partitioning) jetstream.StreamConfig {
	cfg := jetstream.StreamConfig{Name: t.Stream, Subjects: t.Subjects, Duplicates: t.Duplicates, Storage: jetstream.FileStorage,
		Description: "contact-change events for mautic-sync", Replicas: max(p.Replicas, 1)}
	if p.Count > 0 {
		cfg.SubjectTransform = p.Transform()
	}
	return cfg
}

// OutcomeStreamConfigs are the result and dead-letter streams as
// mautic-sync creates them.
func OutcomeStreamConfigs(t Topology, replicas int) []jetstream.StreamConfig {
	return []jetstream.StreamConfig{
		{Name: t.ResultStream, Subjects: []string{t.ResultSubject}, Duplicates: t.Duplicates, Storage: jetstream.FileStorage,
			Description: "mautic-sync results, one per applied event", Replicas: max(replicas, 1)},
		{Name: t.DLQStream, Subjects: []string{t.DLQSubject}, Duplicates: t.Duplicates, Storage: jetstream.FileStorage,
			Description: "mautic-sync dead letters", Replicas: max(replicas, 1)},
	}
}

// PartitionConsumerConfig is partition i's durable pull consumer: as the
// unpartitioned one (explicit ack, unlimited deliveries: the worker counts
// them), filtered to the partition, with the pinned-client priority policy.
func PartitionConsumerConfig(t Topology, p Partitioning, i int) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:        PartitionConsumer(t.Consumer, i),
		Description:    fmt.Sprintf("mautic-sync worker, partition %d of %d", i, p.Count),
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        t.AckWait,
		MaxAckPending:  t.MaxAckPending,
		MaxDeliver:     -1,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		FilterSubject:  p.Filter(i),
		PriorityPolicy: jetstream.PriorityPolicyPinned,
		PriorityGroups: []string{PriorityGroup},
		PinnedTTL:      p.PinTTL,
		Replicas:       0, // the stream's
	}
}

// EnsurePartitioned is Ensure for a partitioned stream: it checks that the
// streams exist (the input stream with the partition transform) and that
// every partition consumer exists, creating what is missing when create is
// set; an input stream without the transform is an error that says to run
// `mautic-sync provision` (which changes it, see docs/scaling.md). It
// returns the partition consumers in order. The unpartitioned consumer is
// neither created nor needed.
func EnsurePartitioned(ctx context.Context, js jetstream.JetStream, t Topology, p Partitioning, create bool) ([]jetstream.Consumer, error) {
	in := InputStreamConfig(t, p)
	if err := ensureStream(ctx, js, in, create); err != nil {
		return nil, err
	}
	s, err := js.Stream(ctx, t.Stream)
	if err != nil {
		return nil, fmt.Errorf("queue: stream %s: %w", t.Stream, err)
	}
	if tr := s.CachedInfo().Config.SubjectTransform; !p.SameTransform(tr) {
		return nil, fmt.Errorf("queue: stream %s is not partitioned in %d (its subject transform is %s, want %s): run `mautic-sync provision` with PARTITIONS=%d first, see docs/scaling.md",
			t.Stream, p.Count, TransformString(tr), TransformString(p.Transform()), p.Count)
	}
	for _, cfg := range OutcomeStreamConfigs(t, p.Replicas) {
		if err := ensureStream(ctx, js, cfg, create); err != nil {
			return nil, err
		}
	}
	out := make([]jetstream.Consumer, p.Count)
	for i := range p.Count {
		cc := PartitionConsumerConfig(t, p, i)
		cons, err := js.Consumer(ctx, t.Stream, cc.Durable)
		switch {
		case err == nil:
			info := cons.CachedInfo()
			if info.Config.PriorityPolicy != jetstream.PriorityPolicyPinned || info.Config.FilterSubject != cc.FilterSubject {
				return nil, fmt.Errorf("queue: consumer %s on stream %s is not partition %d's (filter %q, priority policy %s; want %q, pinned_client): run `mautic-sync provision`",
					cc.Durable, t.Stream, i, info.Config.FilterSubject, PriorityPolicyString(info.Config.PriorityPolicy), cc.FilterSubject)
			}
		case !errors.Is(err, jetstream.ErrConsumerNotFound):
			return nil, fmt.Errorf("queue: look up consumer %s on stream %s: %w", cc.Durable, t.Stream, err)
		case !create:
			return nil, fmt.Errorf("queue: consumer %s on stream %s does not exist and CREATE_STREAMS is false: run `mautic-sync provision` or set CREATE_STREAMS=true", cc.Durable, t.Stream)
		default:
			if cons, err = js.CreateOrUpdateConsumer(ctx, t.Stream, cc); err != nil {
				return nil, fmt.Errorf("queue: create consumer %s on stream %s: %w", cc.Durable, t.Stream, err)
			}
		}
		out[i] = cons
	}
	return out, nil
}

// EnsureReplicatedStreams creates the three streams with replicas copies
// when they are missing, before Ensure binds to them (Ensure creates one
// copy). Existing streams are left as they are.
func EnsureReplicatedStreams(ctx context.Context, js jetstream.JetStream, t Topology, replicas int) error {
	if replicas <= 1 {
		return nil
	}
	for _, cfg := range append([]jetstream.StreamConfig{InputStreamConfig(t, Partitioning{Replicas: replicas})}, OutcomeStreamConfigs(t, replicas)...) {
		if err := ensureStream(ctx, js, cfg, true); err != nil {
			return err
		}
	}
	return nil
}

// EnsureReplicatedBuckets creates the ledger bucket (and, when
// tokenBucket is set, the refresh-token bucket) with replicas copies when
// they are missing, as OpenLedger and OpenTokenStore would create them
// with one. Existing buckets are left as they are.
func EnsureReplicatedBuckets(ctx context.Context, js jetstream.JetStream, replicas int, ledger LedgerOptions, tokenBucket string) error {
	if replicas <= 1 {
		return nil
	}
	cfgs := []jetstream.KeyValueConfig{{
		Bucket: ledger.Bucket, Description: "mautic-sync: event ids that took effect", TTL: ledger.TTL, History: 1,
		Storage: jetstream.FileStorage, Replicas: replicas,
	}}
	if tokenBucket != "" {
		cfgs = append(cfgs, jetstream.KeyValueConfig{Bucket: tokenBucket, Description: "mautic-sync: current Mautic refresh token",
			History: 5, Storage: jetstream.FileStorage, Replicas: replicas})
	}
	for _, cfg := range cfgs {
		if _, err := ensureBucket(ctx, js, cfg, true); err != nil {
			return err
		}
	}
	return nil
}

// ensureBucket binds to a key-value bucket, creating it when missing and
// create is set.
func ensureBucket(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig, create bool) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, cfg.Bucket)
	switch {
	case err == nil:
		return kv, nil
	case !errors.Is(err, jetstream.ErrBucketNotFound):
		return nil, fmt.Errorf("queue: open bucket %s: %w", cfg.Bucket, err)
	case !create:
		return nil, fmt.Errorf("queue: key-value bucket %s does not exist and CREATE_STREAMS is false: run `mautic-sync provision` or set CREATE_STREAMS=true", cfg.Bucket)
	}
	kv, err = js.CreateKeyValue(ctx, cfg)
	if errors.Is(err, jetstream.ErrBucketExists) {
		kv, err = js.KeyValue(ctx, cfg.Bucket)
	}
	if err != nil {
		return nil, fmt.Errorf("queue: create bucket %s: %w", cfg.Bucket, err)
	}
	return kv, nil
}

// UnackedFiltered is Unacked for a consumer with a subject filter: the
// messages matching filter after the consumer's ack floor up to the last
// one it delivered (at most limit of them), read by subject so that other
// partitions' messages in that range are skipped. info, when not nil, is
// a fresh ConsumerInfo to use instead of asking.
func UnackedFiltered(ctx context.Context, js jetstream.JetStream, cons jetstream.Consumer, filter string, info *jetstream.ConsumerInfo, limit int) ([]StoredMsg, error) {
	if info == nil {
		var err error
		if info, err = cons.Info(ctx); err != nil {
			return nil, fmt.Errorf("queue: consumer info: %w", err)
		}
	}
	if info.NumAckPending == 0 {
		return nil, nil
	}
	var out []StoredMsg
	for seq, last := info.AckFloor.Stream+1, info.Delivered.Stream; seq <= last && len(out) < limit; {
		m, ok, err := ReadMsg(ctx, js, info.Stream, seq, filter)
		if err != nil {
			return out, fmt.Errorf("queue: read message at or after %d on %s: %w", seq, filter, err)
		}
		if !ok || m.Seq > last {
			break // none at or after seq
		}
		out = append(out, m)
		seq = m.Seq + 1
	}
	return out, nil
}

// PriorityPolicyString names a priority policy as JetStream does.
func PriorityPolicyString(p jetstream.PriorityPolicy) string {
	b, err := p.MarshalJSON()
	if err != nil {
		return fmt.Sprint(int(p))
	}
	return strings.Trim(string(b), `"`)
}
