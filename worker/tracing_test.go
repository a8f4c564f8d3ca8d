package worker_test

import (
	"context"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/mautic-sync/mautic-sync/mautic"
	"github.com/mautic-sync/mautic-sync/worker"
)

func TestTracingContinuesProducersTrace(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer tp.Shutdown(context.Background())
	tracer := tp.Tracer("test")

	h := newHarness(t)
	h.opts.Tracer = tracer
	mc, err := mautic.NewClient(h.fake.URL(), mautic.WithBasicAuth("api", "test-password"), mautic.WithTracer(tracer))
	if err != nil {
		t.Fatal(err)
	}
	h.mc = mc
	const producerTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	body := []byte(`{"specversion":"1.0","id":"tr1","source":"/t","type":"contact.upsert","time":"2026-11-25T10:00:00Z",` +
		`"traceparent":"00-` + producerTrace + `-00f067aa0ba902b7-01","data":{"email":"tr@example.com"}}`)
	h.publish("mautic.contacts.tr", body)
	h.start()
	h.waitOutcomes(1)
	h.stop()

	var event, call, httpSpan sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		switch {
		case s.Name() == "mautic-sync event":
			event = s
		case s.Name() == "mautic-sync contacts/batch/new":
			call = s
		case strings.HasPrefix(s.Name(), "mautic POST contacts/batch/new"):
			httpSpan = s
		}
	}
	if event == nil || call == nil || httpSpan == nil {
		t.Fatalf("spans missing: event %v, call %v, http %v", event != nil, call != nil, httpSpan != nil)
	}
	if got := event.SpanContext().TraceID().String(); got != producerTrace {
		t.Errorf("event span trace %s, want the producer's %s", got, producerTrace)
	}
	if event.Parent().SpanID().String() != "00f067aa0ba902b7" {
		t.Errorf("event span parent %s, want the producer's span", event.Parent().SpanID())
	}
	linked := false
	for _, l := range call.Links() {
		if l.SpanContext.SpanID() == event.SpanContext().SpanID() {
			linked = true
		}
	}
	if !linked {
		t.Error("the Mautic call span does not link the event's span")
	}
	if httpSpan.Parent().SpanID() != call.SpanContext().SpanID() {
		t.Error("the HTTP span is not a child of the call span")
	}
	for _, kv := range event.Attributes() {
		if kv.Key == "mautic_sync.outcome" && kv.Value.AsString() != worker.OutcomeApplied {
			t.Errorf("outcome attribute %s", kv.Value.AsString())
		}
	}
}
