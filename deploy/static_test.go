package deploy

import (
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/mautic-sync/mautic-sync/config"
)

// TestStaticPartitionsStatefulSet: the static partitioned mode runs as a
// StatefulSet, and a StatefulSet runs only that mode. Its governing Service
// is rendered and headless; its pods start in parallel; REPLICA_INDEX comes
// from the pod-index label and REPLICA_COUNT equals spec.replicas, at most
// PARTITIONS; nothing autoscales it. Every pod's settings load (through the
// config package) as replica <ordinal> of <replicas>, the pods together own
// every partition exactly once, and a pod beyond REPLICA_COUNT (what
// `kubectl scale` without the setting would start) is refused at start,
// and an empty REPLICA_INDEX (no pod-index label: Kubernetes before 1.28)
// loads as -1, the host name's ordinal. The pod is the base's, but for its
// env.
func TestStaticPartitionsStatefulSet(t *testing.T) {
	base := render(t, cases[0])
	baseWorkload, _ := base.workload(t)
	static := 0
	forEachCase(t, func(t *testing.T, r *rendered) {
		w, c := r.workload(t)
		partitions, err := strconv.Atoi(r.setting(t, "PARTITIONS"))
		if err != nil {
			t.Fatalf("PARTITIONS: %v", err)
		}
		mode := r.setting(t, "PARTITION_MODE")
		isStatic := partitions > 0 && mode == "static"
		if (w.kind == "StatefulSet") != isStatic {
			t.Fatalf("a %s with PARTITIONS=%d and PARTITION_MODE=%s: the static partitioned mode, and only it, runs as a StatefulSet", w.kind, partitions, mode)
		}
		if !isStatic {
			return
		}
		static++
		s := w.statefulSet

		// The governing Service: headless, selecting the pods.
		var svc *corev1.Service
		for i := range r.services {
			if r.services[i].Name == s.Spec.ServiceName {
				svc = &r.services[i]
			}
		}
		switch {
		case svc == nil:
			t.Errorf("serviceName %q names no rendered Service", s.Spec.ServiceName)
		case svc.Spec.ClusterIP != corev1.ClusterIPNone:
			t.Errorf("Service %s has clusterIP %q: a StatefulSet's governing Service is headless (None)", svc.Name, svc.Spec.ClusterIP)
		case !selects(t, &metav1.LabelSelector{MatchLabels: svc.Spec.Selector}, w.template.Labels):
			t.Errorf("Service %s does not select the StatefulSet's pods", svc.Name)
		}
		if s.Spec.PodManagementPolicy != appsv1.ParallelPodManagement {
			t.Errorf("podManagementPolicy %q, want Parallel: the replicas do not depend on each other, and OrderedReady stalls behind a pod paused on Mautic", s.Spec.PodManagementPolicy)
		}
		if u := s.Spec.UpdateStrategy.Type; u != "" && u != appsv1.RollingUpdateStatefulSetStrategyType {
			t.Errorf("updateStrategy %q: with OnDelete a change of REPLICA_COUNT reaches only the pods deleted by hand", u)
		}
		if len(r.scaledObjects) != 0 {
			t.Error("a ScaledObject with the static mode: an autoscaler changes replicas without REPLICA_COUNT")
		}

		ordinals := r.podOrdinals(t) // fails when replicas is not set
		replicas := len(ordinals)
		if replicas > partitions {
			t.Errorf("replicas %d above PARTITIONS %d: the config refuses REPLICA_COUNT above PARTITIONS", replicas, partitions)
		}
		if got := r.setting(t, "REPLICA_COUNT"); got != strconv.Itoa(replicas) {
			t.Errorf("REPLICA_COUNT=%q but spec.replicas is %d: change them together", got, replicas)
		}
		var index *corev1.EnvVar
		for i := range c.Env {
			if c.Env[i].Name == "REPLICA_INDEX" {
				index = &c.Env[i]
			}
		}
		if index == nil || index.ValueFrom == nil || index.ValueFrom.FieldRef == nil || index.ValueFrom.FieldRef.FieldPath != podIndexFieldPath {
			t.Errorf("REPLICA_INDEX must come from the downward API's %s, have %+v", podIndexFieldPath, index)
		}

		// Each pod as the service sees it at start.
		owners := make([]int, partitions)
		for _, o := range ordinals {
			cfg, err := r.loadSettings(t, o)
			if err != nil {
				t.Errorf("pod %d: the rendered settings do not validate:\n%v", o, err)
				continue
			}
			p := cfg.Partition
			if p.Mode != "static" || p.Index != o || p.Replicas != replicas || p.Count != partitions {
				t.Errorf("pod %d loads as mode %q, replica %d of %d, %d partitions; want static, %d of %d, %d", o, p.Mode, p.Index, p.Replicas, p.Count, o, replicas, partitions)
			}
			for i := range owners {
				if i%p.Replicas == p.Index { // queue/partition's static assignment
					owners[i]++
				}
			}
		}
		for i, n := range owners {
			if n != 1 {
				t.Errorf("partition %d is owned by %d pods, want 1", i, n)
			}
		}
		if _, err := r.loadSettings(t, replicas); err == nil || !strings.Contains(err.Error(), "REPLICA_INDEX") {
			t.Errorf("pod %d (one beyond REPLICA_COUNT=%d) must be refused at start, naming REPLICA_INDEX; got %v", replicas, replicas, err)
		}
		// Before Kubernetes 1.28 the pod-index label is missing and the
		// downward API gives an empty REPLICA_INDEX: that counts as unset,
		// -1, which takes the ordinal from the host name (the pod's name).
		t.Setenv("REPLICA_INDEX", "")
		if cfg, err := config.Load(); err != nil || cfg.Partition.Index != -1 {
			t.Errorf("an empty REPLICA_INDEX (no pod-index label) must load as -1 (from the host name); got %d, %v", cfg.Partition.Index, err)
		}

		// The pod is the base's: only the env (and the image and the
		// ConfigMap's hashed name, which overlays change) may differ.
		strip := func(tpl *corev1.PodTemplateSpec) *corev1.PodTemplateSpec {
			tpl = tpl.DeepCopy()
			for i := range tpl.Spec.Containers {
				tpl.Spec.Containers[i].Env, tpl.Spec.Containers[i].EnvFrom, tpl.Spec.Containers[i].Image = nil, nil, ""
			}
			return tpl
		}
		if !apiequality.Semantic.DeepEqual(strip(w.template), strip(baseWorkload.template)) {
			t.Error("the StatefulSet's pod template differs from the base Deployment's beyond the env: keep probes, resources and security settings in the base")
		}
		if !apiequality.Semantic.DeepEqual(w.selector, baseWorkload.selector) {
			t.Errorf("selector %v, want the base's %v", w.selector, baseWorkload.selector)
		}
	})
	if static == 0 {
		t.Error("no kustomization runs the static partitioned mode")
	}
}
