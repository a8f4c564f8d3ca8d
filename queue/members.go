package queue

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Members is the membership of elastic partitioned consumption: every
// replica announces itself in a JetStream key-value bucket whose entries
// expire after the bucket's TTL, so that a replica that stops announcing
// (killed, cut off) drops out of the list and its partitions go to the
// others. The same bucket holds the claims on partitions: a replica pulls
// a partition only while it holds its claim, taken with compare-and-set
// and renewed like the announcement.
type Members struct {
	kv jetstream.KeyValue
	// leader, set on a replicated bucket, reads a conflicting claim from
	// the stream leader: a lagging follower may show a released claim as
	// still held.
	leader *leaderReads
}

// MembersBucketConfig is the members bucket as mautic-sync creates it:
// entries live ttl (the takeover time) unless renewed.
func MembersBucketConfig(bucket string, ttl time.Duration, replicas int) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{Bucket: bucket, Description: "mautic-sync: replicas sharing the partitions",
		TTL: ttl, History: 1, Storage: jetstream.MemoryStorage, Replicas: max(replicas, 1)}
}

// OpenMembers binds to (or, with create, creates) the members bucket.
func OpenMembers(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig, create bool) (*Members, error) {
	kv, err := ensureBucket(ctx, js, cfg, create)
	if err != nil {
		return nil, err
	}
	leader, err := kvLeaderReads(ctx, js, kv)
	if err != nil {
		return nil, fmt.Errorf("queue: members bucket: %w", err)
	}
	return &Members{kv: kv, leader: leader}, nil
}

// Announce puts (or renews) the member id.
func (m *Members) Announce(ctx context.Context, id string, info []byte) error {
	if _, err := m.kv.Put(ctx, "m."+id, info); err != nil {
		return fmt.Errorf("queue: announce member %s: %w", id, err)
	}
	return nil
}

// Leave removes the member id at once.
func (m *Members) Leave(ctx context.Context, id string) error {
	if err := m.kv.Delete(ctx, "m."+id); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("queue: leave as member %s: %w", id, err)
	}
	return nil
}

// List returns the ids of the live members, sorted.
func (m *Members) List(ctx context.Context) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	keys, err := m.kv.Keys(ctx)
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("queue: list members: %w", err)
	}
	if ctx.Err() != nil {
		return nil, fmt.Errorf("queue: list members: %w", ctx.Err())
	}
	var out []string
	for _, k := range keys {
		if id, ok := strings.CutPrefix(k, "m."); ok {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out, nil
}

// Claim takes partition p for member id unless another member holds it;
// it returns the claim's revision, and ok false when another holds it.
// Claims live the bucket's TTL unless renewed.
func (m *Members) Claim(ctx context.Context, p int, id string) (rev uint64, ok bool, err error) {
	key := claimKey(p)
	rev, _, ok, err = createKey(ctx, m.kv, m.leader, kvSubject(m.kv.Bucket(), key), key, []byte(id))
	if err != nil {
		return 0, false, fmt.Errorf("queue: claim partition %d: %w", p, err)
	}
	return rev, ok, nil
}

// Renew renews a claim held at revision rev; ok is false when the claim
// is no longer this one (it expired, and maybe another member took it).
func (m *Members) Renew(ctx context.Context, p int, id string, rev uint64) (uint64, bool, error) {
	next, err := update(ctx, m.kv, claimKey(p), []byte(id), rev)
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("queue: renew the claim of partition %d: %w", p, err)
	}
	return next, true, nil
}

// Unclaim gives up a claim held at revision rev.
func (m *Members) Unclaim(ctx context.Context, p int, rev uint64) error {
	_, err := casWrite(ctx, func() (struct{}, error) {
		return struct{}{}, m.kv.Delete(ctx, claimKey(p), jetstream.LastRevision(rev))
	})
	if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) && !casConflict(err) {
		return fmt.Errorf("queue: give up the claim of partition %d: %w", p, err)
	}
	return nil
}

func claimKey(p int) string { return "p." + strconv.Itoa(p) }
