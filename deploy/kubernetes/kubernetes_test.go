package kubernetes

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/kustomize/api/krusty"
	kustomize "sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/mimihub/mimi-hub/internal/freeport"
	"github.com/mimihub/mimi-hub/internal/systemtest"
	"github.com/mimihub/mimi-hub/internal/testutil"
)

// decodeStrict decodes one manifest into the k8s.io/api type of its kind:
// an unknown kind, an unknown or misspelt field or a duplicate key fails.
func decodeStrict(doc []byte) (any, error) {
	var head struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if err := yaml.Unmarshal(doc, &head); err != nil {
		return nil, err
	}
	var obj any
	switch head.APIVersion + " " + head.Kind {
	case "apps/v1 StatefulSet":
		obj = &appsv1.StatefulSet{}
	case "v1 Service":
		obj = &corev1.Service{}
	case "v1 Secret":
		obj = &corev1.Secret{}
	case "v1 ConfigMap":
		obj = &corev1.ConfigMap{}
	case "policy/v1 PodDisruptionBudget":
		obj = &policyv1.PodDisruptionBudget{}
	case "networking.k8s.io/v1 NetworkPolicy":
		obj = &networkingv1.NetworkPolicy{}
	case "kustomize.config.k8s.io/v1beta1 Kustomization":
		obj = &kustomize.Kustomization{}
	default:
		return nil, fmt.Errorf("kind %q of %q: not one this test knows", head.Kind, head.APIVersion)
	}
	if err := yaml.UnmarshalStrict(doc, obj); err != nil {
		return nil, fmt.Errorf("%s: %w", head.Kind, err)
	}
	return obj, nil
}

var docSeparator = regexp.MustCompile(`(?m)^---\s*$`)

// splitDocs splits a multi-document YAML stream, dropping empty documents.
func splitDocs(b []byte) [][]byte {
	var out [][]byte
	for _, d := range docSeparator.Split(string(b), -1) {
		if strings.TrimSpace(stripComments(d)) != "" {
			out = append(out, []byte(d))
		}
	}
	return out
}

func stripComments(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(s, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// manifestFiles lists the YAML files of this directory.
func manifestFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	return files
}

// TestManifestsDecodeStrictly decodes every file as written.
func TestManifestsDecodeStrictly(t *testing.T) {
	for _, f := range manifestFiles(t) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		docs := splitDocs(b)
		if len(docs) == 0 {
			t.Errorf("%s: no document", f)
		}
		for i, d := range docs {
			if _, err := decodeStrict(d); err != nil {
				t.Errorf("%s document %d: %v", f, i+1, err)
			}
		}
	}
}

// TestStrictDecodingCatchesTypos: the decoder the other tests rely on
// refuses what Kubernetes would silently ignore or reject.
func TestStrictDecodingCatchesTypos(t *testing.T) {
	b, err := os.ReadFile("statefulset.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for name, mutate := range map[string]func(string) string{
		"misspelt field": func(s string) string { return strings.Replace(s, "  replicas: 3", "  replica: 3", 1) },
		"unknown field in a probe": func(s string) string {
			return strings.Replace(s, "              path: /readyz", "              path: /readyz\n              pathh: /x", 1)
		},
		"duplicate key": func(s string) string { return strings.Replace(s, "  replicas: 3", "  replicas: 3\n  replicas: 5", 1) },
		"wrong type":    func(s string) string { return strings.Replace(s, "  replicas: 3", "  replicas: three", 1) },
		"unknown kind":  func(s string) string { return strings.Replace(s, "kind: StatefulSet", "kind: StatefulSett", 1) },
	} {
		bad := mutate(string(b))
		if bad == string(b) {
			t.Fatalf("%s: the mutation changed nothing", name)
		}
		if _, err := decodeStrict([]byte(bad)); err == nil {
			t.Errorf("%s: decoded without error", name)
		}
	}
}

// built is the output of kustomize build, decoded strictly.
type built struct {
	sts        *appsv1.StatefulSet
	services   map[string]*corev1.Service
	secrets    map[string]*corev1.Secret
	configMaps map[string]*corev1.ConfigMap
	pdbs       []*policyv1.PodDisruptionBudget
	netpols    []*networkingv1.NetworkPolicy
	namespaces map[string]bool
}

// build copies this directory, makes development secrets with
// make-secrets.sh, and runs kustomize (its Go API, as kubectl -k does).
func build(t *testing.T) (*built, string) {
	t.Helper()
	testutil.RequireTools(t, ".ci/run installs it: apt-get install openssl", "openssl")
	dir := t.TempDir()
	for _, f := range append(manifestFiles(t), "make-secrets.sh") {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command(filepath.Join(dir, "make-secrets.sh"), "a.example", "3").CombinedOutput(); err != nil {
		t.Fatalf("make-secrets.sh: %v\n%s", err, out)
	}
	rm, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build: %v", err)
	}
	out, err := rm.AsYaml()
	if err != nil {
		t.Fatal(err)
	}
	b := &built{services: map[string]*corev1.Service{}, secrets: map[string]*corev1.Secret{},
		configMaps: map[string]*corev1.ConfigMap{}, namespaces: map[string]bool{}}
	for i, doc := range splitDocs(out) {
		obj, err := decodeStrict(doc)
		if err != nil {
			t.Fatalf("built document %d: %v\n%s", i+1, err, doc)
		}
		switch o := obj.(type) {
		case *appsv1.StatefulSet:
			if b.sts != nil {
				t.Fatal("two StatefulSets")
			}
			b.sts = o
			b.namespaces[o.Namespace] = true
		case *corev1.Service:
			b.services[o.Name] = o
			b.namespaces[o.Namespace] = true
		case *corev1.Secret:
			b.secrets[o.Name] = o
			b.namespaces[o.Namespace] = true
		case *corev1.ConfigMap:
			b.configMaps[o.Name] = o
			b.namespaces[o.Namespace] = true
		case *policyv1.PodDisruptionBudget:
			b.pdbs = append(b.pdbs, o)
			b.namespaces[o.Namespace] = true
		case *networkingv1.NetworkPolicy:
			b.netpols = append(b.netpols, o)
			b.namespaces[o.Namespace] = true
		default:
			t.Fatalf("built document %d: unexpected %T", i+1, obj)
		}
	}
	if b.sts == nil {
		t.Fatal("no StatefulSet")
	}
	return b, dir
}

func (b *built) container(t *testing.T) *corev1.Container {
	t.Helper()
	cs := b.sts.Spec.Template.Spec.Containers
	if len(cs) != 1 {
		t.Fatalf("%d containers, want 1", len(cs))
	}
	return &cs[0]
}

func envOf(c *corev1.Container, name string) (corev1.EnvVar, bool) {
	i := slices.IndexFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == name })
	if i < 0 {
		return corev1.EnvVar{}, false
	}
	return c.Env[i], true
}

// portOf returns the container port named name.
func portOf(c *corev1.Container, name string, proto corev1.Protocol) (int32, bool) {
	for _, p := range c.Ports {
		if p.Name == name && (p.Protocol == proto || p.Protocol == "" && proto == corev1.ProtocolTCP) {
			return p.ContainerPort, true
		}
	}
	return 0, false
}

func matches(selector map[string]string, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// TestKustomizeInvariants builds the kustomization and checks what a
// Raft cluster on Kubernetes needs.
func TestKustomizeInvariants(t *testing.T) {
	b, _ := build(t)
	sts := b.sts
	pod := &sts.Spec.Template.Spec
	c := b.container(t)
	labels := sts.Spec.Template.Labels
	if len(b.namespaces) != 1 || !b.namespaces["mimi"] {
		t.Errorf("namespaces %v, want everything in mimi", b.namespaces)
	}

	// Raft: an odd number of voters, started together, bootstrapping
	// exactly that many.
	replicas := int32(1)
	if sts.Spec.Replicas != nil {
		replicas = *sts.Spec.Replicas
	}
	if replicas < 3 || replicas%2 == 0 {
		t.Errorf("replicas %d: want an odd number, at least 3", replicas)
	}
	if sts.Spec.PodManagementPolicy != appsv1.ParallelPodManagement {
		t.Errorf("podManagementPolicy %q: a new cluster needs all its pods before any is ready", sts.Spec.PodManagementPolicy)
	}
	if !matches(sts.Spec.Selector.MatchLabels, labels) {
		t.Errorf("selector %v does not select the pod labels %v", sts.Spec.Selector.MatchLabels, labels)
	}
	env := b.resolveEnv(t, 0)
	if env["MIMI_HUB_BOOTSTRAP_EXPECT"] != strconv.Itoa(int(replicas)) {
		t.Errorf("MIMI_HUB_BOOTSTRAP_EXPECT %q, replicas %d", env["MIMI_HUB_BOOTSTRAP_EXPECT"], replicas)
	}
	if env["MIMI_HUB_NODE_ID"] != sts.Name+"-0" {
		t.Errorf("node ID %q: want the pod name", env["MIMI_HUB_NODE_ID"])
	}

	// Discovery: the headless service publishes every pod, ready or not,
	// under the name the nodes join and advertise.
	hl, ok := b.services[sts.Spec.ServiceName]
	switch {
	case !ok:
		t.Fatalf("serviceName %q: no such Service", sts.Spec.ServiceName)
	case hl.Spec.ClusterIP != corev1.ClusterIPNone:
		t.Errorf("Service %s is not headless", hl.Name)
	case !hl.Spec.PublishNotReadyAddresses:
		t.Errorf("Service %s hides not-ready pods: a new cluster's nodes could never find each other", hl.Name)
	case !matches(hl.Spec.Selector, labels):
		t.Errorf("Service %s does not select the pods", hl.Name)
	}
	gossipPort, _ := portOf(c, "gossip", corev1.ProtocolTCP)
	udpPort, _ := portOf(c, "gossip-udp", corev1.ProtocolUDP)
	raftPort, _ := portOf(c, "raft", corev1.ProtocolTCP)
	if gossipPort == 0 || gossipPort != udpPort || raftPort == 0 {
		t.Errorf("container ports: gossip %d/tcp %d/udp, raft %d", gossipPort, udpPort, raftPort)
	}
	wantJoin := fmt.Sprintf("dns:%s.mimi.svc:%d", hl.Name, gossipPort)
	if env["MIMI_HUB_JOIN"] != wantJoin {
		t.Errorf("MIMI_HUB_JOIN %q, want %q", env["MIMI_HUB_JOIN"], wantJoin)
	}
	wantRaft := fmt.Sprintf("%s-0.%s.mimi.svc:%d", sts.Name, hl.Name, raftPort)
	if env["MIMI_HUB_RAFT_ADVERTISE"] != wantRaft {
		t.Errorf("MIMI_HUB_RAFT_ADVERTISE %q, want the pod's stable name %q", env["MIMI_HUB_RAFT_ADVERTISE"], wantRaft)
	}
	for _, svc := range b.services {
		for _, p := range svc.Spec.Ports {
			proto := p.Protocol
			if proto == "" {
				proto = corev1.ProtocolTCP
			}
			if p.TargetPort.Type != intstr.String {
				t.Errorf("Service %s port %s: target a named container port", svc.Name, p.Name)
			} else if _, ok := portOf(c, p.TargetPort.StrVal, proto); !ok {
				t.Errorf("Service %s port %s: no container port %s/%s", svc.Name, p.Name, p.TargetPort.StrVal, proto)
			}
		}
	}
	for name, port := range map[string]string{"MIMI_HUB_OPS_ADDR": "ops", "MIMI_HUB_RAFT_ADDR": "raft", "MIMI_HUB_GOSSIP_ADDR": "gossip",
		"MIMI_HUB_CLIENT_ADDR": "client", "MIMI_HUB_FEDERATION_ADDR": "federation"} {
		_, p, err := net.SplitHostPort(env[name])
		want, _ := portOf(c, port, corev1.ProtocolTCP)
		if err != nil || p != strconv.Itoa(int(want)) {
			t.Errorf("%s %q does not listen on container port %s (%d)", name, env[name], port, want)
		}
	}

	// Probes: ready means /readyz; alive never does (losing quorum must
	// not restart every pod).
	probe := func(name string, p *corev1.Probe) string {
		if p == nil || p.HTTPGet == nil {
			t.Errorf("%s probe: want an HTTP GET", name)
			return ""
		}
		if p.HTTPGet.Port.StrVal != "ops" {
			t.Errorf("%s probe on port %v, want ops", name, p.HTTPGet.Port)
		}
		return p.HTTPGet.Path
	}
	if p := probe("readiness", c.ReadinessProbe); p != "/readyz" {
		t.Errorf("readiness probe on %q, want /readyz", p)
	}
	if p := probe("liveness", c.LivenessProbe); p != "/healthz" {
		t.Errorf("liveness probe on %q, want /healthz", p)
	}
	probe("startup", c.StartupProbe)

	// Resources and privileges.
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("resources %+v: want CPU and memory requests and a memory limit", c.Resources)
	}
	psc, sc := pod.SecurityContext, c.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser != 65532 || psc.FSGroup == nil {
		t.Errorf("pod security context %+v: want non-root uid 65532 (the image's) and an fsGroup for the volume", psc)
	}
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil ||
		*sc.AllowPrivilegeEscalation || sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("container security context %+v", sc)
	}
	if pod.EnableServiceLinks == nil || *pod.EnableServiceLinks {
		t.Error("enableServiceLinks: service links add MIMI_HUB_* variables of their own")
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Error("automountServiceAccountToken: the node never talks to the API server")
	}
	if g := pod.TerminationGracePeriodSeconds; g == nil || *g < 35 {
		t.Errorf("terminationGracePeriodSeconds %v: the shutdown takes up to 30 s", g)
	}

	// Storage: the claim template is mounted where the node keeps its data.
	if len(sts.Spec.VolumeClaimTemplates) != 1 {
		t.Fatalf("%d volume claim templates", len(sts.Spec.VolumeClaimTemplates))
	}
	claim := sts.Spec.VolumeClaimTemplates[0]
	if i := slices.IndexFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == claim.Name }); i < 0 || c.VolumeMounts[i].MountPath != env["MIMI_HUB_DATA"] {
		t.Errorf("claim %s is not mounted at MIMI_HUB_DATA %q", claim.Name, env["MIMI_HUB_DATA"])
	}

	// Disruptions: exactly one at a time, which keeps a quorum.
	if len(b.pdbs) != 1 {
		t.Fatalf("%d PodDisruptionBudgets", len(b.pdbs))
	}
	pdb := b.pdbs[0]
	if !matches(pdb.Spec.Selector.MatchLabels, labels) {
		t.Errorf("PodDisruptionBudget selects %v, not the pods", pdb.Spec.Selector.MatchLabels)
	}
	if pdb.Spec.MinAvailable != nil || pdb.Spec.MaxUnavailable == nil || *pdb.Spec.MaxUnavailable != intstr.FromInt32(1) {
		t.Errorf("PodDisruptionBudget %+v: want maxUnavailable 1 and nothing else", pdb.Spec)
	}
	if quorum := replicas/2 + 1; replicas-1 < quorum {
		t.Errorf("one disruption of %d leaves no quorum of %d", replicas, quorum)
	}

	// Every Secret and ConfigMap the pod uses exists, with the keys used;
	// every node has its cluster certificate.
	for _, v := range pod.Volumes {
		if v.Secret != nil {
			if _, ok := b.secrets[v.Secret.SecretName]; !ok {
				t.Errorf("volume %s: no Secret %s", v.Name, v.Secret.SecretName)
			}
		}
	}
	for _, ef := range c.EnvFrom {
		if ef.ConfigMapRef == nil {
			t.Errorf("envFrom %+v: only ConfigMaps expected", ef)
		} else if _, ok := b.configMaps[ef.ConfigMapRef.Name]; !ok {
			t.Errorf("envFrom: no ConfigMap %s", ef.ConfigMapRef.Name)
		}
	}
	for i := range replicas {
		files := b.podFiles(t, int(i))
		e := b.resolveEnv(t, int(i))
		for _, name := range []string{"MIMI_HUB_CERT", "MIMI_HUB_KEY", "MIMI_HUB_PEER_CA", "MIMI_HUB_CLUSTER_CA", "MIMI_HUB_CLUSTER_CERT", "MIMI_HUB_CLUSTER_KEY", "MIMI_HUB_GOSSIP_KEY_FILE"} {
			if _, ok := files[e[name]]; !ok {
				t.Errorf("pod %d: %s=%q is no file of a mounted Secret", i, name, e[name])
			}
		}
		if e["MIMI_HUB_ADMIN_TOKEN"] == "" {
			t.Errorf("pod %d: no admin token", i)
		}
	}

	// Every MIMI_HUB_* variable is one mimi-hub reads (a misspelt one
	// would be ignored).
	known := daemonVariables(t)
	for name := range env {
		if strings.HasPrefix(name, "MIMI_HUB_") && !known[name] {
			t.Errorf("%s is not a mimi-hub setting", name)
		}
	}

	// The network policy admits Raft and gossip only from the nodes.
	if len(b.netpols) != 1 || !matches(b.netpols[0].Spec.PodSelector.MatchLabels, labels) {
		t.Errorf("network policies %d: want one for the pods", len(b.netpols))
	}
	for _, rule := range b.netpols[0].Spec.Ingress {
		for _, p := range rule.Ports {
			if n := p.Port.StrVal; (n == "raft" || strings.HasPrefix(n, "gossip")) &&
				(len(rule.From) != 1 || rule.From[0].PodSelector == nil || !matches(rule.From[0].PodSelector.MatchLabels, labels)) {
				t.Errorf("port %s open to %+v", n, rule.From)
			}
		}
	}
}

var envRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// resolveEnv is the environment the kubelet gives pod ordinal i: the
// ConfigMaps of envFrom, then env in order with $(VAR) expanded, field
// references and secret keys filled in.
func (b *built) resolveEnv(t *testing.T, ordinal int) map[string]string {
	t.Helper()
	c := b.container(t)
	env := map[string]string{}
	for _, ef := range c.EnvFrom {
		if ef.ConfigMapRef != nil {
			for k, v := range b.configMaps[ef.ConfigMapRef.Name].Data {
				env[k] = v
			}
		}
	}
	fields := map[string]string{
		"metadata.name":      fmt.Sprintf("%s-%d", b.sts.Name, ordinal),
		"metadata.namespace": b.sts.Namespace,
		"status.podIP":       fmt.Sprintf("10.244.0.%d", 10+ordinal),
	}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = envRef.ReplaceAllStringFunc(e.Value, func(ref string) string {
				if v, ok := env[ref[2:len(ref)-1]]; ok {
					return v
				}
				t.Errorf("%s refers to %s, not defined before it", e.Name, ref)
				return ref
			})
		case e.ValueFrom.FieldRef != nil:
			v, ok := fields[e.ValueFrom.FieldRef.FieldPath]
			if !ok {
				t.Errorf("%s: field %s", e.Name, e.ValueFrom.FieldRef.FieldPath)
			}
			env[e.Name] = v
		case e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			s, ok := b.secrets[ref.Name]
			if !ok || s.Data[ref.Key] == nil {
				t.Errorf("%s: no key %s in Secret %s", e.Name, ref.Key, ref.Name)
			}
			if ok {
				env[e.Name] = string(s.Data[ref.Key])
			}
		default:
			t.Errorf("%s: unexpected source %+v", e.Name, e.ValueFrom)
		}
	}
	return env
}

// podFiles is what the Secret volumes put into the pod: path -> content.
func (b *built) podFiles(t *testing.T, ordinal int) map[string][]byte {
	t.Helper()
	c := b.container(t)
	files := map[string][]byte{}
	for _, m := range c.VolumeMounts {
		i := slices.IndexFunc(b.sts.Spec.Template.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == m.Name })
		if i < 0 {
			if !slices.ContainsFunc(b.sts.Spec.VolumeClaimTemplates, func(p corev1.PersistentVolumeClaim) bool { return p.Name == m.Name }) {
				t.Errorf("volume mount %s: no such volume", m.Name)
			}
			continue
		}
		v := b.sts.Spec.Template.Spec.Volumes[i]
		if v.Secret == nil {
			continue
		}
		if !m.ReadOnly {
			t.Errorf("Secret volume %s mounted writable", m.Name)
		}
		for k, data := range b.secrets[v.Secret.SecretName].Data {
			files[filepath.Join(m.MountPath, k)] = data
		}
	}
	return files
}

// daemonVariables runs `mimi-hub -h` and returns the variables it lists.
func daemonVariables(t *testing.T) map[string]bool {
	t.Helper()
	out, _ := exec.Command(mimiHub(t), "-h").CombinedOutput()
	known := map[string]bool{}
	for _, m := range regexp.MustCompile(`\[env (MIMI_HUB_[A-Z0-9_]+)\]`).FindAllSubmatch(out, -1) {
		known[string(m[1])] = true
	}
	if len(known) < 20 {
		t.Fatalf("mimi-hub -h lists %d variables:\n%s", len(known), out)
	}
	return known
}

// builtBinary is mimi-hub, built once for the tests that need it and
// removed by TestMain.
var builtBinary string

func mimiHub(t *testing.T) string {
	t.Helper()
	if builtBinary == "" {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
		defer cancel()
		dir, err := os.MkdirTemp("", "mimi-kubernetes-test-")
		if err != nil {
			t.Fatal(err)
		}
		if builtBinary, err = systemtest.Build(ctx, dir, false); err != nil {
			os.RemoveAll(dir)
			builtBinary = ""
			t.Fatal(err)
		}
	}
	return builtBinary
}

func TestMain(m *testing.M) {
	code := m.Run()
	if builtBinary != "" {
		os.RemoveAll(filepath.Dir(builtBinary))
	}
	os.Exit(code)
}

// TestPodEnvironmentStartsANode runs a real mimi-hub with what pod 0
// would get: the kustomization's environment and the files of its Secret
// volumes (made by make-secrets.sh), with only what needs a Kubernetes
// network changed (listen on a free loopback port, no DNS join, a single
// voter). The node must come up ready and accept the admin token: the
// certificates, keys, gossip key and paths fit together.
func TestPodEnvironmentStartsANode(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds and runs mimi-hub")
	}
	b, _ := build(t)
	env := b.resolveEnv(t, 0)
	root := t.TempDir()
	for path, data := range b.podFiles(t, 0) {
		local := filepath.Join(root, path)
		if err := os.MkdirAll(filepath.Dir(local), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(local, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for k, v := range env {
		if strings.HasPrefix(v, "/etc/mimi-hub/") {
			env[k] = filepath.Join(root, v)
		}
	}
	ports := map[string]int{}
	for _, name := range []string{"FEDERATION", "CLIENT", "OPS", "RAFT", "GOSSIP"} {
		p, err := freeport.Get("127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		ports[name] = p
		env["MIMI_HUB_"+name+"_ADDR"] = fmt.Sprintf("127.0.0.1:%d", p)
	}
	env["MIMI_HUB_DATA"] = filepath.Join(root, "data")
	env["MIMI_HUB_BOOTSTRAP_EXPECT"] = "1"
	for _, k := range []string{"MIMI_HUB_JOIN", "MIMI_HUB_RAFT_ADVERTISE", "MIMI_HUB_GOSSIP_ADVERTISE"} {
		delete(env, k)
	}
	var vars []string
	for k, v := range env {
		if strings.HasPrefix(k, "MIMI_HUB_") {
			vars = append(vars, k+"="+v)
		}
	}
	cmd := exec.Command(mimiHub(t))
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, vars...)
	node := testutil.StartProcess(t, cmd)
	ops := fmt.Sprintf("http://127.0.0.1:%d", ports["OPS"])
	if err := testutil.WaitHTTP(t.Context(), ops+"/readyz", nil, time.Minute, node.Exited()); err != nil {
		t.Fatal(err)
	}
	get := func(path, token string) int {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, ops+path, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := (&http.Client{Timeout: 2 * time.Second}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get("/v1/status", env["MIMI_HUB_ADMIN_TOKEN"]); code != http.StatusOK {
		t.Errorf("the operator API refused the Secret's admin token: %d", code)
	}
	if code := get("/v1/status", "wrong"); code != http.StatusUnauthorized && code != http.StatusForbidden {
		t.Errorf("the operator API accepted a wrong token: %d", code)
	}
	if !strings.Contains(node.Output(), `"level":"INFO"`) {
		t.Errorf("MIMI_HUB_LOG_FORMAT=json: the log is not JSON:\n%s", node.Output())
	}
}
