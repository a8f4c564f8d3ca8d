package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/mautic-sync/mautic-sync/queue/subject"
)

// MaxBatchSize is Mautic's default api_batch_max_limit: a batch call with more
// items answers HTTP 500.
const MaxBatchSize = 200

// Validate checks the configuration and returns every problem at once, joined
// with errors.Join, each naming the variable to change.
func (c Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if strings.TrimSpace(c.NATS.URL) == "" {
		add("NATS_URL is not set: give the NATS server URL, e.g. nats://nats:4222 (or run `mautic-sync dev` for an embedded one)")
	}
	if (c.NATS.CertFile == "") != (c.NATS.KeyFile == "") {
		add("NATS_CERT_FILE and NATS_KEY_FILE go together: set both or neither")
	}
	if c.NATS.Password != "" && c.NATS.User == "" {
		add("NATS_PASSWORD is set without NATS_USER")
	}
	if c.NATS.ConnectTimeout <= 0 {
		add("NATS_CONNECT_TIMEOUT must be positive, got %s", c.NATS.ConnectTimeout)
	}
	if c.NATS.ReconnectWait <= 0 {
		add("NATS_RECONNECT_WAIT must be positive, got %s", c.NATS.ReconnectWait)
	}
	if c.NATS.MaxReconnects < -1 {
		add("NATS_MAX_RECONNECTS must be -1 (forever) or more, got %d", c.NATS.MaxReconnects)
	}

	c.validateJetStream(add)
	c.validatePartition(add)
	c.validateMautic(add)

	if c.Batch.Size < 1 || c.Batch.Size > MaxBatchSize {
		add("BATCH_SIZE must be between 1 and %d (Mautic's batch limit), got %d", MaxBatchSize, c.Batch.Size)
	}
	if c.Batch.Linger <= 0 {
		add("BATCH_LINGER must be positive, got %s", c.Batch.Linger)
	}
	if c.Worker.Concurrency < 0 {
		add("WORKER_CONCURRENCY must be 0 (adaptive) or more, got %d", c.Worker.Concurrency)
	}
	if c.Worker.MinConcurrency < 1 || c.Worker.MaxConcurrency < c.Worker.MinConcurrency {
		add("WORKER_MIN_CONCURRENCY (%d) and WORKER_MAX_CONCURRENCY (%d) must satisfy 1 <= min <= max", c.Worker.MinConcurrency, c.Worker.MaxConcurrency)
	}
	if c.Worker.MaxDeliveries < 1 {
		add("WORKER_MAX_DELIVERIES must be at least 1, got %d", c.Worker.MaxDeliveries)
	}
	if c.Worker.RetryMin <= 0 {
		add("WORKER_RETRY_MIN must be positive, got %s", c.Worker.RetryMin)
	}
	if c.Worker.RetryMax < c.Worker.RetryMin {
		add("WORKER_RETRY_MAX (%s) must not be below WORKER_RETRY_MIN (%s)", c.Worker.RetryMax, c.Worker.RetryMin)
	}
	if c.Worker.DrainTimeout <= 0 {
		add("WORKER_DRAIN_TIMEOUT must be positive, got %s", c.Worker.DrainTimeout)
	}
	if c.HTTP.Addr != "" {
		if _, _, err := net.SplitHostPort(c.HTTP.Addr); err != nil {
			add("HTTP_ADDR=%q is not host:port (e.g. :8080): %v", c.HTTP.Addr, err)
		}
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		add("LOG_LEVEL=%q: use debug, info, warn or error", c.Log.Level)
	}
	switch c.Log.Format {
	case "json", "console":
	default:
		add("LOG_FORMAT=%q: use json or console", c.Log.Format)
	}
	return errors.Join(errs...)
}

func (c Config) validateJetStream(add func(string, ...any)) {
	for _, s := range []struct{ key, name string }{
		{"STREAM_NAME", c.Stream.Name},
		{"RESULT_STREAM", c.Outcomes.ResultStream},
		{"DLQ_STREAM", c.Outcomes.DLQStream},
		{"CONSUMER_NAME", c.Consumer.Name},
	} {
		if s.name == "" || strings.ContainsAny(s.name, " \t.*>/\\") {
			add("%s=%q: a JetStream name must be non-empty without spaces, '.', '*', '>', '/' or '\\'", s.key, s.name)
		}
	}
	if c.Outcomes.ResultStream != "" && c.Outcomes.ResultStream == c.Stream.Name {
		add("RESULT_STREAM must differ from STREAM_NAME (%q)", c.Stream.Name)
	}
	if c.Outcomes.DLQStream != "" && c.Outcomes.DLQStream == c.Stream.Name {
		add("DLQ_STREAM must differ from STREAM_NAME (%q)", c.Stream.Name)
	}
	if len(c.Stream.Subjects) == 0 {
		add("STREAM_SUBJECTS is empty: give the input subjects, e.g. mautic.contacts.>")
	}
	for _, o := range []struct{ key, subject string }{
		{"RESULT_SUBJECT", c.Outcomes.ResultSubject},
		{"DLQ_SUBJECT", c.Outcomes.DLQSubject},
	} {
		if !subject.Valid(o.subject, false) {
			add("%s=%q is not a valid subject (tokens separated by '.', no wildcards)", o.key, o.subject)
			continue
		}
		for _, in := range c.Stream.Subjects {
			if subject.Matches(in, o.subject) {
				add("%s=%q is captured by the input stream's subject %q: outcomes would be consumed as events", o.key, o.subject, in)
			}
		}
	}
	for _, in := range c.Stream.Subjects {
		if !subject.Valid(in, true) {
			add("STREAM_SUBJECTS entry %q is not a valid subject", in)
		}
	}
	if c.Consumer.AckWait < defaultMinAckWait {
		add("CONSUMER_ACK_WAIT must be at least %s, got %s", defaultMinAckWait, c.Consumer.AckWait)
	}
	if c.Consumer.AckWait > 0 && c.Batch.Linger >= c.Consumer.AckWait/3 {
		add("BATCH_LINGER (%s) must be under a third of CONSUMER_ACK_WAIT (%s): held messages are kept alive every third of it", c.Batch.Linger, c.Consumer.AckWait)
	}
	if c.Consumer.MaxAckPending < c.Batch.Size {
		add("CONSUMER_MAX_ACK_PENDING (%d) must be at least BATCH_SIZE (%d), or batches can never fill", c.Consumer.MaxAckPending, c.Batch.Size)
	}
	if c.Ledger.Bucket == "" || strings.ContainsAny(c.Ledger.Bucket, " \t.*>/\\") {
		add("LEDGER_BUCKET=%q is not a valid bucket name", c.Ledger.Bucket)
	}
	if c.Ledger.TTL < c.Stream.Duplicates {
		add("LEDGER_TTL (%s) must be at least STREAM_DUPLICATE_WINDOW (%s)", c.Ledger.TTL, c.Stream.Duplicates)
	}
	if c.Stream.Duplicates <= 0 {
		add("STREAM_DUPLICATE_WINDOW must be positive, got %s", c.Stream.Duplicates)
	}
}

// MaxPartitions bounds PARTITIONS: every partition is a consumer that each
// elastic replica pulls from.
const MaxPartitions = 256

func (c Config) validatePartition(add func(string, ...any)) {
	if c.Replicas < 1 || c.Replicas > 5 {
		add("JETSTREAM_REPLICAS must be between 1 and 5 (3 on a NATS cluster), got %d", c.Replicas)
	}
	p := c.Partition
	if p.Count < 0 || p.Count > MaxPartitions {
		add("PARTITIONS must be between 0 (unpartitioned) and %d, got %d", MaxPartitions, p.Count)
	}
	if !p.Partitioned() {
		return
	}
	if _, err := PartitionPrefix(c.Stream.Subjects); err != nil {
		add("%v", err)
	}
	switch p.Mode {
	case "elastic":
		if p.Takeover < 2*time.Second {
			add("PARTITION_TAKEOVER must be at least 2s, got %s", p.Takeover)
		}
		if p.Bucket == "" || strings.ContainsAny(p.Bucket, " \t.*>/\\") {
			add("PARTITION_BUCKET=%q is not a valid bucket name", p.Bucket)
		}
	case "static":
		if p.Replicas < 1 || p.Replicas > p.Count {
			add("REPLICA_COUNT must be between 1 and PARTITIONS (%d) in static mode, got %d", p.Count, p.Replicas)
		}
		if p.Index < -1 || (p.Replicas > 0 && p.Index >= p.Replicas) {
			add("REPLICA_INDEX must be -1 (from the host name) or between 0 and REPLICA_COUNT-1 (%d), got %d", p.Replicas-1, p.Index)
		}
	default:
		add("PARTITION_MODE=%q: use elastic or static", p.Mode)
	}
}

// PartitionPrefix returns the subject prefix that partitioning inserts
// the partition number after: STREAM_SUBJECTS must be one filter of the
// form <prefix>.> (mautic.contacts.> gives mautic.contacts).
func PartitionPrefix(subjects []string) (string, error) {
	if len(subjects) != 1 || !strings.HasSuffix(subjects[0], ".>") {
		return "", fmt.Errorf("STREAM_SUBJECTS=%q: a partitioned stream needs exactly one subject of the form <prefix>.> (e.g. mautic.contacts.>)", strings.Join(subjects, ","))
	}
	prefix := strings.TrimSuffix(subjects[0], ".>")
	if !subject.Valid(prefix, false) {
		return "", fmt.Errorf("STREAM_SUBJECTS=%q: the prefix before .> must be a subject without wildcards", subjects[0])
	}
	return prefix, nil
}

// defaultMinAckWait keeps the in-progress heartbeat (a third of AckWait)
// comfortably above network jitter.
const defaultMinAckWait = 5 * time.Second

func (c Config) validateMautic(add func(string, ...any)) {
	m := c.Mautic
	if strings.TrimSpace(m.URL) == "" {
		add("MAUTIC_URL is not set: give Mautic's base URL, e.g. https://mautic.example.com (or run `mautic-sync dev` for the built-in fake)")
	} else if u, err := url.Parse(m.URL); err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		add("MAUTIC_URL=%q is not an absolute http(s) URL", redactedURL(m.URL))
	} else {
		if u.Scheme == "http" && !m.AllowInsecureHTTP {
			add("MAUTIC_URL uses plain http, so credentials would travel in clear: use https, or set MAUTIC_ALLOW_INSECURE_HTTP=true if this is intended")
		}
		if u.User != nil {
			add("MAUTIC_URL must not carry credentials: use MAUTIC_USERNAME/MAUTIC_PASSWORD or MAUTIC_CLIENT_ID/MAUTIC_CLIENT_SECRET")
		}
	}
	basic := m.Username != "" || m.Password != ""
	switch {
	case basic && m.UsesOAuth():
		add("both basic auth (MAUTIC_USERNAME/MAUTIC_PASSWORD) and OAuth2 (MAUTIC_CLIENT_ID/MAUTIC_CLIENT_SECRET) are set: keep one")
	case basic:
		if m.Username == "" {
			add("MAUTIC_USERNAME is not set (MAUTIC_PASSWORD is)")
		}
		if m.Password == "" {
			add("MAUTIC_PASSWORD is not set (MAUTIC_USERNAME is)")
		}
	case m.UsesOAuth():
		if m.ClientID == "" {
			add("MAUTIC_CLIENT_ID is not set (MAUTIC_CLIENT_SECRET is)")
		}
		if m.ClientSecret == "" {
			add("MAUTIC_CLIENT_SECRET is not set (MAUTIC_CLIENT_ID is)")
		}
	default:
		add("no Mautic credentials: set MAUTIC_USERNAME and MAUTIC_PASSWORD (basic auth), or MAUTIC_CLIENT_ID and MAUTIC_CLIENT_SECRET (OAuth2 client credentials; add MAUTIC_REFRESH_TOKEN for a client without that grant)")
	}
	if m.Timeout <= 0 {
		add("MAUTIC_TIMEOUT must be positive, got %s", m.Timeout)
	}
	if m.RateLimit < 0 {
		add("MAUTIC_RATE_LIMIT must be 0 (none) or more, got %d", m.RateLimit)
	}
	if m.RateWindow <= 0 {
		add("MAUTIC_RATE_WINDOW must be positive, got %s", m.RateWindow)
	}
	switch m.RateShared {
	case "auto", "true", "false":
	default:
		add("MAUTIC_RATE_SHARED=%q: use auto, true or false", m.RateShared)
	}
	if c.ShareRateBudget() && (m.RateBucket == "" || strings.ContainsAny(m.RateBucket, " \t.*>/\\")) {
		add("MAUTIC_RATE_BUCKET=%q is not a valid bucket name", m.RateBucket)
	}
	if m.RefreshToken != "" && (m.TokenBucket == "" || strings.ContainsAny(m.TokenBucket, " \t.*>/\\")) {
		add("MAUTIC_TOKEN_BUCKET=%q is not a valid bucket name", m.TokenBucket)
	}
}
