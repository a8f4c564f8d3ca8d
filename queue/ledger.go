package queue

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"
)

// Ledger is a JetStream key-value bucket of event ids that took effect.
// Keys are hashes of the ids (event ids may hold any characters); values
// are opaque strings that the caller encodes. Entries expire after the
// bucket's TTL.
type Ledger struct {
	kv jetstream.KeyValue
}

// LedgerOptions configures the bucket.
type LedgerOptions struct {
	Bucket string
	// TTL is how long an id is remembered; it must be at least the input
	// stream's duplicate window.
	TTL time.Duration
	// Create makes the bucket when it is missing.
	Create bool
}

// OpenLedger binds to (or creates) the ledger bucket.
func OpenLedger(ctx context.Context, js jetstream.JetStream, o LedgerOptions) (*Ledger, error) {
	kv, err := js.KeyValue(ctx, o.Bucket)
	switch {
	case err == nil:
		return &Ledger{kv: kv}, nil
	case !errors.Is(err, jetstream.ErrBucketNotFound):
		return nil, fmt.Errorf("queue: open ledger bucket %s: %w", o.Bucket, err)
	case !o.Create:
		return nil, fmt.Errorf("queue: ledger bucket %s does not exist and CREATE_STREAMS is false: create it (key-value, TTL %s) or set CREATE_STREAMS=true", o.Bucket, o.TTL)
	}
	kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      o.Bucket,
		Description: "mautic-sync: event ids that took effect",
		TTL:         o.TTL,
		History:     1,
		Storage:     jetstream.FileStorage,
	})
	if errors.Is(err, jetstream.ErrBucketExists) {
		kv, err = js.KeyValue(ctx, o.Bucket)
	}
	if err != nil {
		return nil, fmt.Errorf("queue: create ledger bucket %s: %w", o.Bucket, err)
	}
	return &Ledger{kv: kv}, nil
}

func ledgerKey(id string) string {
	sum := sha256.Sum256([]byte(id))
	return "e." + hex.EncodeToString(sum[:20])
}

// maxParallel bounds concurrent key-value requests of one call.
const maxParallel = 32

// Get returns the stored value of each id that has one.
func (l *Ledger) Get(ctx context.Context, ids []string) (map[string]string, error) {
	vals := make([]string, len(ids))
	found := make([]bool, len(ids))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(maxParallel)
	for i, id := range ids {
		g.Go(func() error {
			e, err := l.kv.Get(gctx, ledgerKey(id))
			switch {
			case errors.Is(err, jetstream.ErrKeyNotFound):
				return nil
			case err != nil:
				return fmt.Errorf("queue: ledger get: %w", err)
			}
			vals[i], found[i] = string(e.Value()), true
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	out := map[string]string{}
	for i, id := range ids {
		if found[i] {
			out[id] = vals[i]
		}
	}
	return out, nil
}

// Create stores value for id unless the id has a value; then it returns
// that value and false.
func (l *Ledger) Create(ctx context.Context, id, value string) (string, bool, error) {
	key := ledgerKey(id)
	_, err := l.kv.Create(ctx, key, []byte(value))
	if err == nil {
		return "", true, nil
	}
	if !errors.Is(err, jetstream.ErrKeyExists) {
		return "", false, fmt.Errorf("queue: ledger create: %w", err)
	}
	e, gerr := l.kv.Get(ctx, key)
	if gerr != nil {
		return "", false, fmt.Errorf("queue: ledger get after conflict: %w", gerr)
	}
	return string(e.Value()), false, nil
}

// Put stores values, overwriting.
func (l *Ledger) Put(ctx context.Context, values map[string]string) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(maxParallel)
	for id, v := range values {
		g.Go(func() error {
			if _, err := l.kv.Put(gctx, ledgerKey(id), []byte(v)); err != nil {
				return fmt.Errorf("queue: ledger put: %w", err)
			}
			return nil
		})
	}
	return g.Wait()
}

// Delete removes an id's value.
func (l *Ledger) Delete(ctx context.Context, id string) error {
	if err := l.kv.Delete(ctx, ledgerKey(id)); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("queue: ledger delete: %w", err)
	}
	return nil
}
