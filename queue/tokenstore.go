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
	return &TokenStore{kv: kv, key: "client." + ledgerKey(clientID)[2:]}, nil
}

// Load implements mautic.TokenStore.
func (s *TokenStore) Load(ctx context.Context) (mautic.StoredToken, uint64, error) {
	e, err := s.kv.Get(ctx, s.key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return mautic.StoredToken{}, 0, mautic.ErrNoToken
	}
	if err != nil {
		return mautic.StoredToken{}, 0, fmt.Errorf("queue: load token: %w", err)
	}
	var t mautic.StoredToken
	if err := json.Unmarshal(e.Value(), &t); err != nil {
		return mautic.StoredToken{}, 0, fmt.Errorf("queue: stored token is not JSON: %w", err)
	}
	return t, e.Revision(), nil
}

// Save implements mautic.TokenStore.
func (s *TokenStore) Save(ctx context.Context, t mautic.StoredToken, rev uint64) error {
	b, err := json.Marshal(t)
	if err != nil {
		return err
	}
	if rev == 0 {
		_, err = s.kv.Create(ctx, s.key, b)
	} else {
		_, err = s.kv.Update(ctx, s.key, b, rev)
	}
	switch {
	case errors.Is(err, jetstream.ErrKeyExists), errors.Is(err, jetstream.ErrKeyRevisionMismatch):
		return mautic.ErrTokenConflict
	case err != nil:
		return fmt.Errorf("queue: save token: %w", err)
	}
	return nil
}
