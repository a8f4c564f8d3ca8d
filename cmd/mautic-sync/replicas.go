package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"

	"go.uber.org/zap"

	"github.com/mautic-sync/mautic-sync/config"
	"github.com/mautic-sync/mautic-sync/worker"
)

// replicaSet is several replicas of the service in this process, each the
// same serve() as `run` with its own context, NATS connection, Mautic
// client, worker and metrics, sharing one NATS and one Mautic: partitioned
// consumption as a scaled deployment runs it. For the load tool and tests.
type replicaSet struct {
	cfgs    []config.Config
	cancels []context.CancelFunc
	errs    []chan error
	once    []sync.Once
	results []error
	exited  chan replicaExit
}

// replicaExit is a replica that stopped, and what serve returned.
type replicaExit struct {
	Index int
	Err   error
}

// startReplicas starts n replicas of serve with cfg. With n > 1 the stream
// must be partitioned: cfg.Partition.Count 0 is set to n (one partition
// per replica), and an unset mode is elastic, where the replicas share the
// partitions by themselves. In static mode replica i gets REPLICA_INDEX
// cfg.Partition.Index+i (i when Index is -1) of cfg.Partition.Replicas (n
// when 0): several calls can start parts of one static set. Each replica's
// HTTP_ADDR is cfg.HTTP.Addr for the first and a free loopback port for
// the others ("" keeps them all off); Addr(i) says which. Call
// ensureJetStream(ctx, js, cfg) first when JetStream is to be set up
// beforehand (the replicas otherwise create what is missing, racing).
// observer is called from every replica's worker, concurrently. The
// replicas run until ctx ends or Stop; Wait returns their errors.
func startReplicas(ctx context.Context, cfg config.Config, n int, log *zap.Logger, observer func(worker.Settled)) (*replicaSet, error) {
	return startReplicasEach(ctx, cfg, n, log, func(int) func(worker.Settled) { return observer })
}

// startReplicasEach is startReplicas with an observer per replica:
// observerOf(i) is replica i's (nil for none), called from its worker.
func startReplicasEach(ctx context.Context, cfg config.Config, n int, log *zap.Logger, observerOf func(i int) func(worker.Settled)) (*replicaSet, error) {
	if n < 1 {
		return nil, fmt.Errorf("replicas: %d", n)
	}
	if n > 1 && cfg.Partition.Count == 0 {
		cfg.Partition.Count = n
	}
	if cfg.Partition.Mode == "" {
		cfg.Partition.Mode = "elastic"
	}
	static := cfg.Partition.Partitioned() && cfg.Partition.Mode == "static"
	if static && cfg.Partition.Replicas == 0 {
		cfg.Partition.Replicas = n
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = zap.NewNop()
	}
	rs := &replicaSet{once: make([]sync.Once, n), results: make([]error, n), exited: make(chan replicaExit, n)}
	for i := range n {
		c := cfg
		if static {
			c.Partition.Index = max(cfg.Partition.Index, 0) + i
			if c.Partition.Index >= c.Partition.Replicas {
				rs.Stop()
				return nil, fmt.Errorf("replicas: static index %d of %d", c.Partition.Index, c.Partition.Replicas)
			}
		}
		if i > 0 && cfg.HTTP.Addr != "" {
			addr, err := freeLoopbackAddr()
			if err != nil {
				rs.Stop()
				return nil, err
			}
			c.HTTP.Addr = addr
		}
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		rs.cfgs = append(rs.cfgs, c)
		rs.cancels = append(rs.cancels, cancel)
		rs.errs = append(rs.errs, done)
		var observer func(worker.Settled)
		if observerOf != nil {
			observer = observerOf(i)
		}
		go func() {
			err := serve(rctx, c, log.With(zap.Int("replica", i)), observer)
			done <- err
			rs.exited <- replicaExit{Index: i, Err: err}
		}()
	}
	return rs, nil
}

func freeLoopbackAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("replicas: a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// Len is the number of replicas.
func (rs *replicaSet) Len() int { return len(rs.cfgs) }

// Addr is replica i's HTTP_ADDR (its /metrics, /readyz), "" when off.
func (rs *replicaSet) Addr(i int) string { return rs.cfgs[i].HTTP.Addr }

// Exited receives each replica that stops (ctx ended, Stop, or serve
// failed), as it stops.
func (rs *replicaSet) Exited() <-chan replicaExit { return rs.exited }

// Stop stops replica i as SIGTERM would (it drains, gives its partitions
// up, and the others take them over at once) and returns its error; with
// no argument it stops every replica.
func (rs *replicaSet) Stop(i ...int) error {
	if len(i) == 0 {
		for j := range rs.cancels {
			rs.cancels[j]()
		}
		return rs.Wait()
	}
	rs.cancels[i[0]]()
	return rs.wait(i[0])
}

func (rs *replicaSet) wait(i int) error {
	rs.once[i].Do(func() { rs.results[i] = <-rs.errs[i] })
	return rs.results[i]
}

// Wait waits until every replica has stopped (after ctx ended, or Stop)
// and returns their errors joined.
func (rs *replicaSet) Wait() error {
	var errs []error
	for i := range rs.errs {
		if err := rs.wait(i); err != nil {
			errs = append(errs, fmt.Errorf("replica %d: %w", i, err))
		}
	}
	return errors.Join(errs...)
}
