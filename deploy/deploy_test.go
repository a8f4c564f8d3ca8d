package deploy

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/mautic-sync/mautic-sync/config"
)

const (
	// containerName is the container of the workload that runs mautic-sync.
	containerName = "mautic-sync"
	// credentialsSecret is the Secret the workload reads credentials from.
	credentialsSecret = "mautic-sync-credentials"
	// flushAllowance is how long mautic-sync may still flush NATS and stop
	// its HTTP server after WORKER_DRAIN_TIMEOUT.
	flushAllowance = 10 * time.Second
)

// renderCase is one kustomization the tests render.
type renderCase struct {
	name string
	dir  string
	// components are the components it includes (by directory name).
	components []string
}

// cases is filled by TestMain: the base, the example overlay, the
// partitioned overlays, and the base with each component alone (synthetic
// overlays in a temporary copy).
var cases []renderCase

// variantOverlays maps the variants, the components that change how
// mautic-sync runs rather than add to it, to the components their overlay
// (overlays/<variant>) uses, in order. The example overlay leaves the
// variants out.
var variantOverlays = map[string][]string{
	// keda first: partitioned widens its ScaledObject.
	"partitioned": {"servicemonitor", "prometheusrule", "grafana-dashboard", "keda", "partitioned"},
	// No keda: the static mode's replica count is fixed.
	"partitioned-static": {"servicemonitor", "prometheusrule", "grafana-dashboard", "partitioned-static"},
}

func TestMain(m *testing.M) {
	os.Exit(func() int {
		tmp, err := os.MkdirTemp("", "mautic-sync-deploy-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(tmp)
		if cases, err = setUpCases(tmp); err != nil {
			fmt.Fprintln(os.Stderr, "setting up the kustomizations to render:", err)
			return 1
		}
		return m.Run()
	}())
}

// componentNames lists the directories under components/.
func componentNames() ([]string, error) {
	entries, err := os.ReadDir("components")
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() {
			names = append(names, e.Name())
		}
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("no component in components/")
	}
	return names, nil
}

// setUpCases copies base/ and components/ into tmp and writes there one
// overlay per component that adds only that component to the base.
func setUpCases(tmp string) ([]renderCase, error) {
	names, err := componentNames()
	if err != nil {
		return nil, err
	}
	var example []string
	for _, n := range names {
		if _, variant := variantOverlays[n]; !variant {
			example = append(example, n)
		}
	}
	out := []renderCase{
		{name: "base", dir: "base"},
		{name: "overlays/example", dir: filepath.Join("overlays", "example"), components: example},
	}
	for _, v := range slices.Sorted(maps.Keys(variantOverlays)) {
		out = append(out, renderCase{name: "overlays/" + v, dir: filepath.Join("overlays", v), components: variantOverlays[v]})
	}
	for _, d := range []string{"base", "components"} {
		if err := os.CopyFS(filepath.Join(tmp, d), os.DirFS(d)); err != nil {
			return nil, err
		}
	}
	for _, n := range names {
		dir := filepath.Join(tmp, "overlays", n)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		k := fmt.Sprintf("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"+
			"resources:\n  - ../../base\ncomponents:\n  - ../../components/%s\n", n)
		if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(k), 0o644); err != nil {
			return nil, err
		}
		out = append(out, renderCase{name: "base+components/" + n, dir: dir, components: []string{n}})
	}
	return out, nil
}

// object is one rendered resource.
type object struct {
	apiVersion, kind, name string
	yaml                   []byte
}

func (o object) String() string { return o.apiVersion + " " + o.kind + " " + o.name }

// rendered is the output of one kustomization, decoded.
type rendered struct {
	renderCase
	objects []object

	deployments     []appsv1.Deployment
	statefulSets    []appsv1.StatefulSet
	services        []corev1.Service
	configMaps      []corev1.ConfigMap
	secrets         []corev1.Secret
	serviceAccounts []corev1.ServiceAccount
	pdbs            []policyv1.PodDisruptionBudget
	networkPolicies []networkingv1.NetworkPolicy
	serviceMonitors []serviceMonitor
	prometheusRules []prometheusRule
	scaledObjects   []scaledObject
	streams         []nackStream
	consumers       []nackConsumer
	keyValues       []nackKeyValue
}

var (
	renderMu    sync.Mutex
	renderCache = map[string]*rendered{}
	renderErrs  = map[string]error{}
)

// render renders and decodes c once per test binary.
func render(t *testing.T, c renderCase) *rendered {
	t.Helper()
	renderMu.Lock()
	defer renderMu.Unlock()
	if r, ok := renderCache[c.dir]; ok {
		return r
	}
	if err, ok := renderErrs[c.dir]; ok {
		t.Fatalf("%s: %v", c.name, err)
	}
	r, err := renderAndDecode(c)
	if err != nil {
		renderErrs[c.dir] = err
		t.Fatalf("%s: %v", c.name, err)
	}
	renderCache[c.dir] = r
	return r
}

func renderAndDecode(c renderCase) (*rendered, error) {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(filesys.MakeFsOnDisk(), c.dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize: %w", err)
	}
	r := &rendered{renderCase: c}
	for _, res := range m.Resources() {
		y, err := res.AsYAML()
		if err != nil {
			return nil, err
		}
		o := object{apiVersion: res.GetApiVersion(), kind: res.GetKind(), name: res.GetName(), yaml: y}
		r.objects = append(r.objects, o)
		if err := r.decode(o); err != nil {
			return nil, fmt.Errorf("%s: %w", o, err)
		}
	}
	return r, nil
}

// decodeInto decodes y strictly: an unknown or duplicate field is an error.
func decodeInto[T any](y []byte, list *[]T) error {
	var v T
	if err := yaml.UnmarshalStrict(y, &v); err != nil {
		return err
	}
	*list = append(*list, v)
	return nil
}

func (r *rendered) decode(o object) error {
	switch o.apiVersion + " " + o.kind {
	case "apps/v1 Deployment":
		return decodeInto(o.yaml, &r.deployments)
	case "apps/v1 StatefulSet":
		return decodeInto(o.yaml, &r.statefulSets)
	case "v1 Service":
		return decodeInto(o.yaml, &r.services)
	case "v1 ConfigMap":
		return decodeInto(o.yaml, &r.configMaps)
	case "v1 Secret":
		return decodeInto(o.yaml, &r.secrets)
	case "v1 ServiceAccount":
		return decodeInto(o.yaml, &r.serviceAccounts)
	case "policy/v1 PodDisruptionBudget":
		return decodeInto(o.yaml, &r.pdbs)
	case "networking.k8s.io/v1 NetworkPolicy":
		return decodeInto(o.yaml, &r.networkPolicies)
	case "monitoring.coreos.com/v1 ServiceMonitor":
		return decodeInto(o.yaml, &r.serviceMonitors)
	case "monitoring.coreos.com/v1 PrometheusRule":
		return decodeInto(o.yaml, &r.prometheusRules)
	case "keda.sh/v1alpha1 ScaledObject":
		return decodeInto(o.yaml, &r.scaledObjects)
	case "jetstream.nats.io/v1beta2 Stream":
		return decodeInto(o.yaml, &r.streams)
	case "jetstream.nats.io/v1beta2 Consumer":
		return decodeInto(o.yaml, &r.consumers)
	case "jetstream.nats.io/v1beta2 KeyValue":
		return decodeInto(o.yaml, &r.keyValues)
	}
	return fmt.Errorf("no type to check this kind against: add it to rendered.decode")
}

// The CRDs' objects are decoded into these small structs, strictly: a field
// that is not here is an error, so add fields here when the manifests use
// more of the CRD (after checking the CRD has them).

type serviceMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Selector          metav1.LabelSelector `json:"selector"`
		NamespaceSelector *struct {
			Any        bool     `json:"any,omitempty"`
			MatchNames []string `json:"matchNames,omitempty"`
		} `json:"namespaceSelector,omitempty"`
		Endpoints []struct {
			Port          string `json:"port,omitempty"`
			Path          string `json:"path,omitempty"`
			Scheme        string `json:"scheme,omitempty"`
			Interval      string `json:"interval,omitempty"`
			ScrapeTimeout string `json:"scrapeTimeout,omitempty"`
		} `json:"endpoints"`
	} `json:"spec"`
}

type prometheusRule struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Groups []struct {
			Name     string      `json:"name"`
			Interval string      `json:"interval,omitempty"`
			Rules    []alertRule `json:"rules"`
		} `json:"groups"`
	} `json:"spec"`
}

type alertRule struct {
	Alert       string            `json:"alert,omitempty"`
	Record      string            `json:"record,omitempty"`
	Expr        string            `json:"expr"`
	For         string            `json:"for,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

type scaledObject struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		ScaleTargetRef struct {
			APIVersion string `json:"apiVersion,omitempty"`
			Kind       string `json:"kind,omitempty"`
			Name       string `json:"name"`
		} `json:"scaleTargetRef"`
		PollingInterval *int32 `json:"pollingInterval,omitempty"`
		CooldownPeriod  *int32 `json:"cooldownPeriod,omitempty"`
		MinReplicaCount *int32 `json:"minReplicaCount,omitempty"`
		MaxReplicaCount *int32 `json:"maxReplicaCount,omitempty"`
		Advanced        *struct {
			RestoreToOriginalReplicaCount bool `json:"restoreToOriginalReplicaCount,omitempty"`
			HorizontalPodAutoscalerConfig *struct {
				Name     string                                         `json:"name,omitempty"`
				Behavior *autoscalingv2.HorizontalPodAutoscalerBehavior `json:"behavior,omitempty"`
			} `json:"horizontalPodAutoscalerConfig,omitempty"`
		} `json:"advanced,omitempty"`
		Triggers []struct {
			Type     string            `json:"type"`
			Name     string            `json:"name,omitempty"`
			Metadata map[string]string `json:"metadata"`
		} `json:"triggers"`
	} `json:"spec"`
}

type nackStream struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Name            string   `json:"name"`
		Description     string   `json:"description,omitempty"`
		Subjects        []string `json:"subjects"`
		Storage         string   `json:"storage,omitempty"`
		Retention       string   `json:"retention,omitempty"`
		Discard         string   `json:"discard,omitempty"`
		Replicas        int      `json:"replicas,omitempty"`
		DuplicateWindow string   `json:"duplicateWindow,omitempty"`
		MaxAge          string   `json:"maxAge,omitempty"`
		MaxBytes        int64    `json:"maxBytes,omitempty"`
		Account         string   `json:"account,omitempty"`
	} `json:"spec"`
}

type nackConsumer struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		StreamName     string `json:"streamName"`
		DurableName    string `json:"durableName"`
		Description    string `json:"description,omitempty"`
		DeliverPolicy  string `json:"deliverPolicy,omitempty"`
		DeliverSubject string `json:"deliverSubject,omitempty"`
		AckPolicy      string `json:"ackPolicy,omitempty"`
		AckWait        string `json:"ackWait,omitempty"`
		MaxAckPending  *int   `json:"maxAckPending,omitempty"`
		MaxDeliver     *int   `json:"maxDeliver,omitempty"`
		Replicas       int    `json:"replicas,omitempty"`
		Account        string `json:"account,omitempty"`
	} `json:"spec"`
}

type nackKeyValue struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Bucket      string `json:"bucket"`
		Description string `json:"description,omitempty"`
		TTL         string `json:"ttl,omitempty"`
		History     int    `json:"history,omitempty"`
		Storage     string `json:"storage,omitempty"`
		Replicas    int    `json:"replicas,omitempty"`
	} `json:"spec"`
}

// forEachCase runs f as a subtest on every rendered kustomization.
func forEachCase(t *testing.T, f func(t *testing.T, r *rendered)) {
	t.Helper()
	if len(cases) == 0 {
		t.Fatal("no kustomization to render")
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { f(t, render(t, c)) })
	}
}

// workload is what runs mautic-sync's pods: the base's Deployment, or the
// StatefulSet of the static partitioned variant. The fields point into the
// decoded object.
type workload struct {
	kind, name string
	replicas   *int32 // nil: not set (an HPA owns it, or the default 1)
	selector   *metav1.LabelSelector
	template   *corev1.PodTemplateSpec

	deployment  *appsv1.Deployment  // when kind is Deployment
	statefulSet *appsv1.StatefulSet // when kind is StatefulSet
}

// workload returns the one Deployment or StatefulSet and its mautic-sync
// container.
func (r *rendered) workload(t *testing.T) (*workload, *corev1.Container) {
	t.Helper()
	var w *workload
	switch {
	case len(r.deployments) == 1 && len(r.statefulSets) == 0:
		d := &r.deployments[0]
		w = &workload{kind: "Deployment", name: d.Name, replicas: d.Spec.Replicas, selector: d.Spec.Selector, template: &d.Spec.Template, deployment: d}
	case len(r.statefulSets) == 1 && len(r.deployments) == 0:
		s := &r.statefulSets[0]
		w = &workload{kind: "StatefulSet", name: s.Name, replicas: s.Spec.Replicas, selector: s.Spec.Selector, template: &s.Spec.Template, statefulSet: s}
	default:
		t.Fatalf("want exactly one Deployment or StatefulSet, have %d and %d", len(r.deployments), len(r.statefulSets))
	}
	for i := range w.template.Spec.Containers {
		if c := &w.template.Spec.Containers[i]; c.Name == containerName {
			return w, c
		}
	}
	t.Fatalf("%s %s has no container %q", w.kind, w.name, containerName)
	return nil, nil
}

// podOrdinals lists the pods whose settings differ: the ordinals of a
// StatefulSet's pods, or -1 for a Deployment's pods (all alike).
func (r *rendered) podOrdinals(t *testing.T) []int {
	t.Helper()
	w, _ := r.workload(t)
	if w.kind != "StatefulSet" {
		return []int{-1}
	}
	if w.replicas == nil || *w.replicas < 1 {
		t.Fatalf("StatefulSet %s must set replicas (at least 1)", w.name)
	}
	out := make([]int, *w.replicas)
	for i := range out {
		out[i] = i
	}
	return out
}

func (r *rendered) configMap(name string) *corev1.ConfigMap {
	for i := range r.configMaps {
		if r.configMaps[i].Name == name {
			return &r.configMaps[i]
		}
	}
	return nil
}

// settingDefaults maps every setting to its default; secrets maps the
// settings marked Secret.
func settingDefaults() (defaults map[string]string, secrets map[string]bool) {
	defaults, secrets = map[string]string{}, map[string]bool{}
	for _, s := range config.Settings() {
		defaults[s.Key] = s.Default
		if s.Secret {
			secrets[s.Key] = true
		}
	}
	return defaults, secrets
}

// setting is the value every pod's container gets for key: from its env,
// else from the ConfigMaps it reads with envFrom (a later source wins, as in
// Kubernetes), else the default of config.Settings(). A value that differs
// between pods (the downward API's pod index) is an error here: see
// podSetting.
func (r *rendered) setting(t *testing.T, key string) string {
	t.Helper()
	return r.podSetting(t, key, -1)
}

// podIndexFieldPath is the downward API's path of a StatefulSet pod's
// ordinal (the label exists from Kubernetes 1.28).
var podIndexFieldPath = "metadata.labels['" + appsv1.PodIndexLabel + "']"

// podSetting is setting for the pod with the given ordinal of a
// StatefulSet, whose env may take its ordinal from the downward API (-1: a
// value the same in every pod).
func (r *rendered) podSetting(t *testing.T, key string, ordinal int) string {
	t.Helper()
	w, c := r.workload(t)
	for _, e := range c.Env {
		if e.Name != key {
			continue
		}
		if e.ValueFrom == nil {
			return e.Value
		}
		f := e.ValueFrom.FieldRef
		switch {
		case f == nil || f.FieldPath != podIndexFieldPath:
			t.Fatalf("%s is set with valueFrom %+v; the tests know plain values, ConfigMaps and the fieldRef %s", key, e.ValueFrom, podIndexFieldPath)
		case w.kind != "StatefulSet":
			t.Fatalf("%s comes from the label %s, which only a StatefulSet's pods have, not a %s's", key, appsv1.PodIndexLabel, w.kind)
		case ordinal < 0:
			t.Fatalf("%s differs between pods (the pod index): read it with podSetting", key)
		}
		return strconv.Itoa(ordinal)
	}
	value, found := "", false
	for _, ef := range c.EnvFrom {
		if ef.ConfigMapRef == nil {
			continue
		}
		cm := r.configMap(ef.ConfigMapRef.Name)
		if cm == nil {
			t.Fatalf("envFrom names ConfigMap %q, which is not rendered", ef.ConfigMapRef.Name)
		}
		if v, ok := cm.Data[key]; ok {
			value, found = v, true
		}
	}
	if found {
		return value
	}
	defaults, _ := settingDefaults()
	d, ok := defaults[key]
	if !ok {
		t.Fatalf("%s is not a setting of config.Settings()", key)
	}
	return d
}

// httpPort is the port of HTTP_ADDR.
func (r *rendered) httpPort(t *testing.T) int32 {
	t.Helper()
	addr := r.setting(t, "HTTP_ADDR")
	if addr == "" {
		t.Fatal("HTTP_ADDR is empty: the health and metrics server is off, but the probes need it")
	}
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("HTTP_ADDR=%q: %v", addr, err)
	}
	n, err := strconv.ParseInt(p, 10, 32)
	if err != nil {
		t.Fatalf("HTTP_ADDR=%q: the port must be a number: %v", addr, err)
	}
	return int32(n)
}

func (r *rendered) duration(t *testing.T, key string) time.Duration {
	t.Helper()
	v := r.setting(t, key)
	d, err := time.ParseDuration(v)
	if err != nil {
		t.Fatalf("%s=%q: %v", key, v, err)
	}
	return d
}

func (r *rendered) has(component string) bool { return slices.Contains(r.components, component) }

// envFile reads a kustomize env file: active KEY=value lines, and the keys
// of commented-out `# KEY=value` lines (examples for the reader).
func envFile(t *testing.T, path string) (active map[string]string, commented map[string]string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	active, commented = map[string]string{}, map[string]string{}
	reCommented := regexp.MustCompile(`^#\s*([A-Z][A-Z0-9_]*)=(.*)$`)
	for line := range strings.Lines(string(b)) {
		line = strings.TrimSpace(line)
		switch {
		case line == "":
		case strings.HasPrefix(line, "#"):
			if m := reCommented.FindStringSubmatch(line); m != nil {
				commented[m[1]] = m[2]
			}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("%s: line %q is not KEY=value", path, line)
			}
			active[k] = v
		}
	}
	return active, commented
}

// TestRenderAndDecodeStrictly renders every kustomization with kustomize as
// a library and decodes each object strictly (render does both); it also
// pins which kinds the base and each component add (or replace).
func TestRenderAndDecodeStrictly(t *testing.T) {
	baseKinds := []string{"ConfigMap", "Deployment", "NetworkPolicy", "PodDisruptionBudget", "Service", "ServiceAccount"}
	componentKinds := map[string][]string{
		"servicemonitor":     {"ServiceMonitor"},
		"prometheusrule":     {"PrometheusRule"},
		"grafana-dashboard":  {"ConfigMap"},
		"keda":               {"ScaledObject"},
		"nack":               {"Consumer", "KeyValue", "Stream"},
		"partitioned":        {}, // changes the Deployment and the ScaledObject
		"partitioned-static": {"StatefulSet"},
	}
	// replacedKinds: the base's kinds a component turns into another.
	replacedKinds := map[string][]string{
		"partitioned-static": {"Deployment"}, // it becomes the StatefulSet
	}
	names, err := componentNames()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if _, ok := componentKinds[n]; !ok {
			t.Errorf("component %s is new: say in TestRenderAndDecodeStrictly which kinds it adds", n)
		}
	}
	forEachCase(t, func(t *testing.T, r *rendered) {
		if len(r.objects) == 0 {
			t.Fatal("rendered nothing")
		}
		want := slices.Clone(baseKinds)
		for _, c := range r.components {
			want = slices.DeleteFunc(want, func(k string) bool { return slices.Contains(replacedKinds[c], k) })
		}
		for _, c := range r.components {
			want = append(want, componentKinds[c]...)
		}
		slices.Sort(want)
		want = slices.Compact(want)
		var have []string
		seen := map[string]bool{}
		for _, o := range r.objects {
			have = append(have, o.kind)
			if seen[o.String()] {
				t.Errorf("%s rendered twice", o)
			}
			seen[o.String()] = true
		}
		slices.Sort(have)
		have = slices.Compact(have)
		if !slices.Equal(have, want) {
			t.Errorf("kinds rendered: %v, want %v", have, want)
		}
		// The credentials are never part of a kustomization.
		if len(r.secrets) != 0 {
			t.Errorf("a Secret is rendered (%s): credentials must be created by hand, see secret.example.yaml", r.secrets[0].Name)
		}
	})
}

// TestKustomizationFilesAreStrict decodes every kustomization.yaml strictly
// into kustomize's own type, and checks the example overlay uses the base
// and every component.
func TestKustomizationFilesAreStrict(t *testing.T) {
	var files []string
	err := filepath.WalkDir(".", func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Name() == "kustomization.yaml" {
			files = append(files, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	names, err := componentNames()
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 2+len(variantOverlays)+len(names) {
		t.Errorf("found kustomizations %v, want the base, the example overlay, the overlays %v and %d components", files, slices.Sorted(maps.Keys(variantOverlays)), len(names))
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var k types.Kustomization
		if err := yaml.UnmarshalStrict(b, &k); err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		isComponent := strings.HasPrefix(f, "components"+string(filepath.Separator))
		switch {
		case isComponent && k.Kind != types.ComponentKind:
			t.Errorf("%s: kind %q, want %q", f, k.Kind, types.ComponentKind)
		case !isComponent && k.Kind != types.KustomizationKind:
			t.Errorf("%s: kind %q, want %q", f, k.Kind, types.KustomizationKind)
		}
		if f == filepath.Join("overlays", "example", "kustomization.yaml") {
			if !slices.Contains(k.Resources, "../../base") {
				t.Errorf("%s does not use ../../base", f)
			}
			for _, n := range names {
				_, variant := variantOverlays[n]
				if uses := slices.Contains(k.Components, "../../components/"+n); uses == variant {
					t.Errorf("%s: uses component %s = %v, want %v (the example shows every add-on, and no variant)", f, n, uses, !variant)
				}
			}
		}
		for v, components := range variantOverlays {
			if f != filepath.Join("overlays", v, "kustomization.yaml") {
				continue
			}
			var want []string
			for _, n := range components {
				want = append(want, "../../components/"+n)
			}
			if !slices.Equal(k.Components, want) || !slices.Contains(k.Resources, "../../base") {
				t.Errorf("%s uses %v %v, want ../../base and %v (in this order)", f, k.Resources, k.Components, want)
			}
		}
	}
}

// TestKubectlKustomizeAgrees renders every kustomization with `kubectl
// kustomize` too, when kubectl is installed, and compares the objects.
func TestKubectlKustomizeAgrees(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl is not on PATH")
	}
	forEachCase(t, func(t *testing.T, r *rendered) {
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		var stdout, stderr bytes.Buffer
		cmd := exec.CommandContext(ctx, kubectl, "kustomize", r.dir)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("kubectl kustomize %s: %v\n%s", r.dir, err, stderr.String())
		}
		var have []string
		for _, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(stdout.String(), -1) {
			if strings.TrimSpace(doc) == "" {
				continue
			}
			var o struct {
				APIVersion string `json:"apiVersion"`
				Kind       string `json:"kind"`
				Metadata   struct {
					Name string `json:"name"`
				} `json:"metadata"`
			}
			if err := yaml.Unmarshal([]byte(doc), &o); err != nil {
				t.Fatalf("kubectl kustomize output: %v", err)
			}
			have = append(have, object{apiVersion: o.APIVersion, kind: o.Kind, name: o.Metadata.Name}.String())
		}
		var want []string
		for _, o := range r.objects {
			want = append(want, o.String())
		}
		slices.Sort(have)
		slices.Sort(want)
		if len(have) != len(want) {
			t.Errorf("kubectl kustomize rendered %d objects, kustomize as a library %d", len(have), len(want))
		}
		if !slices.Equal(have, want) {
			t.Errorf("kubectl kustomize rendered\n  %v\nkustomize as a library\n  %v", have, want)
		}
	})
}

// TestReadmeNamesEveryComponent keeps deploy/README.md in step with the
// components.
func TestReadmeNamesEveryComponent(t *testing.T) {
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	names, err := componentNames()
	if err != nil {
		t.Fatal(err)
	}
	mentions := slices.Concat(names, []string{"secret.example.yaml", "overlays/example", "docs/scaling.md"})
	for v := range variantOverlays {
		mentions = append(mentions, "overlays/"+v)
	}
	for _, n := range mentions {
		if !bytes.Contains(b, []byte(n)) {
			t.Errorf("deploy/README.md does not mention %s", n)
		}
	}
}
