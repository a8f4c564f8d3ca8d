package worker

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the worker's Prometheus metrics. A nil *Metrics records
// nothing. Labels are bounded: event types, outcomes, reasons, endpoints
// and status codes, never contact data.
type Metrics struct {
	events      *prometheus.CounterVec
	deadLetters *prometheus.CounterVec
	calls       *prometheus.CounterVec
	callTime    *prometheus.HistogramVec
	batchSize   *prometheus.HistogramVec
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
			Help: "Events dead-lettered, by reason.",
		}, []string{"reason"}),
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mautic_sync_mautic_calls_total",
			Help: "Mautic API calls, by endpoint and HTTP status (0: no response).",
		}, []string{"endpoint", "status"}),
		callTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "mautic_sync_mautic_call_duration_seconds",
			Help:    "Latency of Mautic API calls, by endpoint.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120},
		}, []string{"endpoint"}),
		batchSize: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "mautic_sync_batch_items",
			Help:    "Items per Mautic call, by endpoint.",
			Buckets: []float64{1, 2, 5, 10, 25, 50, 100, 150, 200},
		}, []string{"endpoint"}),
	}
	reg.MustRegister(m.events, m.deadLetters, m.calls, m.callTime, m.batchSize)
	return m
}

func (m *Metrics) observeCall(endpoint string, status, items int, d time.Duration) {
	if m == nil {
		return
	}
	m.calls.WithLabelValues(endpoint, strconv.Itoa(status)).Inc()
	m.callTime.WithLabelValues(endpoint).Observe(d.Seconds())
	m.batchSize.WithLabelValues(endpoint).Observe(float64(items))
}

func (m *Metrics) observeOutcome(eventType, outcome, reason string) {
	if m == nil {
		return
	}
	if eventType == "" {
		eventType = "invalid"
	}
	m.events.WithLabelValues(eventType, outcome).Inc()
	if reason != "" {
		m.deadLetters.WithLabelValues(reason).Inc()
	}
}
