package main

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mautic-sync/mautic-sync/mautic"
	"github.com/mautic-sync/mautic-sync/worker"
)

// mauticObserver registers the per-request Mautic metrics and returns the
// client's observer that feeds them.
func mauticObserver(reg prometheus.Registerer) func(mautic.Call) {
	calls := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mautic_sync_mautic_calls_total",
		Help: "HTTP requests to Mautic, by endpoint (a route template) and status (0: no response).",
	}, []string{"endpoint", "status"})
	latency := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "mautic_sync_mautic_call_duration_seconds",
		Help:    "Latency of HTTP requests to Mautic, by endpoint.",
		Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120},
	}, []string{"endpoint"})
	reg.MustRegister(calls, latency)
	return func(c mautic.Call) {
		calls.WithLabelValues(c.Route, strconv.Itoa(c.Status)).Inc()
		latency.WithLabelValues(c.Route).Observe(c.Duration.Seconds())
	}
}

// registerStateMetrics registers gauges read at scrape time from the
// worker, the Mautic client and the consumer.
func registerStateMetrics(reg prometheus.Registerer, w *worker.Worker, mc *mautic.Client, cons jetstream.Consumer) {
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	info := newConsumerInfoCache(cons)
	reg.MustRegister(
		gauge("mautic_sync_ready", "1 while the worker is consuming, 0 while it is not (see /readyz for why).", func() float64 {
			if ok, _ := w.Ready(); ok {
				return 1
			}
			return 0
		}),
		gauge("mautic_sync_inflight_calls", "Mautic calls running now.", func() float64 { return float64(w.InFlight()) }),
		gauge("mautic_sync_concurrency_limit", "Mautic calls allowed in flight now (adaptive unless WORKER_CONCURRENCY is set).", func() float64 { return float64(w.ConcurrencyLimit()) }),
		gauge("mautic_sync_consumer_pending", "Input messages not yet delivered to the worker (the backlog).", func() float64 {
			return float64(info.get().NumPending)
		}),
		gauge("mautic_sync_consumer_ack_pending", "Input messages delivered and not yet acknowledged.", func() float64 {
			return float64(info.get().NumAckPending)
		}),
		gauge("mautic_sync_rate_limit_remaining", "Calls left in Mautic's rate-limit window as last reported, or the client-side budget when that is lower; -1 when unknown.", func() float64 {
			r := mc.Rate()
			left := -1
			if r.Limit > 0 {
				left = r.Remaining
			}
			if b, _, ok := mc.Budget(); ok && (left < 0 || b < left) {
				left = b
			}
			return float64(left)
		}),
		gauge("mautic_sync_rate_limit_reset_timestamp_seconds", "When Mautic's rate-limit window resets (Unix time), 0 when unknown.", func() float64 {
			if r := mc.Rate(); !r.Reset.IsZero() {
				return float64(r.Reset.Unix())
			}
			return 0
		}),
		gauge("mautic_sync_token_renewals", "OAuth2 access tokens fetched since start.", func() float64 { return float64(mc.TokenRenewals()) }),
		pausedCollector{w},
		versionCollector{mc},
	)
}

var (
	pausedDesc  = prometheus.NewDesc("mautic_sync_paused", "1 for each cause that holds fetching back now (outage, auth, api_disabled, bad_url, rate_limited, fenced).", []string{"cause"}, nil)
	versionDesc = prometheus.NewDesc("mautic_sync_mautic_info", "Mautic's version as it reports it (Mautic-Version header).", []string{"version"}, nil)
	allCauses   = []string{worker.PauseOutage, worker.PauseAuth, worker.PauseAPIDisabled, worker.PauseBadURL, worker.PauseRateLimited, worker.PauseFenced}
)

type pausedCollector struct{ w *worker.Worker }

func (pausedCollector) Describe(ch chan<- *prometheus.Desc) { ch <- pausedDesc }
func (c pausedCollector) Collect(ch chan<- prometheus.Metric) {
	active := map[string]bool{}
	for _, cause := range c.w.Paused() {
		active[cause] = true
	}
	for _, cause := range allCauses {
		v := 0.0
		if active[cause] {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(pausedDesc, prometheus.GaugeValue, v, cause)
	}
}

type versionCollector struct{ mc *mautic.Client }

func (versionCollector) Describe(ch chan<- *prometheus.Desc) { ch <- versionDesc }
func (c versionCollector) Collect(ch chan<- prometheus.Metric) {
	if v := c.mc.Version(); v != "" {
		ch <- prometheus.MustNewConstMetric(versionDesc, prometheus.GaugeValue, 1, v)
	}
}

// consumerInfoCache reads consumer info at most every few seconds, so that
// frequent scrapes do not load the server.
type consumerInfoCache struct {
	cons jetstream.Consumer
	mu   sync.Mutex
	at   time.Time
	info jetstream.ConsumerInfo
}

func newConsumerInfoCache(cons jetstream.Consumer) *consumerInfoCache {
	return &consumerInfoCache{cons: cons}
}

func (c *consumerInfoCache) get() jetstream.ConsumerInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.at) < 2*time.Second {
		return c.info
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if info, err := c.cons.Info(ctx); err == nil {
		c.info, c.at = *info, time.Now()
	}
	return c.info
}
