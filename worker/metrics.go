package worker

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the worker's Prometheus metrics. A nil *Metrics records
// nothing. Labels are bounded: event types, outcomes, reasons, endpoints
// and status codes, never contact data.
type Metrics struct {
	events      *prometheus.CounterVec
	deadLetters *prometheus.CounterVec
	batchSize   *prometheus.HistogramVec
	stepCalls   *prometheus.CounterVec
	ignored     *prometheus.CounterVec
	latency     prometheus.Histogram
}

// NewMetrics registers the worker's metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mautic_sync_events_total",
			Help: "Events settled, by event type and outcome (applied, unchanged, duplicate, dead_letter).",
		}, []string{"type", "outcome"}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mautic_sync_dead_letters_total",
			Help: "Events dead-lettered, by reason (invalid_event, rejected, max_deliveries).",
		}, []string{"reason"}),
		batchSize: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "mautic_sync_batch_items",
			Help:    "Items per Mautic call, by step endpoint.",
			Buckets: []float64{1, 2, 5, 10, 25, 50, 100, 150, 200},
		}, []string{"endpoint"}),
		stepCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mautic_sync_step_calls_total",
			Help: "Calls made by the pipeline's steps, by step endpoint and result (ok, error).",
		}, []string{"endpoint", "result"}),
		ignored: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mautic_sync_ignored_fields_total",
			Help: "Upsert fields Mautic is known to drop, by reason (numeric_zero, unknown_field).",
		}, []string{"reason"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "mautic_sync_event_latency_seconds",
			Help:    "From an event's arrival at the worker to its outcome being stored.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2.5, 12),
		}),
	}
	reg.MustRegister(m.events, m.deadLetters, m.batchSize, m.stepCalls, m.ignored, m.latency)
	// Bounded labels start at zero, so that rates and alerts see them.
	for _, r := range []string{ReasonInvalidEvent, ReasonRejected, ReasonMaxDeliveries} {
		m.deadLetters.WithLabelValues(r)
	}
	for _, k := range []string{"numeric_zero", "unknown_field"} {
		m.ignored.WithLabelValues(k)
	}
	return m
}

func (m *Metrics) observeCall(endpoint string, status, items int, _ time.Duration) {
	if m == nil {
		return
	}
	result := "ok"
	if status == 0 || status >= 300 {
		result = "error"
	}
	m.stepCalls.WithLabelValues(endpoint, result).Inc()
	m.batchSize.WithLabelValues(endpoint).Observe(float64(items))
}

func (m *Metrics) observeOutcome(eventType, outcome, reason string, since time.Duration) {
	if m == nil {
		return
	}
	if eventType == "" { // not a valid event: its type may be anything
		eventType = "invalid"
	}
	m.events.WithLabelValues(eventType, outcome).Inc()
	if reason != "" {
		m.deadLetters.WithLabelValues(reason).Inc()
	}
	m.latency.Observe(since.Seconds())
}

func (m *Metrics) observeIgnored(fields []IgnoredField) {
	if m == nil {
		return
	}
	for _, f := range fields {
		m.ignored.WithLabelValues(f.Kind).Inc()
	}
}
