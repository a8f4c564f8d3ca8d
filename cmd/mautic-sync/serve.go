package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/sync/errgroup"

	"github.com/mautic-sync/mautic-sync/config"
	"github.com/mautic-sync/mautic-sync/mautic"
	"github.com/mautic-sync/mautic-sync/queue"
	"github.com/mautic-sync/mautic-sync/queue/jsworker"
	"github.com/mautic-sync/mautic-sync/worker"
)

// serve runs the service until ctx ends: connects to NATS, ensures the
// streams and consumer, starts the health and metrics server and the
// worker, and drains on the way out. observer, when set, is told of every
// settled event.
func serve(ctx context.Context, cfg config.Config, log *zap.Logger, observer func(worker.Settled)) error {
	nc, err := queue.Connect(ctx, queue.ConnOptions{
		URL: cfg.NATS.URL, CredsFile: cfg.NATS.CredsFile, NKeyFile: cfg.NATS.NKeyFile,
		User: cfg.NATS.User, Password: cfg.NATS.Password, Token: cfg.NATS.Token,
		CAFile: cfg.NATS.CAFile, CertFile: cfg.NATS.CertFile, KeyFile: cfg.NATS.KeyFile,
		ConnectTimeout: cfg.NATS.ConnectTimeout, ReconnectWait: cfg.NATS.ReconnectWait,
		MaxReconnects: cfg.NATS.MaxReconnects,
	}, log)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc.Conn, jetstream.WithPublishAsyncTimeout(10*time.Second))
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	in, err := openInputs(ctx, js, cfg, log, nil)
	if err != nil {
		return err
	}
	defer in.close(ctx, log) // a no-op once closed after the worker's drain
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	ledgerOpts := queue.LedgerOptions{Bucket: cfg.Ledger.Bucket, TTL: cfg.Ledger.TTL, Create: cfg.CreateStreams}
	if cfg.CreateStreams {
		tokenBucket := ""
		if cfg.Mautic.AuthMode() == "refresh_token" {
			tokenBucket = cfg.Mautic.TokenBucket
		}
		if err := queue.EnsureReplicatedBuckets(ctx, js, cfg.Replicas, ledgerOpts, tokenBucket); err != nil {
			return err
		}
	}
	ledger, err := queue.OpenLedger(ctx, js, ledgerOpts)
	if err != nil {
		return err
	}
	tracer, stopTracing, err := setupTracing(ctx)
	if err != nil {
		return err
	}
	defer stopTracing()
	var store mautic.TokenStore
	if cfg.Mautic.AuthMode() == "refresh_token" {
		if store, err = queue.OpenTokenStore(ctx, js, cfg.Mautic.TokenBucket, cfg.Mautic.ClientID, cfg.CreateStreams); err != nil {
			return err
		}
	}
	shared, err := rateOptions(ctx, js, cfg)
	if err != nil {
		return err
	}
	mc, err := newMauticClient(cfg.Mautic, store, mauticObserver(reg), tracer, shared...)
	if err != nil {
		return err
	}

	w, err := worker.New(in.source, jsworker.Publisher(queue.NewPublisher(js)), mc, worker.Options{
		BatchSize:      cfg.Batch.Size,
		Linger:         cfg.Batch.Linger,
		Concurrency:    cfg.Worker.Concurrency,
		MinConcurrency: cfg.Worker.MinConcurrency,
		MaxConcurrency: cfg.Worker.MaxConcurrency,
		MaxHeld:        cfg.Consumer.MaxAckPending,
		AckWait:        cfg.Consumer.AckWait,
		MaxDeliveries:  cfg.Worker.MaxDeliveries,
		RetryMin:       cfg.Worker.RetryMin,
		RetryMax:       cfg.Worker.RetryMax,
		DrainTimeout:   cfg.Worker.DrainTimeout,
		ResultSubject:  cfg.Outcomes.ResultSubject,
		DLQSubject:     cfg.Outcomes.DLQSubject,
		Ledger:         jsworker.Ledger(ledger),
		Recovery:       in.recovery,
		Logger:         log,
		Metrics:        worker.NewMetrics(reg),
		Observer:       observer,
	})
	if err != nil {
		return err
	}
	registerStateMetrics(reg, w, mc, in.cons)
	registerPartitionMetrics(reg, in)

	log.Info("mautic-sync started",
		zap.String("nats", nc.ConnectedUrlRedacted()), zap.String("stream", cfg.Stream.Name),
		zap.String("consumer", cfg.Consumer.Name), zap.String("mautic", mautic.RedactedURL(cfg.Mautic.URL)),
		zap.String("http", cfg.HTTP.Addr), zap.String("version", version()),
		zap.String("mautic_auth", cfg.Mautic.AuthMode()), zap.Int("mautic_rate_budget", cfg.Mautic.RateLimit),
		zap.Bool("mautic_rate_budget_shared", len(shared) > 0),
		zap.Int("partitions", cfg.Partition.Count), zap.String("partition_mode", partitionMode(cfg)),
		zap.Bool("tracing", tracer != nil))

	g, gctx := errgroup.WithContext(ctx)
	if cfg.HTTP.Addr != "" {
		ln, err := net.Listen("tcp", cfg.HTTP.Addr)
		if err != nil {
			return fmt.Errorf("HTTP_ADDR %s: %w", cfg.HTTP.Addr, err)
		}
		srv := &http.Server{Handler: healthMux(nc, w, reg), ReadHeaderTimeout: 5 * time.Second}
		g.Go(func() error {
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("http server: %w", err)
			}
			return nil
		})
		g.Go(func() error {
			<-gctx.Done()
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if err := srv.Shutdown(sctx); err != nil {
				// Health and metrics only: a connection that stays open
				// (a TCP probe that never sends a request waits 5 s in
				// net/http) must not fail the stop.
				log.Debug("HTTP server shutdown timed out; closing its connections", zap.Error(err))
				_ = srv.Close()
			}
			return nil
		})
	}
	g.Go(func() error {
		err := w.Run(gctx)
		// Give the partitions up (a no-op when unpartitioned): the worker
		// holds none of their messages any more.
		in.close(ctx, log)
		// Flush acks and outcomes still buffered in the connection.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if ferr := nc.FlushWithContext(dctx); ferr != nil && err == nil && !nc.IsClosed() {
			log.Warn("flushing NATS on shutdown failed", zap.Error(ferr))
		}
		if err == nil && ctx.Err() == nil {
			return errors.New("worker stopped unexpectedly")
		}
		return err
	})
	err = g.Wait()
	log.Info("mautic-sync stopped")
	return err
}

func partitionMode(cfg config.Config) string {
	if !cfg.Partition.Partitioned() {
		return "none"
	}
	return cfg.Partition.Mode
}

func topology(cfg config.Config) queue.Topology {
	return queue.Topology{
		Stream: cfg.Stream.Name, Subjects: cfg.Stream.Subjects, Duplicates: cfg.Stream.Duplicates,
		Consumer: cfg.Consumer.Name, AckWait: cfg.Consumer.AckWait, MaxAckPending: cfg.Consumer.MaxAckPending,
		ResultStream: cfg.Outcomes.ResultStream, ResultSubject: cfg.Outcomes.ResultSubject,
		DLQStream: cfg.Outcomes.DLQStream, DLQSubject: cfg.Outcomes.DLQSubject,
	}
}

// newMauticClient builds the client for the configured auth mode; store
// is needed in refresh-token mode only;
// extra options (the shared rate budget) come last.
func newMauticClient(m config.Mautic, store mautic.TokenStore, observe func(mautic.Call), tracer trace.Tracer, extra ...mautic.Option) (*mautic.Client, error) {
	opts := []mautic.Option{mautic.WithTimeout(m.Timeout), mautic.WithUserAgent(m.UserAgent + "/" + version())}
	if observe != nil {
		opts = append(opts, mautic.WithObserver(observe))
	}
	if tracer != nil {
		opts = append(opts, mautic.WithTracer(tracer))
	}
	switch m.AuthMode() {
	case "refresh_token":
		opts = append(opts, mautic.WithRefreshToken(m.ClientID, m.ClientSecret, m.RefreshToken, store))
	case "client_credentials":
		opts = append(opts, mautic.WithClientCredentials(m.ClientID, m.ClientSecret))
	default:
		opts = append(opts, mautic.WithBasicAuth(m.Username, m.Password))
	}
	if m.RateLimit > 0 {
		opts = append(opts, mautic.WithRateBudget(m.RateLimit, m.RateWindow))
	}
	return mautic.NewClient(m.URL, append(opts, extra...)...)
}

// healthMux serves /healthz (the process works: NATS connected or
// reconnecting within budget), /readyz (consuming, or why not) and /metrics.
func healthMux(nc *queue.Conn, w *worker.Worker, reg *prometheus.Registry) *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(rw http.ResponseWriter, _ *http.Request) {
		if !nc.Healthy() {
			writeJSON(rw, http.StatusServiceUnavailable, map[string]any{"ok": false, "reason": "NATS connection closed after its reconnect budget"})
			return
		}
		writeJSON(rw, http.StatusOK, map[string]any{"ok": true})
	})
	mux.HandleFunc("GET /readyz", func(rw http.ResponseWriter, _ *http.Request) {
		ok, why := w.Ready()
		if ok && !nc.IsConnected() {
			ok, why = false, "NATS disconnected; reconnecting"
		}
		status := http.StatusOK
		if !ok {
			status = http.StatusServiceUnavailable
		}
		body := map[string]any{"ready": ok}
		if why != "" {
			body["reason"] = why
		}
		writeJSON(rw, status, body)
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// newLogger builds the zap logger: JSON with fixed field names, or console.
func newLogger(lc config.Log, out io.Writer) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(lc.Level)
	if err != nil {
		return nil, fmt.Errorf("LOG_LEVEL: %w", err)
	}
	ec := zap.NewProductionEncoderConfig()
	ec.TimeKey, ec.LevelKey, ec.NameKey, ec.MessageKey, ec.CallerKey = "ts", "level", "logger", "msg", "caller"
	ec.EncodeTime = zapcore.ISO8601TimeEncoder
	var enc zapcore.Encoder
	if lc.Format == "console" {
		ec.EncodeLevel = zapcore.CapitalLevelEncoder
		ec.EncodeTime = zapcore.TimeEncoderOfLayout("15:04:05.000")
		enc = zapcore.NewConsoleEncoder(ec)
	} else {
		enc = zapcore.NewJSONEncoder(ec)
	}
	core := zapcore.NewCore(enc, zapcore.Lock(zapcore.AddSync(out)), lvl)
	return zap.New(core, zap.AddCaller()), nil
}
