package deploy

import (
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/mautic-sync/mautic-sync/config"
)

// resolvePort turns a port given by number or by name into the number of
// the container port it means.
func resolvePort(t *testing.T, p intstr.IntOrString, c *corev1.Container) int32 {
	t.Helper()
	if p.Type == intstr.Int {
		return p.IntVal
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return cp.ContainerPort
		}
	}
	t.Fatalf("port %q is not a named port of container %s", p.StrVal, c.Name)
	return 0
}

// selects reports whether sel matches the pod labels.
func selects(t *testing.T, sel *metav1.LabelSelector, podLabels map[string]string) bool {
	t.Helper()
	if sel == nil {
		return false
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		t.Fatalf("selector %v: %v", sel, err)
	}
	return !s.Empty() && s.Matches(labels.Set(podLabels))
}

func TestProbesUseRealPathsOnHTTPAddrPort(t *testing.T) {
	forEachCase(t, func(t *testing.T, r *rendered) {
		_, c := r.workload(t)
		port := r.httpPort(t)
		found := false
		for _, cp := range c.Ports {
			if cp.ContainerPort == port {
				found = true
				if cp.Protocol != "" && cp.Protocol != corev1.ProtocolTCP {
					t.Errorf("container port %d is %s, want TCP", port, cp.Protocol)
				}
			}
		}
		if !found {
			t.Fatalf("no container port %d, the port of HTTP_ADDR", port)
		}
		probes := []struct {
			name  string
			probe *corev1.Probe
			path  string
		}{
			{"livenessProbe", c.LivenessProbe, "/healthz"},
			{"readinessProbe", c.ReadinessProbe, "/readyz"},
			{"startupProbe", c.StartupProbe, "/healthz"},
		}
		for _, p := range probes {
			if p.probe == nil {
				if p.name != "startupProbe" {
					t.Errorf("%s is missing", p.name)
				}
				continue
			}
			g := p.probe.HTTPGet
			if g == nil {
				t.Errorf("%s is not an HTTP GET", p.name)
				continue
			}
			if g.Path != p.path {
				t.Errorf("%s path %q, want %q", p.name, g.Path, p.path)
			}
			if got := resolvePort(t, g.Port, c); got != port {
				t.Errorf("%s port %d, want %d (HTTP_ADDR)", p.name, got, port)
			}
			if g.Scheme != "" && g.Scheme != corev1.URISchemeHTTP {
				t.Errorf("%s scheme %s: mautic-sync serves plain HTTP", p.name, g.Scheme)
			}
		}
	})
}

// TestEnvNamesAreSettings: every variable the manifests give the container
// is one that config.Settings() knows, and the container reads its settings
// from the ConfigMap and its credentials from the Secret.
func TestEnvNamesAreSettings(t *testing.T) {
	defaults, secrets := settingDefaults()
	forEachCase(t, func(t *testing.T, r *rendered) {
		w, c := r.workload(t)
		for _, e := range c.Env {
			if _, ok := defaults[e.Name]; !ok {
				t.Errorf("env %s is not a setting of config.Settings()", e.Name)
			}
			if secrets[e.Name] && (e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil) {
				t.Errorf("env %s is a secret: take it from a Secret, not a value", e.Name)
			}
		}
		var cms, secretRefs int
		for _, ef := range c.EnvFrom {
			if ef.Prefix != "" {
				t.Errorf("envFrom with prefix %q: the settings have no prefix", ef.Prefix)
			}
			switch {
			case ef.ConfigMapRef != nil:
				cms++
				cm := r.configMap(ef.ConfigMapRef.Name)
				if cm == nil {
					t.Errorf("envFrom names ConfigMap %q, which is not rendered", ef.ConfigMapRef.Name)
					continue
				}
				if len(cm.BinaryData) != 0 {
					t.Errorf("ConfigMap %s has binaryData, which envFrom ignores", cm.Name)
				}
				for k := range cm.Data {
					if _, ok := defaults[k]; !ok {
						t.Errorf("ConfigMap %s: %s is not a setting of config.Settings()", cm.Name, k)
					}
				}
			case ef.SecretRef != nil:
				secretRefs++
				if ef.SecretRef.Name != credentialsSecret {
					t.Errorf("envFrom names Secret %q, want %q (the one secret.example.yaml shows)", ef.SecretRef.Name, credentialsSecret)
				}
			}
		}
		if cms != 1 || secretRefs != 1 {
			t.Errorf("envFrom has %d ConfigMaps and %d Secrets, want one of each", cms, secretRefs)
		}
		for _, key := range []string{"NATS_URL", "MAUTIC_URL"} {
			if r.setting(t, key) == "" {
				t.Errorf("%s is required by `mautic-sync run` but empty", key)
			}
		}
		if len(w.template.Spec.Containers) != 1 || len(w.template.Spec.InitContainers) != 0 {
			t.Errorf("want exactly the container %s", containerName)
		}
		if len(c.Args) != 1 || c.Args[0] != "run" || len(c.Command) != 0 {
			t.Errorf("command %v args %v: want the image's entrypoint with args [run]", c.Command, c.Args)
		}
	})

	// The env file of the base, including its commented-out examples.
	active, commented := envFile(t, "base/config.env")
	for _, m := range []map[string]string{active, commented} {
		for k := range m {
			if _, ok := defaults[k]; !ok {
				t.Errorf("base/config.env: %s is not a setting of config.Settings()", k)
			}
			if secrets[k] {
				t.Errorf("base/config.env: %s is a secret and must not be in the ConfigMap, not even as an example", k)
			}
		}
	}
}

// TestNoSecretInAnyConfigMap: no ConfigMap of any kustomization has a key
// that config.Settings() marks Secret.
func TestNoSecretInAnyConfigMap(t *testing.T) {
	_, secrets := settingDefaults()
	if len(secrets) == 0 {
		t.Fatal("config.Settings() marks no setting Secret")
	}
	forEachCase(t, func(t *testing.T, r *rendered) {
		for _, cm := range r.configMaps {
			for k := range cm.Data {
				if secrets[k] {
					t.Errorf("ConfigMap %s has the secret %s: put it in the Secret %s", cm.Name, k, credentialsSecret)
				}
			}
			for k := range cm.BinaryData {
				if secrets[k] {
					t.Errorf("ConfigMap %s has the secret %s in binaryData", cm.Name, k)
				}
			}
		}
	})
}

// TestSecretExample: secret.example.yaml is a valid Secret with the name the
// Deployment reads, only setting names as keys, placeholder values, and
// every secret setting shown (active or commented out).
func TestSecretExample(t *testing.T) {
	defaults, secrets := settingDefaults()
	b, err := os.ReadFile("base/secret.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var s corev1.Secret
	if err := yaml.UnmarshalStrict(b, &s); err != nil {
		t.Fatalf("secret.example.yaml: %v", err)
	}
	if s.APIVersion != "v1" || s.Kind != "Secret" {
		t.Errorf("secret.example.yaml is %s %s, want v1 Secret", s.APIVersion, s.Kind)
	}
	if s.Name != credentialsSecret {
		t.Errorf("secret.example.yaml names %q, want %q", s.Name, credentialsSecret)
	}
	if s.Namespace != "" {
		t.Errorf("secret.example.yaml sets namespace %q; leave it to `kubectl apply -n`", s.Namespace)
	}
	keys := map[string]bool{}
	for k, v := range s.StringData {
		keys[k] = true
		if v != "" && v != "replace-me" {
			t.Errorf("secret.example.yaml: %s=%q; use the placeholder replace-me, never a real value", k, v)
		}
	}
	for k := range s.Data {
		keys[k] = true
		t.Errorf("secret.example.yaml: %s is in data; use stringData with a placeholder", k)
	}
	reCommented := regexp.MustCompile(`(?m)^\s*#\s*([A-Z][A-Z0-9_]*):`)
	for _, m := range reCommented.FindAllStringSubmatch(string(b), -1) {
		keys[m[1]] = true
	}
	for k := range keys {
		if _, ok := defaults[k]; !ok {
			t.Errorf("secret.example.yaml: %s is not a setting of config.Settings()", k)
		}
	}
	for k := range secrets {
		if !keys[k] {
			t.Errorf("secret.example.yaml does not show the secret setting %s", k)
		}
	}
}

// TestGracePeriodCoversDrain: the kubelet waits longer than the worker's
// drain plus its flushing before it kills the pod.
func TestGracePeriodCoversDrain(t *testing.T) {
	forEachCase(t, func(t *testing.T, r *rendered) {
		w, _ := r.workload(t)
		drain := r.duration(t, "WORKER_DRAIN_TIMEOUT")
		g := w.template.Spec.TerminationGracePeriodSeconds
		if g == nil {
			t.Fatal("terminationGracePeriodSeconds is not set (the default 30s does not cover the drain)")
		}
		if grace := time.Duration(*g) * time.Second; grace <= drain+flushAllowance {
			t.Errorf("terminationGracePeriodSeconds %v must exceed WORKER_DRAIN_TIMEOUT %v + %v", grace, drain, flushAllowance)
		}
	})
}

// TestPodIsLockedDown: service links off, no service-account token,
// non-root, read-only root, no capabilities, RuntimeDefault seccomp, only
// emptyDir writable, requests and limits set.
func TestPodIsLockedDown(t *testing.T) {
	forEachCase(t, func(t *testing.T, r *rendered) {
		w, c := r.workload(t)
		ps := w.template.Spec
		if ps.EnableServiceLinks == nil || *ps.EnableServiceLinks {
			t.Error("enableServiceLinks must be false")
		}
		if ps.AutomountServiceAccountToken == nil || *ps.AutomountServiceAccountToken {
			t.Error("the pod must set automountServiceAccountToken: false")
		}
		if ps.HostNetwork || ps.HostPID || ps.HostIPC {
			t.Error("the pod must not share host namespaces")
		}
		if len(r.serviceAccounts) != 1 || r.serviceAccounts[0].Name != ps.ServiceAccountName {
			t.Errorf("serviceAccountName %q must name the one rendered ServiceAccount", ps.ServiceAccountName)
		} else if sa := r.serviceAccounts[0]; sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
			t.Errorf("ServiceAccount %s must set automountServiceAccountToken: false", sa.Name)
		}

		psc := ps.SecurityContext
		if psc == nil {
			t.Fatal("the pod has no securityContext")
		}
		csc := c.SecurityContext
		if csc == nil {
			t.Fatal("the container has no securityContext")
		}
		nonRoot := (csc.RunAsNonRoot != nil && *csc.RunAsNonRoot) || (csc.RunAsNonRoot == nil && psc.RunAsNonRoot != nil && *psc.RunAsNonRoot)
		if !nonRoot {
			t.Error("runAsNonRoot must be true")
		}
		for _, uid := range []*int64{psc.RunAsUser, csc.RunAsUser} {
			if uid != nil && *uid == 0 {
				t.Error("runAsUser 0 is root")
			}
		}
		seccomp := csc.SeccompProfile
		if seccomp == nil {
			seccomp = psc.SeccompProfile
		}
		if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Error("seccompProfile must be RuntimeDefault")
		}
		if csc.ReadOnlyRootFilesystem == nil || !*csc.ReadOnlyRootFilesystem {
			t.Error("readOnlyRootFilesystem must be true")
		}
		if csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation {
			t.Error("allowPrivilegeEscalation must be false")
		}
		if csc.Privileged != nil && *csc.Privileged {
			t.Error("the container must not be privileged")
		}
		if csc.Capabilities == nil || len(csc.Capabilities.Drop) != 1 || csc.Capabilities.Drop[0] != "ALL" || len(csc.Capabilities.Add) != 0 {
			t.Error("capabilities must drop ALL and add none")
		}

		volumes := map[string]corev1.Volume{}
		for _, v := range ps.Volumes {
			volumes[v.Name] = v
		}
		for _, m := range c.VolumeMounts {
			v, ok := volumes[m.Name]
			switch {
			case !ok:
				t.Errorf("volumeMount %s has no volume", m.Name)
			case v.EmptyDir == nil && !m.ReadOnly:
				t.Errorf("volumeMount %s at %s is writable but not an emptyDir", m.Name, m.MountPath)
			case v.EmptyDir != nil && v.EmptyDir.SizeLimit == nil:
				t.Errorf("emptyDir %s has no sizeLimit", m.Name)
			case v.Secret != nil && (v.Secret.Optional == nil || !*v.Secret.Optional):
				t.Errorf("Secret volume %s must be optional: the pod has to start without it", m.Name)
			case v.HostPath != nil:
				t.Errorf("volume %s is a hostPath", m.Name)
			}
		}

		for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			req, okReq := c.Resources.Requests[name]
			lim, okLim := c.Resources.Limits[name]
			if !okReq || !okLim {
				t.Errorf("%s needs both a request and a limit", name)
				continue
			}
			if req.Cmp(lim) > 0 || req.Cmp(resource.Quantity{}) <= 0 {
				t.Errorf("%s request %s must be above 0 and at most the limit %s", name, req.String(), lim.String())
			}
		}
	})
}

// TestSingleReplicaUnlessPartitioned: one replica (or none set, when an HPA
// owns the count), replaced with Recreate so that two workers never
// overlap; in partitioned mode (PARTITIONS set) up to one replica per
// partition, rolled out new pod first (a partition moves to the new pod
// once the old one has finished what it holds). A StatefulSet runs the
// static partitioned mode (TestStaticPartitionsStatefulSet).
func TestSingleReplicaUnlessPartitioned(t *testing.T) {
	forEachCase(t, func(t *testing.T, r *rendered) {
		w, _ := r.workload(t)
		partitions, err := strconv.Atoi(r.setting(t, "PARTITIONS"))
		if err != nil {
			t.Fatalf("PARTITIONS: %v", err)
		}
		if len(r.scaledObjects) > 0 && w.replicas != nil {
			t.Errorf("with a ScaledObject the %s must not set replicas (the HPA owns them)", w.kind)
		}
		if !selects(t, w.selector, w.template.Labels) {
			t.Errorf("the %s's selector does not match its pod labels", w.kind)
		}
		if partitions > 0 && w.replicas != nil && int(*w.replicas) > partitions {
			t.Errorf("replicas %d above PARTITIONS %d: the extra ones would only stand by", *w.replicas, partitions)
		}
		if w.kind == "StatefulSet" {
			if partitions == 0 {
				t.Error("a StatefulSet without PARTITIONS: one unpartitioned replica is a Deployment with Recreate")
			}
			return
		}
		d := w.deployment
		if partitions == 0 {
			if d.Spec.Replicas != nil && *d.Spec.Replicas != 1 {
				t.Errorf("replicas %d: mautic-sync runs as one replica unless partitioned", *d.Spec.Replicas)
			}
			if d.Spec.Strategy.Type != "Recreate" {
				t.Errorf("strategy %q: use Recreate so that a rollout never runs two workers at once", d.Spec.Strategy.Type)
			}
			return
		}
		if mode := r.setting(t, "PARTITION_MODE"); mode != "elastic" {
			t.Errorf("PARTITION_MODE=%q in a Deployment: static mode needs a StatefulSet's stable pod names", mode)
		}
		ru := d.Spec.Strategy.RollingUpdate
		if d.Spec.Strategy.Type != "RollingUpdate" || ru == nil || ru.MaxUnavailable == nil || ru.MaxUnavailable.IntValue() != 0 {
			t.Errorf("strategy %+v: partitioned, roll out with the new pod first (RollingUpdate, maxUnavailable 0)", d.Spec.Strategy)
		}
	})
}

// loadSettings runs the settings the container of the pod with the given
// ordinal gets (see podSetting; -1 for a Deployment's pods), with
// credentials as the Secret would add them, through the config package's
// parsing and validation, as `mautic-sync run` does at start. It sets the
// environment for the rest of t.
func (r *rendered) loadSettings(t *testing.T, ordinal int) (config.Config, error) {
	t.Helper()
	defaults, _ := settingDefaults()
	env := map[string]string{"MAUTIC_USERNAME": "api", "MAUTIC_PASSWORD": "from-the-secret"}
	for k := range defaults {
		if _, set := env[k]; !set {
			env[k] = r.podSetting(t, k, ordinal)
		}
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
	return config.Load()
}

// TestSettingsValidate: the settings every kustomization gives the
// container of each pod (with credentials as the Secret would add them)
// pass the service's own validation, so that no overlay ships a combination
// it refuses at start (e.g. PARTITIONS with several STREAM_SUBJECTS).
func TestSettingsValidate(t *testing.T) {
	forEachCase(t, func(t *testing.T, r *rendered) {
		for _, ordinal := range r.podOrdinals(t) {
			if _, err := r.loadSettings(t, ordinal); err != nil {
				pod := ""
				if ordinal >= 0 {
					pod = fmt.Sprintf(" of pod %d", ordinal)
				}
				t.Errorf("the rendered settings%s do not validate:\n%v", pod, err)
			}
		}
	})
}

func TestServiceAndDisruptionBudget(t *testing.T) {
	forEachCase(t, func(t *testing.T, r *rendered) {
		w, c := r.workload(t)
		podLabels := w.template.Labels
		port := r.httpPort(t)
		if len(r.services) != 1 {
			t.Fatalf("want one Service (metrics), have %d", len(r.services))
		}
		s := r.services[0]
		if !selects(t, &metav1.LabelSelector{MatchLabels: s.Spec.Selector}, podLabels) {
			t.Error("the Service's selector does not match the pods")
		}
		if len(s.Spec.Ports) != 1 {
			t.Fatalf("the Service has %d ports, want the metrics port only", len(s.Spec.Ports))
		}
		if p := s.Spec.Ports[0]; resolvePort(t, p.TargetPort, c) != port || p.Name == "" {
			t.Errorf("the Service port %q must be named and target %d (HTTP_ADDR)", p.Name, port)
		}
		if !s.Spec.PublishNotReadyAddresses {
			t.Error("the Service must publish not-ready addresses: metrics are needed most while paused")
		}

		if len(r.pdbs) != 1 {
			t.Fatalf("want one PodDisruptionBudget, have %d", len(r.pdbs))
		}
		pdb := r.pdbs[0]
		if !selects(t, pdb.Spec.Selector, podLabels) {
			t.Error("the PodDisruptionBudget's selector does not match the pods")
		}
		if pdb.Spec.MinAvailable != nil {
			t.Error("use maxUnavailable: with one replica a minAvailable blocks node drains for good")
		}
		if m := pdb.Spec.MaxUnavailable; m == nil || m.IntValue() < 1 {
			t.Error("maxUnavailable must allow one pod to go")
		}
	})
}

type portProto struct {
	port  int32
	proto corev1.Protocol
}

func (p portProto) String() string { return fmt.Sprintf("%d/%s", p.port, p.proto) }

// urlPorts gives the ports of a comma-separated list of URLs.
func urlPorts(t *testing.T, list string, defaults map[string]int32) []int32 {
	t.Helper()
	var out []int32
	for _, s := range strings.Split(list, ",") {
		u, err := url.Parse(strings.TrimSpace(s))
		if err != nil || u.Host == "" {
			t.Fatalf("URL %q: %v", s, err)
		}
		if p := u.Port(); p != "" {
			n, err := strconv.ParseInt(p, 10, 32)
			if err != nil {
				t.Fatalf("URL %q: %v", s, err)
			}
			out = append(out, int32(n))
			continue
		}
		d, ok := defaults[u.Scheme]
		if !ok {
			t.Fatalf("URL %q: unknown scheme", s)
		}
		out = append(out, d)
	}
	return out
}

// TestNetworkPolicy: ingress only on the metrics port; egress only to NATS
// (4222), Mautic (443) and DNS (53), and those ports do match NATS_URL and
// MAUTIC_URL.
func TestNetworkPolicy(t *testing.T) {
	allowed := map[portProto]string{
		{4222, corev1.ProtocolTCP}: "NATS",
		{443, corev1.ProtocolTCP}:  "Mautic",
		{53, corev1.ProtocolUDP}:   "DNS",
		{53, corev1.ProtocolTCP}:   "DNS",
	}
	forEachCase(t, func(t *testing.T, r *rendered) {
		w, c := r.workload(t)
		metricsPort := r.httpPort(t)
		if len(r.networkPolicies) != 1 {
			t.Fatalf("want one NetworkPolicy, have %d", len(r.networkPolicies))
		}
		np := r.networkPolicies[0]
		if !selects(t, &np.Spec.PodSelector, w.template.Labels) {
			t.Fatal("the NetworkPolicy does not select the pods")
		}
		types := map[string]bool{}
		for _, pt := range np.Spec.PolicyTypes {
			types[string(pt)] = true
		}
		if !types["Ingress"] || !types["Egress"] {
			t.Errorf("policyTypes %v: want Ingress and Egress", np.Spec.PolicyTypes)
		}
		proto := func(p *corev1.Protocol) corev1.Protocol {
			if p == nil {
				return corev1.ProtocolTCP
			}
			return *p
		}
		for i, rule := range np.Spec.Ingress {
			if len(rule.Ports) == 0 {
				t.Errorf("ingress rule %d allows every port", i)
			}
			for _, p := range rule.Ports {
				if p.Port == nil || p.EndPort != nil || resolvePort(t, *p.Port, c) != metricsPort || proto(p.Protocol) != corev1.ProtocolTCP {
					t.Errorf("ingress rule %d allows %v; only %d/TCP (metrics) may be open", i, p.Port, metricsPort)
				}
			}
		}
		egress := map[portProto]bool{}
		for i, rule := range np.Spec.Egress {
			if len(rule.Ports) == 0 {
				t.Errorf("egress rule %d allows every port", i)
			}
			for _, p := range rule.Ports {
				if p.Port == nil || p.EndPort != nil {
					t.Errorf("egress rule %d allows a port range", i)
					continue
				}
				pp := portProto{resolvePort(t, *p.Port, c), proto(p.Protocol)}
				if _, ok := allowed[pp]; !ok {
					t.Errorf("egress rule %d allows %s; only NATS, Mautic and DNS may be reached", i, pp)
				}
				egress[pp] = true
			}
		}
		// 53/TCP is optional (DNS over TCP for large answers); the rest is needed.
		for _, pp := range []portProto{{4222, corev1.ProtocolTCP}, {443, corev1.ProtocolTCP}, {53, corev1.ProtocolUDP}} {
			if !egress[pp] {
				t.Errorf("egress to %s (%s) is not allowed", pp, allowed[pp])
			}
		}
		for _, p := range urlPorts(t, r.setting(t, "NATS_URL"), map[string]int32{"nats": 4222, "tls": 4222}) {
			if !egress[portProto{p, corev1.ProtocolTCP}] {
				t.Errorf("NATS_URL uses port %d, which the NetworkPolicy does not allow", p)
			}
		}
		for _, p := range urlPorts(t, r.setting(t, "MAUTIC_URL"), map[string]int32{"https": 443, "http": 80}) {
			if !egress[portProto{p, corev1.ProtocolTCP}] {
				t.Errorf("MAUTIC_URL uses port %d, which the NetworkPolicy does not allow", p)
			}
		}
	})
}

// TestNATSFilesAreMountedFromTheSecret: the file settings shown in
// config.env point into the mount of the optional NATS Secret.
func TestNATSFilesAreMountedFromTheSecret(t *testing.T) {
	r := render(t, cases[0])
	w, c := r.workload(t)
	var mountPath string
	for _, m := range c.VolumeMounts {
		for _, v := range w.template.Spec.Volumes {
			if v.Name == m.Name && v.Secret != nil {
				mountPath = m.MountPath
			}
		}
	}
	if mountPath == "" {
		t.Fatal("no Secret is mounted for the NATS .creds, nkey and TLS files")
	}
	active, commented := envFile(t, "base/config.env")
	n := 0
	for _, m := range []map[string]string{active, commented} {
		for k, v := range m {
			if strings.HasPrefix(k, "NATS_") && strings.HasSuffix(k, "_FILE") {
				n++
				if !strings.HasPrefix(v, mountPath+"/") {
					t.Errorf("config.env: %s=%s is not under the Secret's mount %s", k, v, mountPath)
				}
			}
		}
	}
	if n == 0 {
		t.Error("config.env shows none of the NATS_*_FILE settings")
	}
}
