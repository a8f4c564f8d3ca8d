package queue

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// RateStore keeps the Mautic client-side budget's count of calls per
// window in a JetStream key-value bucket, one key per window, updated with
// compare-and-set, so that every replica sharing one Mautic rate-limit
// bucket counts against one budget. It implements mautic.RateStore.
type RateStore struct {
	kv    jetstream.KeyValue
	scope string
	// leader, set on a replicated bucket, reads counts from the stream
	// leader: a lagging follower's count would only fail the update.
	leader *leaderReads
}

// RateBucketConfig is the bucket as mautic-sync creates it: a window's key
// outlives the window (two of them), then expires.
func RateBucketConfig(bucket string, window time.Duration, replicas int) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{Bucket: bucket, Description: "mautic-sync: Mautic calls per rate-limit window, shared by the replicas",
		TTL: 2 * window, History: 1, Storage: jetstream.FileStorage, Replicas: max(replicas, 1)}
}

// OpenRateStore binds to (or, with create, creates) the bucket. scope
// names the Mautic bucket counted (the same for every replica that shares
// it, e.g. derived from the basic-auth user or the OAuth2 client id), so
// that several Mautic clients can share a key-value bucket.
func OpenRateStore(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig, scope string, create bool) (*RateStore, error) {
	kv, err := ensureBucket(ctx, js, cfg, create)
	if err != nil {
		return nil, err
	}
	leader, err := kvLeaderReads(ctx, js, kv)
	if err != nil {
		return nil, fmt.Errorf("queue: rate bucket: %w", err)
	}
	return &RateStore{kv: kv, scope: "s" + ledgerKey(scope)[2:18], leader: leader}, nil
}

func (s *RateStore) key(start time.Time) string {
	return s.scope + ".w" + strconv.FormatInt(start.Unix(), 10)
}

// maxCASAttempts bounds the compare-and-set retries of one update.
const maxCASAttempts = 50

// Take implements mautic.RateStore.
func (s *RateStore) Take(ctx context.Context, start time.Time, limit int) (int, bool, error) {
	key := s.key(start)
	for range maxCASAttempts {
		n, rev, err := s.get(ctx, key)
		if err != nil {
			return 0, false, err
		}
		if n >= limit {
			return n, false, nil
		}
		if err := s.set(ctx, key, n+1, rev); errors.Is(err, errConflict) {
			continue
		} else if err != nil {
			return 0, false, err
		}
		return n + 1, true, nil
	}
	return 0, false, errors.New("queue: rate count kept changing under concurrent updates")
}

// Raise implements mautic.RateStore.
func (s *RateStore) Raise(ctx context.Context, start time.Time, n int) error {
	key := s.key(start)
	for range maxCASAttempts {
		cur, rev, err := s.get(ctx, key)
		if err != nil || cur >= n {
			return err
		}
		if err := s.set(ctx, key, n, rev); !errors.Is(err, errConflict) {
			return err
		}
	}
	return errors.New("queue: rate count kept changing under concurrent updates")
}

var errConflict = errors.New("conflict")

func (s *RateStore) get(ctx context.Context, key string) (int, uint64, error) {
	value, rev, found, err := getKey(ctx, s.kv, s.leader, kvSubject(s.kv.Bucket(), key), key)
	if err != nil {
		return 0, 0, fmt.Errorf("queue: read rate count: %w", err)
	}
	if !found {
		return 0, 0, nil
	}
	n, err := strconv.Atoi(string(value))
	if err != nil {
		return 0, 0, fmt.Errorf("queue: rate count %q is not a number", value)
	}
	return n, rev, nil
}

func (s *RateStore) set(ctx context.Context, key string, n int, rev uint64) error {
	var err error
	v := []byte(strconv.Itoa(n))
	if rev == 0 {
		var created bool
		if _, _, created, err = createKey(ctx, s.kv, s.leader, kvSubject(s.kv.Bucket(), key), key, v); err == nil && !created {
			return errConflict
		}
	} else {
		_, err = update(ctx, s.kv, key, v, rev)
	}
	switch {
	case casConflict(err):
		return errConflict
	case err != nil:
		return fmt.Errorf("queue: store rate count: %w", err)
	}
	return nil
}
