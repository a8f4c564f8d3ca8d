// Package jsworker connects the queue package to the worker's ports. The
// two packages do not import each other: the worker knows nothing of NATS
// and the queue nothing of the pipeline; this is the only place that knows
// both.
package jsworker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mautic-sync/mautic-sync/queue"
	"github.com/mautic-sync/mautic-sync/queue/partition"
	"github.com/mautic-sync/mautic-sync/worker"
)

// Source adapts a queue.Source to worker.Source.
func Source(s *queue.Source) worker.Source { return source{s} }

// Publisher adapts a queue.Publisher to worker.Publisher.
func Publisher(p *queue.Publisher) worker.Publisher { return publisher{p} }

type source struct{ s *queue.Source }

func (a source) Fetch(ctx context.Context, max int, wait time.Duration, deliver func(worker.Message)) error {
	return a.s.Fetch(ctx, max, wait, func(m *queue.Message) { deliver(m) })
}

type publisher struct{ p *queue.Publisher }

func (a publisher) Publish(ctx context.Context, msgs []worker.Outbound) []error {
	out := make([]queue.Outbound, len(msgs))
	for i, m := range msgs {
		out[i] = queue.Outbound(m)
	}
	errs := a.p.Publish(ctx, out)
	for i, err := range errs {
		if errors.Is(err, nats.ErrMaxPayload) {
			errs[i] = fmt.Errorf("%w: %w", worker.ErrTooLarge, err)
		}
	}
	return errs
}

// Ledger adapts a queue.Ledger to worker.Ledger.
func Ledger(l *queue.Ledger) worker.Ledger { return ledger{l} }

type ledger struct{ l *queue.Ledger }

func (a ledger) Lookup(ctx context.Context, ids []string) (map[string]worker.LedgerEntry, error) {
	raw, err := a.l.Get(ctx, ids)
	if err != nil {
		return nil, err
	}
	out := make(map[string]worker.LedgerEntry, len(raw))
	for id, v := range raw {
		if e, err := worker.ParseLedgerEntry(v); err == nil {
			out[id] = e
		}
	}
	return out, nil
}

func (a ledger) Intend(ctx context.Context, id string, e worker.LedgerEntry) (worker.LedgerEntry, bool, error) {
	prior, created, err := a.l.Create(ctx, id, e.String())
	if err != nil || created {
		return worker.LedgerEntry{}, created, err
	}
	pe, perr := worker.ParseLedgerEntry(prior)
	if perr != nil {
		return worker.LedgerEntry{}, false, perr
	}
	return pe, false, nil
}

func (a ledger) Forget(ctx context.Context, id string) error { return a.l.Delete(ctx, id) }

func (a ledger) Record(ctx context.Context, entries map[string]worker.LedgerEntry) error {
	vals := make(map[string]string, len(entries))
	for id, e := range entries {
		vals[id] = e.String()
	}
	return a.l.Put(ctx, vals)
}

// Recovery lists the messages an earlier worker may have left
// unacknowledged on the consumer.
func Recovery(js jetstream.JetStream, cons jetstream.Consumer) worker.Recovery {
	return recovery{js: js, cons: cons}
}

type recovery struct {
	js   jetstream.JetStream
	cons jetstream.Consumer
}

func (r recovery) Unacked(ctx context.Context, limit int) ([]worker.StoredMessage, error) {
	msgs, err := queue.Unacked(ctx, r.js, r.cons, limit)
	out := make([]worker.StoredMessage, len(msgs))
	for i, m := range msgs {
		out[i] = worker.StoredMessage(m)
	}
	return out, err
}

// PartitionSource adapts a partitioned source (the partitions this
// replica owns) to worker.Source. It implements worker.Lease too, so
// that the worker applies nothing while the replica's ownership is
// unconfirmed and hands back what it lost.
func PartitionSource(s *partition.Source) worker.Source { return partitionSource{s} }

type partitionSource struct{ s *partition.Source }

// Fenced implements worker.Lease.
func (a partitionSource) Fenced(now time.Time) (string, bool) { return a.s.Fenced(now) }

// Owns implements worker.Lease: a message of another kind is not the
// source's to judge and counts as owned.
func (a partitionSource) Owns(m worker.Message) bool {
	pm, ok := m.(*partition.Message)
	return !ok || a.s.Owns(pm)
}

func (a partitionSource) Fetch(ctx context.Context, max int, wait time.Duration, deliver func(worker.Message)) error {
	return a.s.Fetch(ctx, max, wait, func(m *partition.Message) { deliver(m) })
}

// PartitionRecovery lists the messages an earlier worker may have left
// unacknowledged on the partition consumers this replica starts with
// (partitions it acquires later are covered by the source's own gates).
func PartitionRecovery(s *partition.Source) worker.Recovery { return partitionRecovery{s} }

type partitionRecovery struct{ s *partition.Source }

func (r partitionRecovery) Unacked(ctx context.Context, limit int) ([]worker.StoredMessage, error) {
	msgs, err := r.s.Unacked(ctx, limit)
	out := make([]worker.StoredMessage, len(msgs))
	for i, m := range msgs {
		out[i] = worker.StoredMessage(m)
	}
	return out, err
}
