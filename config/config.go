// Package config loads mautic-sync's settings from the environment.
//
// Every setting is one environment variable, named in the struct tag `env` of
// its field and parsed by envconfig. Load reads them all and reports every
// problem at once (unparseable values and failed checks), each naming the
// variable to set, so that a misconfigured deployment is fixed in one round
// trip. Settings holds the list of variables with defaults and descriptions;
// the README's settings table is checked against it by a test.
package config

import (
	"time"
)

// Config is the whole of mautic-sync's configuration.
type Config struct {
	NATS     NATS
	Stream   Stream
	Consumer Consumer
	Outcomes Outcomes
	Mautic   Mautic
	Batch    Batch
	Worker   Worker
	HTTP     HTTP
	Log      Log

	Ledger Ledger

	Partition Partition

	// Replicas is the replica count of the streams, consumers and key-value
	// buckets mautic-sync creates (3 on a NATS cluster). Existing ones keep
	// theirs.
	Replicas int `env:"JETSTREAM_REPLICAS" default:"1" desc:"replicas of the streams, consumers and key-value buckets mautic-sync creates (1-5; 3 on a NATS cluster); existing ones keep theirs"`

	// CreateStreams creates the input, result and dead-letter streams and
	// the consumer when they are missing. Turn it off where JetStream is
	// managed declaratively (NACK, Terraform) and mautic-sync must only bind.
	CreateStreams bool `env:"CREATE_STREAMS" default:"true" desc:"create missing streams and the consumer at start-up"`
}

// NATS says how to reach the NATS server.
type NATS struct {
	URL            string        `env:"NATS_URL" desc:"NATS server URL(s), comma-separated (required for run)"`
	CredsFile      string        `env:"NATS_CREDS_FILE" desc:"path to a NATS .creds file (JWT + nkey)"`
	NKeyFile       string        `env:"NATS_NKEY_FILE" desc:"path to an nkey seed file"`
	User           string        `env:"NATS_USER" desc:"NATS user name"`
	Password       string        `env:"NATS_PASSWORD" secret:"true" desc:"NATS password"`
	Token          string        `env:"NATS_TOKEN" secret:"true" desc:"NATS authentication token"`
	CAFile         string        `env:"NATS_CA_FILE" desc:"PEM file of CAs to verify the NATS server's TLS certificate"`
	CertFile       string        `env:"NATS_CERT_FILE" desc:"client TLS certificate (PEM), with NATS_KEY_FILE"`
	KeyFile        string        `env:"NATS_KEY_FILE" desc:"client TLS key (PEM), with NATS_CERT_FILE"`
	ConnectTimeout time.Duration `env:"NATS_CONNECT_TIMEOUT" default:"10s" desc:"timeout of one connection attempt"`
	ReconnectWait  time.Duration `env:"NATS_RECONNECT_WAIT" default:"2s" desc:"pause between reconnection attempts"`
	MaxReconnects  int           `env:"NATS_MAX_RECONNECTS" default:"-1" desc:"reconnection attempts before giving up and failing /healthz (-1 = forever)"`
}

// Stream names the input stream of contact events.
type Stream struct {
	Name     string   `env:"STREAM_NAME" default:"MAUTIC_CONTACTS" desc:"input stream"`
	Subjects []string `env:"STREAM_SUBJECTS" default:"mautic.contacts.>" desc:"subjects the input stream captures (comma-separated), used when creating it"`
	// Duplicates is the de-duplication window of the streams mautic-sync creates.
	Duplicates time.Duration `env:"STREAM_DUPLICATE_WINDOW" default:"2m" desc:"Nats-Msg-Id de-duplication window of created streams"`
}

// Consumer configures the durable pull consumer on the input stream.
type Consumer struct {
	Name          string        `env:"CONSUMER_NAME" default:"mautic-sync" desc:"durable pull consumer"`
	AckWait       time.Duration `env:"CONSUMER_ACK_WAIT" default:"60s" desc:"redelivery timeout; held messages are kept alive with in-progress acks"`
	MaxAckPending int           `env:"CONSUMER_MAX_ACK_PENDING" default:"4000" desc:"messages held unacknowledged at once (the worker's in-memory window; 20 batches, so that up to 16 calls run while the next batches form)"`
}

// Outcomes names the streams and subjects that outcomes are published to.
type Outcomes struct {
	ResultStream  string `env:"RESULT_STREAM" default:"MAUTIC_SYNC_RESULTS" desc:"stream of result messages"`
	ResultSubject string `env:"RESULT_SUBJECT" default:"mautic.sync.result" desc:"subject of result messages"`
	DLQStream     string `env:"DLQ_STREAM" default:"MAUTIC_SYNC_DLQ" desc:"stream of dead letters"`
	DLQSubject    string `env:"DLQ_SUBJECT" default:"mautic.sync.dlq" desc:"subject of dead letters"`
}

// Ledger configures the key-value bucket of applied event ids.
type Ledger struct {
	Bucket string        `env:"LEDGER_BUCKET" default:"MAUTIC_SYNC_LEDGER" desc:"JetStream key-value bucket of applied event ids (exactly-once points, duplicate detection)"`
	TTL    time.Duration `env:"LEDGER_TTL" default:"72h" desc:"how long an applied event id is remembered; a copy of an event arriving later is applied again"`
}

// Partition configures partitioned consumption: the input stream split into
// Count partitions by a subject transform, each consumed by one replica at
// a time (see docs/scaling.md).
type Partition struct {
	Count int    `env:"PARTITIONS" default:"0" desc:"partitions of the input stream (0 = unpartitioned: one replica on one consumer); replicas share them, each partition consumed by one replica at a time, see docs/scaling.md"`
	Mode  string `env:"PARTITION_MODE" default:"elastic" desc:"elastic (replicas share the partitions and take over those of a replica that stops) or static (replica REPLICA_INDEX of REPLICA_COUNT owns partitions index, index+count, ...)"`
	// Index is this replica's index in static mode; -1 takes the ordinal
	// that ends the host name (a StatefulSet pod's name).
	Index    int           `env:"REPLICA_INDEX" default:"-1" desc:"static mode: this replica's index, from 0; -1 takes the ordinal that ends the host name (StatefulSet pod mautic-sync-2 is 2)"`
	Replicas int           `env:"REPLICA_COUNT" default:"0" desc:"static mode: the number of replicas (1 to PARTITIONS)"`
	Takeover time.Duration `env:"PARTITION_TAKEOVER" default:"10s" desc:"how long a replica that stopped without giving its partitions up (killed, cut off) keeps them before another takes them over (in static mode: its restarted self)"`
	Bucket   string        `env:"PARTITION_BUCKET" default:"MAUTIC_SYNC_MEMBERS" desc:"elastic mode: JetStream key-value bucket in which replicas announce themselves and claim partitions"`
}

// Partitioned reports whether the input stream is consumed in partitions.
func (p Partition) Partitioned() bool { return p.Count > 0 }

// Mautic says how to reach and authenticate to Mautic.
type Mautic struct {
	URL               string        `env:"MAUTIC_URL" desc:"Mautic base URL, e.g. https://mautic.example.com (required for run)"`
	Username          string        `env:"MAUTIC_USERNAME" desc:"basic auth user (with MAUTIC_PASSWORD)"`
	Password          string        `env:"MAUTIC_PASSWORD" secret:"true" desc:"basic auth password"`
	ClientID          string        `env:"MAUTIC_CLIENT_ID" desc:"OAuth2 client id (client credentials grant, with MAUTIC_CLIENT_SECRET)"`
	ClientSecret      string        `env:"MAUTIC_CLIENT_SECRET" secret:"true" desc:"OAuth2 client secret"`
	RefreshToken      string        `env:"MAUTIC_REFRESH_TOKEN" secret:"true" desc:"OAuth2 refresh token to start from (refresh-token mode, with MAUTIC_CLIENT_ID/SECRET); rotated tokens are kept in MAUTIC_TOKEN_BUCKET"`
	TokenBucket       string        `env:"MAUTIC_TOKEN_BUCKET" default:"MAUTIC_SYNC_AUTH" desc:"JetStream key-value bucket holding the current refresh token, shared by every replica"`
	RateLimit         int           `env:"MAUTIC_RATE_LIMIT" default:"0" desc:"client-side budget: at most this many Mautic calls per MAUTIC_RATE_WINDOW (0 = none); set it to Mautic's API rate limit or below"`
	RateWindow        time.Duration `env:"MAUTIC_RATE_WINDOW" default:"1h" desc:"window of MAUTIC_RATE_LIMIT (Mautic counts per hour)"`
	RateShared        string        `env:"MAUTIC_RATE_SHARED" default:"auto" desc:"share the MAUTIC_RATE_LIMIT budget between replicas through JetStream: auto (when partitioned and Mautic counts the replicas together: basic auth, refresh token), true or false"`
	RateBucket        string        `env:"MAUTIC_RATE_BUCKET" default:"MAUTIC_SYNC_RATE" desc:"JetStream key-value bucket holding the shared rate budget's count per window"`
	Timeout           time.Duration `env:"MAUTIC_TIMEOUT" default:"120s" desc:"timeout of one Mautic request (batches of 200 can take tens of seconds)"`
	AllowInsecureHTTP bool          `env:"MAUTIC_ALLOW_INSECURE_HTTP" default:"false" desc:"allow a plain http:// MAUTIC_URL (credentials travel in clear)"`
	UserAgent         string        `env:"MAUTIC_USER_AGENT" default:"mautic-sync" desc:"User-Agent sent to Mautic"`
}

// Batch configures how events are grouped into Mautic calls.
type Batch struct {
	Size   int           `env:"BATCH_SIZE" default:"200" desc:"items per Mautic batch call (1-200; Mautic's api_batch_max_limit is 200)"`
	Linger time.Duration `env:"BATCH_LINGER" default:"100ms" desc:"how long a batch waits to fill before it is sent"`
}

// Worker configures the pipeline.
type Worker struct {
	Concurrency    int           `env:"WORKER_CONCURRENCY" default:"0" desc:"Mautic calls in flight at once; 0 adapts it between the bounds below (up while calls succeed and work waits, down on 429s, 5xx and timeouts)"`
	MinConcurrency int           `env:"WORKER_MIN_CONCURRENCY" default:"1" desc:"lower bound of the adaptive concurrency"`
	MaxConcurrency int           `env:"WORKER_MAX_CONCURRENCY" default:"16" desc:"upper bound of the adaptive concurrency"`
	MaxDeliveries  int           `env:"WORKER_MAX_DELIVERIES" default:"10" desc:"deliveries of one event before a recurring per-event failure is dead-lettered"`
	RetryMin       time.Duration `env:"WORKER_RETRY_MIN" default:"500ms" desc:"first retry delay after a transient Mautic failure"`
	RetryMax       time.Duration `env:"WORKER_RETRY_MAX" default:"30s" desc:"longest retry delay (exponential backoff with jitter is capped here)"`
	DrainTimeout   time.Duration `env:"WORKER_DRAIN_TIMEOUT" default:"25s" desc:"on SIGTERM, how long in-flight work may finish before the rest is handed back (nak)"`
}

// HTTP configures the health and metrics server.
type HTTP struct {
	Addr string `env:"HTTP_ADDR" default:":8080" desc:"listen address of /healthz, /readyz and /metrics (empty disables)"`
}

// Log configures logging.
type Log struct {
	Level  string `env:"LOG_LEVEL" default:"info" desc:"debug, info, warn or error"`
	Format string `env:"LOG_FORMAT" default:"json" desc:"json or console (dev defaults to console)"`
}

// SharesRateBucket reports whether the replicas' calls count against one
// Mautic rate-limit bucket: basic-auth callers share one; in refresh-token
// mode the replicas share the access token; with client credentials each
// replica fetches its own token, and Mautic counts per token.
func (m Mautic) SharesRateBucket() bool {
	return m.AuthMode() == "basic" || m.AuthMode() == "refresh_token"
}

// ShareRateBudget reports whether the client-side budget is kept in
// JetStream, shared by the replicas (MAUTIC_RATE_SHARED).
func (c Config) ShareRateBudget() bool {
	if c.Mautic.RateLimit <= 0 {
		return false
	}
	switch c.Mautic.RateShared {
	case "true":
		return true
	case "false":
		return false
	}
	return c.Partition.Partitioned() && c.Mautic.SharesRateBucket()
}

// UsesOAuth reports whether Mautic is reached with OAuth2 (client
// credentials, or a refresh token).
func (m Mautic) UsesOAuth() bool {
	return m.ClientID != "" || m.ClientSecret != "" || m.RefreshToken != ""
}

// AuthMode names the Mautic authentication in use: "basic",
// "client_credentials" or "refresh_token".
func (m Mautic) AuthMode() string {
	switch {
	case m.RefreshToken != "":
		return "refresh_token"
	case m.UsesOAuth():
		return "client_credentials"
	}
	return "basic"
}
