package worker

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Tracing: with Options.Tracer set, each event gets a span from its
// arrival to its stored outcome, continuing the producer's trace when the
// event carries the CloudEvents traceparent extension; each Mautic call
// gets a span linked to the spans of its events; each fetch gets a span.
// Without a tracer none of this runs.

var traceContext = propagation.TraceContext{}

// startEventSpan starts the span of one event.
func (w *Worker) startEventSpan(ev *Event, subject string, seq uint64) trace.Span {
	if w.opts.Tracer == nil {
		return nil
	}
	ctx := context.Background()
	if ev.TraceParent != "" {
		ctx = traceContext.Extract(ctx, propagation.MapCarrier{"traceparent": ev.TraceParent, "tracestate": ev.TraceState})
	}
	_, span := w.opts.Tracer.Start(ctx, "mautic-sync event", trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(
			attribute.String("messaging.system", "nats"),
			attribute.String("messaging.destination.name", subject),
			attribute.Int64("messaging.nats.stream_sequence", int64(seq)),
			attribute.String("cloudevents.event_id", ev.ID),
			attribute.String("cloudevents.event_type", ev.Type),
		))
	return span
}

// endEventSpan ends an event's span with its outcome.
func endEventSpan(span trace.Span, outcome, reason, errText string) {
	if span == nil {
		return
	}
	span.SetAttributes(attribute.String("mautic_sync.outcome", outcome))
	if reason != "" {
		span.SetAttributes(attribute.String("mautic_sync.dead_letter_reason", reason))
		span.SetStatus(codes.Error, errText)
	}
	span.End()
}

// startCallSpan starts the span of one Mautic call for ops; the client's
// HTTP spans nest under it through the returned context.
func (w *Worker) startCallSpan(ctx context.Context, k queueKey, ops []*op) (context.Context, trace.Span) {
	if w.opts.Tracer == nil {
		return ctx, nil
	}
	var links []trace.Link
	for _, o := range ops {
		for _, p := range o.events {
			if p.span != nil {
				links = append(links, trace.Link{SpanContext: p.span.SpanContext()})
			}
		}
	}
	return w.opts.Tracer.Start(ctx, "mautic-sync "+k.kind.endpoint(), trace.WithLinks(links...),
		trace.WithAttributes(attribute.String("mautic_sync.endpoint", k.kind.endpoint()), attribute.Int("mautic_sync.items", len(ops))))
}

func endSpan(span trace.Span, err error) {
	if span == nil {
		return
	}
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}
