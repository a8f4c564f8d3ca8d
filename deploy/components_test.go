package deploy

import (
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestKEDAScaledObject: the ScaledObject scales the Deployment on the
// backlog of mautic-sync's own consumer, and stops at one replica; in
// partitioned mode on the backlog of every partition consumer, up to one
// replica per partition.
func TestKEDAScaledObject(t *testing.T) {
	known := []string{"natsServerMonitoringEndpoint", "account", "stream", "consumer", "lagThreshold", "activationLagThreshold", "useHttps"}
	forEachCase(t, func(t *testing.T, r *rendered) {
		if !r.has("keda") {
			if len(r.scaledObjects) != 0 {
				t.Error("a ScaledObject is rendered without the keda component")
			}
			return
		}
		if len(r.scaledObjects) != 1 {
			t.Fatalf("want one ScaledObject, have %d", len(r.scaledObjects))
		}
		so := r.scaledObjects[0]
		w, _ := r.workload(t)
		ref := so.Spec.ScaleTargetRef
		if w.kind != "Deployment" {
			// Only the elastic mode follows a changing replica count.
			t.Fatalf("a ScaledObject scales the %s %s: static partitions need REPLICA_COUNT changed with the replicas, which an HPA cannot do", w.kind, w.name)
		}
		if ref.Name != w.name || (ref.Kind != "" && ref.Kind != "Deployment") || (ref.APIVersion != "" && ref.APIVersion != "apps/v1") {
			t.Errorf("scaleTargetRef %+v does not name the Deployment %s", ref, w.name)
		}
		partitions, err := strconv.Atoi(r.setting(t, "PARTITIONS"))
		if err != nil {
			t.Fatalf("PARTITIONS: %v", err)
		}
		wantMax, wantConsumers := 1, []string{r.setting(t, "CONSUMER_NAME")}
		if partitions > 0 {
			// One replica per partition at most, scaled on every
			// partition consumer's backlog.
			wantMax, wantConsumers = partitions, nil
			for i := range partitions {
				wantConsumers = append(wantConsumers, r.setting(t, "CONSUMER_NAME")+"-p"+strconv.Itoa(i))
			}
		}
		if so.Spec.MaxReplicaCount == nil || int(*so.Spec.MaxReplicaCount) != wantMax {
			t.Errorf("maxReplicaCount must be set to %d: one replica unpartitioned, at most one per partition (PARTITIONS=%d)", wantMax, partitions)
		}
		if m := so.Spec.MinReplicaCount; m != nil && (*m < 0 || so.Spec.MaxReplicaCount != nil && *m > *so.Spec.MaxReplicaCount) {
			t.Errorf("minReplicaCount %d is not within 0..maxReplicaCount", *m)
		}
		if len(so.Spec.Triggers) != len(wantConsumers) {
			t.Fatalf("want %d trigger(s), one per consumer, have %d", len(wantConsumers), len(so.Spec.Triggers))
		}
		var haveConsumers []string
		for i, tr := range so.Spec.Triggers {
			haveConsumers = append(haveConsumers, tr.Metadata["consumer"])
			checkTrigger(t, r, i, tr.Type, tr.Metadata, known)
		}
		slices.Sort(haveConsumers)
		slices.Sort(wantConsumers)
		if !slices.Equal(haveConsumers, wantConsumers) {
			t.Errorf("triggers on consumers %v, want %v", haveConsumers, wantConsumers)
		}
	})
}

// checkTrigger checks trigger i (a nats-jetstream one) against the
// settings; known lists the scaler's parameters.
func checkTrigger(t *testing.T, r *rendered, i int, typ string, md map[string]string, known []string) {
	t.Helper()
	if typ != "nats-jetstream" {
		t.Errorf("trigger %d: type %q, want nats-jetstream", i, typ)
	}
	for k := range md {
		if !slices.Contains(known, k) {
			t.Errorf("trigger %d: metadata %q is not a parameter of the nats-jetstream scaler", i, k)
		}
	}
	for _, k := range []string{"natsServerMonitoringEndpoint", "account", "stream", "consumer", "lagThreshold"} {
		if md[k] == "" {
			t.Errorf("trigger %d: metadata %s is missing", i, k)
		}
	}
	if ep := md["natsServerMonitoringEndpoint"]; strings.Contains(ep, "://") || strings.HasSuffix(ep, ":4222") {
		t.Errorf("trigger %d: natsServerMonitoringEndpoint %q: host:port of the monitoring endpoint (usually 8222), not a URL or the client port", i, ep)
	}
	if got, want := md["stream"], r.setting(t, "STREAM_NAME"); got != want {
		t.Errorf("trigger %d: stream %q, but STREAM_NAME is %q", i, got, want)
	}
	if n, err := strconv.Atoi(md["lagThreshold"]); err != nil || n <= 0 {
		t.Errorf("trigger %d: lagThreshold %q must be a positive number", i, md["lagThreshold"])
	}
	if v, ok := md["useHttps"]; ok && v != "true" && v != "false" {
		t.Errorf("trigger %d: useHttps %q must be true or false", i, v)
	}
}

// TestNACKResources: the streams and the consumer are those mautic-sync
// would create from its settings, and CREATE_STREAMS is false exactly when
// NACK manages them.
func TestNACKResources(t *testing.T) {
	forEachCase(t, func(t *testing.T, r *rendered) {
		create := r.setting(t, "CREATE_STREAMS")
		if !r.has("nack") {
			if len(r.streams)+len(r.consumers) != 0 {
				t.Error("NACK resources are rendered without the nack component")
			}
			if create != "true" {
				t.Errorf("CREATE_STREAMS=%q without the nack component: nothing would create the streams", create)
			}
			return
		}
		if create != "false" {
			t.Errorf("CREATE_STREAMS=%q with the nack component, want false", create)
		}
		dup := r.duration(t, "STREAM_DUPLICATE_WINDOW")
		want := map[string][]string{
			r.setting(t, "STREAM_NAME"):   strings.Split(r.setting(t, "STREAM_SUBJECTS"), ","),
			r.setting(t, "RESULT_STREAM"): {r.setting(t, "RESULT_SUBJECT")},
			r.setting(t, "DLQ_STREAM"):    {r.setting(t, "DLQ_SUBJECT")},
		}
		if len(r.streams) != len(want) {
			t.Errorf("want %d Streams, have %d", len(want), len(r.streams))
		}
		for _, s := range r.streams {
			subjects, ok := want[s.Spec.Name]
			if !ok {
				t.Errorf("Stream %s: %q is not one of mautic-sync's streams", s.Name, s.Spec.Name)
				continue
			}
			delete(want, s.Spec.Name)
			if !slices.Equal(s.Spec.Subjects, subjects) {
				t.Errorf("Stream %s: subjects %v, want %v", s.Spec.Name, s.Spec.Subjects, subjects)
			}
			if s.Spec.Storage != "file" {
				t.Errorf("Stream %s: storage %q, want file (as mautic-sync creates it)", s.Spec.Name, s.Spec.Storage)
			}
			if s.Spec.Retention != "" && s.Spec.Retention != "limits" {
				t.Errorf("Stream %s: retention %q: the consumer and others read these streams, keep limits", s.Spec.Name, s.Spec.Retention)
			}
			if d, err := time.ParseDuration(s.Spec.DuplicateWindow); err != nil || d != dup {
				t.Errorf("Stream %s: duplicateWindow %q, want STREAM_DUPLICATE_WINDOW %v", s.Spec.Name, s.Spec.DuplicateWindow, dup)
			}
		}
		for name := range want {
			t.Errorf("no Stream %s", name)
		}

		if len(r.consumers) != 1 {
			t.Fatalf("want one Consumer, have %d", len(r.consumers))
		}
		c := r.consumers[0].Spec
		if c.DurableName != r.setting(t, "CONSUMER_NAME") || c.StreamName != r.setting(t, "STREAM_NAME") {
			t.Errorf("Consumer %s on %s, want CONSUMER_NAME on STREAM_NAME", c.DurableName, c.StreamName)
		}
		if c.DeliverSubject != "" {
			t.Error("the Consumer must be a pull consumer (no deliverSubject)")
		}
		if c.AckPolicy != "explicit" {
			t.Errorf("ackPolicy %q, want explicit", c.AckPolicy)
		}
		if c.DeliverPolicy != "" && c.DeliverPolicy != "all" {
			t.Errorf("deliverPolicy %q, want all", c.DeliverPolicy)
		}
		if d, err := time.ParseDuration(c.AckWait); err != nil || d != r.duration(t, "CONSUMER_ACK_WAIT") {
			t.Errorf("ackWait %q, want CONSUMER_ACK_WAIT %v", c.AckWait, r.duration(t, "CONSUMER_ACK_WAIT"))
		}
		if c.MaxAckPending == nil || strconv.Itoa(*c.MaxAckPending) != r.setting(t, "CONSUMER_MAX_ACK_PENDING") {
			t.Errorf("maxAckPending must be CONSUMER_MAX_ACK_PENDING (%s)", r.setting(t, "CONSUMER_MAX_ACK_PENDING"))
		}
		if c.MaxDeliver == nil || *c.MaxDeliver != -1 {
			t.Error("maxDeliver must be -1: the worker counts deliveries itself and dead-letters with the payload")
		}
	})
}
