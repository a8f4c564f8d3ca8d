// Package jsworker connects the queue package to the worker's ports. The
// two packages do not import each other: the worker knows nothing of NATS
// and the queue nothing of the pipeline; this is the only place that knows
// both.
package jsworker

import (
	"context"
	"time"

	"github.com/mautic-sync/mautic-sync/queue"
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
	return a.p.Publish(ctx, out)
}
