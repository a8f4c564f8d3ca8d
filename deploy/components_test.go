package deploy

import (
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestKEDAScaledObject: the ScaledObject scales the Deployment on the
// backlog of mautic-sync's own consumer, and stops at one replica (more
// needs the partitioned mode).
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
		d, _ := r.workload(t)
		ref := so.Spec.ScaleTargetRef
		if ref.Name != d.Name || (ref.Kind != "" && ref.Kind != "Deployment") || (ref.APIVersion != "" && ref.APIVersion != "apps/v1") {
			t.Errorf("scaleTargetRef %+v does not name the Deployment %s", ref, d.Name)
		}
		if so.Spec.MaxReplicaCount == nil || *so.Spec.MaxReplicaCount != 1 {
			t.Error("maxReplicaCount must be set to 1: more than one replica needs the partitioned mode")
		}
		if m := so.Spec.MinReplicaCount; m != nil && (*m < 0 || so.Spec.MaxReplicaCount != nil && *m > *so.Spec.MaxReplicaCount) {
			t.Errorf("minReplicaCount %d is not within 0..maxReplicaCount", *m)
		}
		if len(so.Spec.Triggers) != 1 {
			t.Fatalf("want one trigger, have %d", len(so.Spec.Triggers))
		}
		tr := so.Spec.Triggers[0]
		if tr.Type != "nats-jetstream" {
			t.Errorf("trigger type %q, want nats-jetstream", tr.Type)
		}
		for k := range tr.Metadata {
			if !slices.Contains(known, k) {
				t.Errorf("trigger metadata %q is not a parameter of the nats-jetstream scaler", k)
			}
		}
		for _, k := range []string{"natsServerMonitoringEndpoint", "account", "stream", "consumer", "lagThreshold"} {
			if tr.Metadata[k] == "" {
				t.Errorf("trigger metadata %s is missing", k)
			}
		}
		if ep := tr.Metadata["natsServerMonitoringEndpoint"]; strings.Contains(ep, "://") || strings.HasSuffix(ep, ":4222") {
			t.Errorf("natsServerMonitoringEndpoint %q: host:port of the monitoring endpoint (usually 8222), not a URL or the client port", ep)
		}
		if got, want := tr.Metadata["stream"], r.setting(t, "STREAM_NAME"); got != want {
			t.Errorf("trigger stream %q, but STREAM_NAME is %q", got, want)
		}
		if got, want := tr.Metadata["consumer"], r.setting(t, "CONSUMER_NAME"); got != want {
			t.Errorf("trigger consumer %q, but CONSUMER_NAME is %q", got, want)
		}
		if n, err := strconv.Atoi(tr.Metadata["lagThreshold"]); err != nil || n <= 0 {
			t.Errorf("lagThreshold %q must be a positive number", tr.Metadata["lagThreshold"])
		}
		if v, ok := tr.Metadata["useHttps"]; ok && v != "true" && v != "false" {
			t.Errorf("useHttps %q must be true or false", v)
		}
	})
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
