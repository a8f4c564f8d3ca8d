package provision_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mautic-sync/mautic-sync/queue"
	"github.com/mautic-sync/mautic-sync/queue/provision"
)

func partitioned(n int) provision.Options {
	return provision.Options{
		Partitioning: queue.Partitioning{Count: n, Prefix: "in", PinTTL: 10 * time.Second},
		Buckets:      []jetstream.KeyValueConfig{queue.MembersBucketConfig("MEMBERS", 10*time.Second, 1)},
	}
}

// TestProvisionPartitionedFromScratch: a new installation gets the
// partitioned stream, one consumer per partition, the members bucket, and
// no unpartitioned consumer; provisioning again changes nothing.
func TestProvisionPartitionedFromScratch(t *testing.T) {
	js := setup(t)
	ctx := context.Background()
	p, err := provision.RunWith(ctx, js, topo(), partitioned(2), false)
	if err != nil {
		t.Fatal(err)
	}
	want := "stream IN=create; stream RES=create; stream DLQ=create; consumer c-p0 on stream IN=create; consumer c-p1 on stream IN=create; key-value bucket MEMBERS=create"
	if got := actions(p); got != want {
		t.Errorf("plan %s\nwant %s", got, want)
	}
	if _, err := js.Consumer(ctx, "IN", "c"); !errors.Is(err, jetstream.ErrConsumerNotFound) {
		t.Errorf("the unpartitioned consumer was created: %v", err)
	}
	s, _ := js.Stream(ctx, "IN")
	if tr := s.CachedInfo().Config.SubjectTransform; tr == nil || tr.Destination != "in.{{partition(2,1)}}.{{wildcard(1)}}" {
		t.Errorf("transform %+v", tr)
	}
	p, err = provision.RunWith(ctx, js, topo(), partitioned(2), false)
	if err != nil {
		t.Fatal(err)
	}
	if p.Changed() {
		t.Errorf("second run changes: %s", actions(p))
	}
	// The service binds to what provision made.
	if _, err := queue.EnsurePartitioned(ctx, js, topo(), partitioned(2).Partitioning, false); err != nil {
		t.Error(err)
	}
}

// TestProvisionMovesAnInstallationToPartitions: on a running unpartitioned
// installation, provision adds the transform, creates the partition
// consumers and narrows the existing consumer to the subjects stored
// before, keeping its position; a later change of the partition count is
// refused.
func TestProvisionMovesAnInstallationToPartitions(t *testing.T) {
	js := setup(t)
	ctx := context.Background()
	if _, err := provision.Run(ctx, js, topo(), false); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if _, err := js.Publish(ctx, "in.k1", nil); err != nil {
			t.Fatal(err)
		}
	}
	old, _ := js.Consumer(ctx, "IN", "c")
	b, _ := old.Fetch(2, jetstream.FetchMaxWait(time.Second))
	for m := range b.Messages() {
		_ = m.Ack()
	}

	p, err := provision.RunWith(ctx, js, topo(), partitioned(2), true)
	if err != nil {
		t.Fatal(err)
	}
	want := "stream IN=update; stream RES=unchanged; stream DLQ=unchanged; consumer c on stream IN=update; consumer c-p0 on stream IN=create; consumer c-p1 on stream IN=create; key-value bucket MEMBERS=create"
	if got := actions(p); got != want {
		t.Errorf("plan %s\nwant %s", got, want)
	}
	legacy := findItem(t, p, "c")
	if len(legacy.Changes) != 1 || legacy.Changes[0].Field != provision.FieldFilterSubjects || legacy.Changes[0].New != "[in.*]" {
		t.Errorf("the unpartitioned consumer's changes %+v, want only its filter narrowed to [in.*]", legacy.Changes)
	}
	if err := provision.Apply(ctx, js, p); err != nil {
		t.Fatal(err)
	}
	info, err := old.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.FilterSubject != "in.*" || info.AckFloor.Stream != 2 || info.NumPending != 3 {
		t.Errorf("the old consumer: filter %q, ack floor %d, pending %d; want in.*, 2, 3 (its position kept)", info.Config.FilterSubject, info.AckFloor.Stream, info.NumPending)
	}
	if _, err := js.Publish(ctx, "in.k1", nil); err != nil {
		t.Fatal(err)
	}
	if info, _ := old.Info(ctx); info.NumPending != 3 {
		t.Errorf("a partitioned message is pending for the old consumer (%d pending)", info.NumPending)
	}

	p, err = provision.RunWith(ctx, js, topo(), partitioned(3), false)
	if !errors.Is(err, provision.ErrBlocked) {
		t.Errorf("changing the partition count: %v, want ErrBlocked", err)
	}
	if it := findItem(t, p, "IN"); len(it.Changes) != 1 || it.Changes[0].Field != provision.FieldTransform || !it.Changes[0].Immutable {
		t.Errorf("stream changes %+v, want the transform, refused", it.Changes)
	}
}
