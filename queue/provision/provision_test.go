package provision_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mautic-sync/mautic-sync/queue"
	"github.com/mautic-sync/mautic-sync/queue/natstest"
	"github.com/mautic-sync/mautic-sync/queue/provision"
)

func setup(t *testing.T) jetstream.JetStream {
	t.Helper()
	_, _, js := natstest.Start(t)
	return js
}

func topo() queue.Topology {
	return queue.Topology{
		Stream: "IN", Subjects: []string{"in.>"}, Duplicates: time.Minute,
		Consumer: "c", AckWait: 10 * time.Second, MaxAckPending: 100,
		ResultStream: "RES", ResultSubject: "out.result", DLQStream: "DLQ", DLQSubject: "out.dlq",
	}
}

func actions(p provision.Plan) string {
	var out []string
	for _, it := range p.Items {
		out = append(out, it.String()+"="+string(it.Action))
	}
	return strings.Join(out, "; ")
}

func findItem(t *testing.T, p provision.Plan, name string) provision.Item {
	t.Helper()
	for _, it := range p.Items {
		if it.Name == name {
			return it
		}
	}
	t.Fatalf("plan has no item %s: %s", name, actions(p))
	return provision.Item{}
}

func TestProvisionCreatesThenUnchangedThenUpdates(t *testing.T) {
	js := setup(t)
	ctx := context.Background()

	// Dry run on an empty server: everything to create, nothing created.
	p, err := provision.Run(ctx, js, topo(), true)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := actions(p), "stream IN=create; stream RES=create; stream DLQ=create; consumer c on stream IN=create"; got != want {
		t.Errorf("plan %s, want %s", got, want)
	}
	if _, err := js.Stream(ctx, "IN"); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatalf("dry run created the stream: %v", err)
	}

	// Apply: created.
	if _, err := provision.Run(ctx, js, topo(), false); err != nil {
		t.Fatal(err)
	}
	cons, err := js.Consumer(ctx, "IN", "c")
	if err != nil {
		t.Fatal(err)
	}
	if c := cons.CachedInfo().Config; c.AckPolicy != jetstream.AckExplicitPolicy || c.AckWait != 10*time.Second || c.MaxAckPending != 100 || c.MaxDeliver != -1 {
		t.Errorf("created consumer %+v", c)
	}

	// Again: unchanged.
	p, err = provision.Run(ctx, js, topo(), false)
	if err != nil {
		t.Fatal(err)
	}
	if p.Changed() {
		t.Errorf("second run changes things: %s", actions(p))
	}

	// Settings change: the update is reported field by field, dry run leaves it.
	changed := topo()
	changed.Subjects = []string{"in.>", "legacy.contacts.*"}
	changed.Duplicates = 5 * time.Minute
	changed.AckWait = 45 * time.Second
	changed.MaxAckPending = 500
	p, err = provision.Run(ctx, js, changed, true)
	if err != nil {
		t.Fatal(err)
	}
	in := findItem(t, p, "IN")
	if in.Action != provision.Update || len(in.Changes) != 2 ||
		in.Changes[0] != (provision.Change{Field: "subjects", Old: "[in.>]", New: "[in.>, legacy.contacts.*]"}) ||
		in.Changes[1] != (provision.Change{Field: "duplicate window", Old: "1m0s", New: "5m0s"}) {
		t.Errorf("input stream item %+v", in)
	}
	if res := findItem(t, p, "RES"); res.Action != provision.Update || len(res.Changes) != 1 || res.Changes[0].Field != "duplicate window" {
		t.Errorf("result stream item %+v", res)
	}
	c := findItem(t, p, "c")
	if c.Action != provision.Update || len(c.Changes) != 2 ||
		c.Changes[0] != (provision.Change{Field: "ack wait", Old: "10s", New: "45s"}) ||
		c.Changes[1] != (provision.Change{Field: "max ack pending", Old: "100", New: "500"}) {
		t.Errorf("consumer item %+v", c)
	}
	if info, _ := js.Stream(ctx, "IN"); info.CachedInfo().Config.Duplicates != time.Minute {
		t.Error("dry run applied the update")
	}

	if _, err := provision.Run(ctx, js, changed, false); err != nil {
		t.Fatal(err)
	}
	s, _ := js.Stream(ctx, "IN")
	if sc := s.CachedInfo().Config; sc.Duplicates != 5*time.Minute || len(sc.Subjects) != 2 || sc.Description != "contact-change events for mautic-sync" {
		t.Errorf("updated stream %+v", sc)
	}
	cons, _ = js.Consumer(ctx, "IN", "c")
	if cc := cons.CachedInfo().Config; cc.AckWait != 45*time.Second || cc.MaxAckPending != 500 || cc.Description != "mautic-sync worker" {
		t.Errorf("updated consumer %+v", cc)
	}
	if p, err := provision.NewPlan(ctx, js, changed); err != nil || p.Changed() {
		t.Errorf("after the update: %s, %v", actions(p), err)
	}
}

// TestProvisionAgreesWithEnsure: what the service creates at start-up is
// what provision wants, so a fresh deployment is "unchanged".
func TestProvisionAgreesWithEnsure(t *testing.T) {
	js := setup(t)
	ctx := context.Background()
	if _, err := queue.Ensure(ctx, js, topo(), true); err != nil {
		t.Fatal(err)
	}
	p, err := provision.NewPlan(ctx, js, topo())
	if err != nil {
		t.Fatal(err)
	}
	if p.Changed() {
		t.Errorf("after queue.Ensure, provision plans %s", actions(p))
		for _, it := range p.Items {
			t.Logf("%s: %+v", it, it.Changes)
		}
	}
}

// TestProvisionKeepsUnmanagedSettingsAndRefusesImmutable: limits set by
// hand survive an update, a stray filter is removed, and a change JetStream
// cannot make in place (storage) blocks the whole apply.
func TestProvisionKeepsUnmanagedSettingsAndRefusesImmutable(t *testing.T) {
	js := setup(t)
	ctx := context.Background()
	if _, err := provision.Run(ctx, js, topo(), false); err != nil {
		t.Fatal(err)
	}
	s, _ := js.Stream(ctx, "IN")
	sc := s.CachedInfo().Config
	sc.MaxAge = 48 * time.Hour
	sc.Subjects = []string{"in.>", "extra.x"}
	if _, err := js.UpdateStream(ctx, sc); err != nil {
		t.Fatal(err)
	}
	cons, _ := js.Consumer(ctx, "IN", "c")
	cc := cons.CachedInfo().Config
	cc.FilterSubjects = []string{"in.a", "in.b"}
	cc.MaxDeliver = 5
	if _, err := js.UpdateConsumer(ctx, "IN", cc); err != nil {
		t.Fatal(err)
	}
	p, err := provision.Run(ctx, js, topo(), false)
	if err != nil {
		t.Fatal(err)
	}
	c := findItem(t, p, "c")
	if len(c.Changes) != 2 || c.Changes[0] != (provision.Change{Field: "max deliver", Old: "5", New: "unlimited"}) ||
		c.Changes[1].Field != "filter subjects" || c.Changes[1].Old != "[in.a, in.b]" {
		t.Errorf("consumer changes %+v", c.Changes)
	}
	s, _ = js.Stream(ctx, "IN")
	if got := s.CachedInfo().Config; got.MaxAge != 48*time.Hour || len(got.Subjects) != 1 {
		t.Errorf("stream after provision: max age %s subjects %v", got.MaxAge, got.Subjects)
	}
	cons, _ = js.Consumer(ctx, "IN", "c")
	if got := cons.CachedInfo().Config; len(got.FilterSubjects) != 0 || got.FilterSubject != "" || got.MaxDeliver != -1 {
		t.Errorf("consumer after provision: %+v", got)
	}

	// A memory-storage result stream cannot become file storage in place.
	if err := js.DeleteStream(ctx, "RES"); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "RES", Subjects: []string{"out.result"}, Storage: jetstream.MemoryStorage, Duplicates: time.Minute}); err != nil {
		t.Fatal(err)
	}
	changed := topo()
	changed.AckWait = time.Minute
	p, err = provision.Run(ctx, js, changed, false)
	if !errors.Is(err, provision.ErrBlocked) || !strings.Contains(err.Error(), "stream RES: storage memory → file") {
		t.Fatalf("apply with a storage change: %v", err)
	}
	if len(p.Blocked()) != 1 {
		t.Errorf("blocked %v", p.Blocked())
	}
	cons, _ = js.Consumer(ctx, "IN", "c")
	if cons.CachedInfo().Config.AckWait != 10*time.Second {
		t.Error("a blocked plan changed the consumer")
	}
}
