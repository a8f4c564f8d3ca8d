package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/mautic-sync/mautic-sync/config"
	"github.com/mautic-sync/mautic-sync/mautic"
	"github.com/mautic-sync/mautic-sync/queue"
	"github.com/mautic-sync/mautic-sync/queue/jsworker"
	"github.com/mautic-sync/mautic-sync/queue/partition"
	"github.com/mautic-sync/mautic-sync/queue/provision"
	"github.com/mautic-sync/mautic-sync/worker"
)

// partitioning is the stream's partitioning from the settings (Count 0:
// unpartitioned).
func partitioning(cfg config.Config) queue.Partitioning {
	if !cfg.Partition.Partitioned() {
		return queue.Partitioning{Replicas: cfg.Replicas}
	}
	prefix, _ := config.PartitionPrefix(cfg.Stream.Subjects) // validated
	return queue.Partitioning{Count: cfg.Partition.Count, Prefix: prefix, PinTTL: cfg.Partition.Takeover, Replicas: cfg.Replicas}
}

// provisionOptions is what `mautic-sync provision` sets up beyond the
// topology: the partitioning, the members bucket of elastic mode, the
// shared rate budget's bucket, and the replicas of what it creates.
func provisionOptions(cfg config.Config) provision.Options {
	o := provision.Options{Partitioning: partitioning(cfg), Replicas: cfg.Replicas}
	if cfg.Partition.Partitioned() && cfg.Partition.Mode == "elastic" {
		o.Buckets = append(o.Buckets, queue.MembersBucketConfig(cfg.Partition.Bucket, cfg.Partition.Takeover, cfg.Replicas))
	}
	if cfg.ShareRateBudget() {
		o.Buckets = append(o.Buckets, queue.RateBucketConfig(cfg.Mautic.RateBucket, cfg.Mautic.RateWindow, cfg.Replicas))
	}
	return o
}

// ensureJetStream creates what the service needs and is missing (as serve
// does with CREATE_STREAMS=true): the streams, the consumer or, when
// partitioned, the partition consumers, and the buckets. For tools (bench)
// that set up JetStream before starting replicas.
func ensureJetStream(ctx context.Context, js jetstream.JetStream, cfg config.Config) error {
	if cfg.Partition.Partitioned() {
		_, err := provision.RunWith(ctx, js, topology(cfg), provisionOptions(cfg), false)
		return err
	}
	if err := queue.EnsureReplicatedStreams(ctx, js, topology(cfg), cfg.Replicas); err != nil {
		return err
	}
	_, err := queue.Ensure(ctx, js, topology(cfg), true)
	return err
}

// inputs is where the worker's messages come from: the one durable
// consumer, or the partitions this replica owns.
type inputs struct {
	source   worker.Source
	recovery worker.Recovery
	// cons is read by the consumer gauges (the backlog).
	cons jetstream.Consumer
	// parts is the partitioned source (nil when unpartitioned).
	parts *partition.Source
}

// close gives the partitions up once the worker has stopped.
func (in inputs) close(ctx context.Context, log *zap.Logger) {
	if in.parts == nil {
		return
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := in.parts.Close(cctx); err != nil {
		log.Warn("leaving the partition membership failed; the others take over once it expires", zap.Error(err))
	}
}

// openInputs ensures the streams and consumers and builds the worker's
// source and recovery for the configured mode.
func openInputs(ctx context.Context, js jetstream.JetStream, cfg config.Config, log *zap.Logger, onChange func(int, string)) (inputs, error) {
	t := topology(cfg)
	if !cfg.Partition.Partitioned() {
		if cfg.CreateStreams {
			if err := queue.EnsureReplicatedStreams(ctx, js, t, cfg.Replicas); err != nil {
				return inputs{}, err
			}
		}
		cons, err := queue.Ensure(ctx, js, t, cfg.CreateStreams)
		if err != nil {
			return inputs{}, err
		}
		return inputs{source: jsworker.Source(queue.NewSource(cons)), recovery: jsworker.Recovery(js, cons), cons: cons}, nil
	}
	p := partitioning(cfg)
	consumers, err := queue.EnsurePartitioned(ctx, js, t, p, cfg.CreateStreams)
	if err != nil {
		return inputs{}, err
	}
	o := partition.Options{
		Topology: t, Partitioning: p, AckWait: cfg.Consumer.AckWait, Takeover: cfg.Partition.Takeover,
		Legacy: cfg.Consumer.Name, Logger: log, OnChange: onChange,
	}
	if cfg.Partition.Mode == "static" {
		idx, err := replicaIndex(cfg.Partition)
		if err != nil {
			return inputs{}, err
		}
		o.Mode, o.Index, o.Replicas = partition.Static, idx, cfg.Partition.Replicas
	} else {
		members, err := queue.OpenMembers(ctx, js, queue.MembersBucketConfig(cfg.Partition.Bucket, cfg.Partition.Takeover, cfg.Replicas), cfg.CreateStreams)
		if err != nil {
			return inputs{}, err
		}
		o.Mode, o.Members, o.MemberID = partition.Elastic, members, memberID()
	}
	src, err := partition.New(ctx, js, consumers, o)
	if err != nil {
		return inputs{}, err
	}
	return inputs{
		source: jsworker.PartitionSource(src), recovery: jsworker.PartitionRecovery(src),
		cons: &partitionsConsumer{Consumer: consumers[0], src: src}, parts: src,
	}, nil
}

var ordinalRE = regexp.MustCompile(`-(\d+)$`)

// replicaIndex is REPLICA_INDEX, or the ordinal that ends the host name
// (a StatefulSet pod's name) when it is -1.
func replicaIndex(p config.Partition) (int, error) {
	if p.Index >= 0 {
		return p.Index, nil
	}
	host := os.Getenv("HOSTNAME")
	if host == "" {
		host, _ = os.Hostname()
	}
	m := ordinalRE.FindStringSubmatch(host)
	if m == nil {
		return 0, fmt.Errorf("REPLICA_INDEX is -1 but the host name %q does not end in -<ordinal> (as a StatefulSet pod's does): set REPLICA_INDEX", host)
	}
	i, err := strconv.Atoi(m[1])
	if err != nil || i >= p.Replicas {
		return 0, fmt.Errorf("the host name %q gives replica index %s, not below REPLICA_COUNT (%d)", host, m[1], p.Replicas)
	}
	return i, nil
}

var keyUnsafe = regexp.MustCompile(`[^A-Za-z0-9_=-]`)

// memberID names this process in the members bucket: the host name (the
// pod's) and a random suffix, so that a restarted pod is a new member.
func memberID() string {
	host, _ := os.Hostname()
	if h := os.Getenv("HOSTNAME"); h != "" {
		host = h
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return keyUnsafe.ReplaceAllString(host, "_") + "-" + hex.EncodeToString(b)
}

// rateOptions is the shared client-side budget when the replicas share
// one Mautic bucket (see config.ShareRateBudget); none otherwise.
func rateOptions(ctx context.Context, js jetstream.JetStream, cfg config.Config) ([]mautic.Option, error) {
	if !cfg.ShareRateBudget() {
		return nil, nil
	}
	m := cfg.Mautic
	scope := m.AuthMode() + ":" + m.Username + m.ClientID + "@" + mautic.RedactedURL(m.URL)
	store, err := queue.OpenRateStore(ctx, js, queue.RateBucketConfig(m.RateBucket, m.RateWindow, cfg.Replicas), scope, cfg.CreateStreams)
	if err != nil {
		return nil, err
	}
	return []mautic.Option{mautic.WithSharedRateBudget(m.RateLimit, m.RateWindow, store)}, nil
}

// registerPartitionMetrics registers, in partitioned mode, the number of
// partitions this replica owns (holds the pin of) and wants (its share).
func registerPartitionMetrics(reg prometheus.Registerer, in inputs) {
	if in.parts == nil {
		return
	}
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "mautic_sync_partitions_owned",
			Help: "Partitions this replica consumes now (holds the pin of; a pin is given with a partition's first message)."},
			func() float64 { return float64(len(in.parts.Owned())) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "mautic_sync_partitions_wanted",
			Help: "Partitions this replica's share is (elastic: from the live members; static: from REPLICA_INDEX)."},
			func() float64 { return float64(len(in.parts.Wanted())) }),
	)
}

// partitionsConsumer is what the consumer gauges read in partitioned mode:
// Info sums the backlog and the unacknowledged messages of every partition
// consumer (every replica reports the whole stream's, as one consumer
// would).
type partitionsConsumer struct {
	jetstream.Consumer
	src *partition.Source
	mu  sync.Mutex
}

func (c *partitionsConsumer) Info(ctx context.Context) (*jetstream.ConsumerInfo, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	pending, ackPending, err := c.src.Pending(ctx)
	if err != nil {
		return nil, err
	}
	return &jetstream.ConsumerInfo{NumPending: pending, NumAckPending: int(ackPending)}, nil
}
