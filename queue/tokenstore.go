package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mautic-sync/mautic-sync/mautic"
)

// TokenStore keeps Mautic's rotating OAuth2 refresh token in a JetStream
// key-value bucket, updated with compare-and-set, so that every replica
// renews from the current token. It implements mautic.TokenStore.
type TokenStore struct {
	kv  jetstream.KeyValue
	key string
	// leader, set on a replicated bucket, reads the token from the stream
	// leader: a lagging follower could hand out a token already rotated.
	leader *leaderReads
}

// OpenTokenStore binds to (or creates) the bucket; key is derived from the
// client id, so that several Mautic clients can share a bucket.
func OpenTokenStore(ctx context.Context, js jetstream.JetStream, bucket, clientID string, create bool) (*TokenStore, error) {
	kv, err := js.KeyValue(ctx, bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) && create {
		kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: bucket, Description: "mautic-sync: current Mautic refresh token", History: 5, Storage: jetstream.FileStorage})
		if errors.Is(err, jetstream.ErrBucketExists) {
			kv, err = js.KeyValue(ctx, bucket)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("queue: token bucket %s: %w", bucket, err)
	}
	leader, err := kvLeaderReads(ctx, js, kv)
	if err != nil {
		return nil, fmt.Errorf("queue: token bucket %s: %w", bucket, err)
	}
	return &TokenStore{kv: kv, key: "client." + ledgerKey(clientID)[2:], leader: leader}, nil
}

// Load implements mautic.TokenStore.
func (s *TokenStore) Load(ctx context.Context) (mautic.StoredToken, uint64, error) {
	value, rev, found, err := getKey(ctx, s.kv, s.leader, kvSubject(s.kv.Bucket(), s.key), s.key)
	if err != nil {
		return mautic.StoredToken{}, 0, fmt.Errorf("queue: load token: %w", err)
	}
	if !found {
		return mautic.StoredToken{}, 0, mautic.ErrNoToken
	}
	var t mautic.StoredToken
	if err := json.Unmarshal(value, &t); err != nil {
		return mautic.StoredToken{}, 0, fmt.Errorf("queue: stored token is not JSON: %w", err)
	}
	return t, rev, nil
}

// Save implements mautic.TokenStore.
func (s *TokenStore) Save(ctx context.Context, t mautic.StoredToken, rev uint64) error {
	b, err := json.Marshal(t)
	if err != nil {
		return err
	}
	if rev == 0 {
		var created bool
		if _, _, created, err = createKey(ctx, s.kv, s.leader, kvSubject(s.kv.Bucket(), s.key), s.key, b); err == nil && !created {
			return mautic.ErrTokenConflict
		}
	} else {
		_, err = update(ctx, s.kv, s.key, b, rev)
	}
	switch {
	case casConflict(err):
		return mautic.ErrTokenConflict
	case err != nil:
		return fmt.Errorf("queue: save token: %w", err)
	}
	return nil
}
