// k8scheck: the manifests `helm template` renders from deploy/helm/shop-fleet,
// decoded strictly into the Kubernetes API types and checked against the rules of
// the chart and against the programs themselves (their --help).
//
//	k8scheck [-require-hpa] [-program BINARY]... MANIFEST.yaml
//
// Decoding: every YAML document is converted to JSON (duplicate keys refused) and
// decoded by apiVersion/kind into the typed object of k8s.io/api with
// sigs.k8s.io/json's strict decoder, as the API server's strict field validation
// does: an unknown field, a field in the wrong case or a duplicated field is an
// error, and so is any apiVersion/kind this chart is not expected to render.
//
// Rules (each failure is one line on stderr; the exit status is 1 if any):
//   - names are DNS labels / subdomains, labels are valid, no (kind, name) twice;
//   - Deployment: the selector matches the pod labels; every container has CPU and
//     memory requests and limits (requests <= limits), startup, liveness and
//     readiness probes on one of its named ports, an image with a tag,
//     runAsNonRoot, readOnlyRootFilesystem, allowPrivilegeEscalation false, all
//     capabilities dropped, seccomp RuntimeDefault; the service account token is
//     not mounted; /tmp is an emptyDir;
//   - with -program: the container named after each program exists, and every
//     variable it gets (env and envFrom ConfigMaps) is one that program's --help
//     lists, within the kind and range --help states; settings of kind "secret"
//     come from a Secret only; every setting whose default names 127.0.0.1 is set;
//     the listen addresses' ports are the container's ports; every dns:/// target
//     names a headless Service of this release on a port it has;
//   - Service: selects the pods of exactly one Deployment, on ports that Deployment's
//     container names; a Service of a gRPC server (a port named grpc) is headless;
//   - every Deployment has a PodDisruptionBudget selecting its pods; with
//     -require-hpa also an autoscaling/v2 HorizontalPodAutoscaler targeting it
//     (then the Deployment leaves replicas to it), otherwise replicas is set;
//   - referenced ConfigMaps exist, and keys of rendered Secrets exist.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

type object struct {
	kind, name string
	doc        int
	obj        any
}

var failures []string

func fail(format string, args ...any) {
	failures = append(failures, fmt.Sprintf(format, args...))
}

// newTyped: the typed object of an apiVersion/kind, nil for one the chart must not render.
func newTyped(apiVersion, kind string) any {
	switch apiVersion + " " + kind {
	case "v1 ConfigMap":
		return &corev1.ConfigMap{}
	case "v1 Secret":
		return &corev1.Secret{}
	case "v1 Service":
		return &corev1.Service{}
	case "v1 ServiceAccount":
		return &corev1.ServiceAccount{}
	case "apps/v1 Deployment":
		return &appsv1.Deployment{}
	case "autoscaling/v2 HorizontalPodAutoscaler":
		return &autoscalingv2.HorizontalPodAutoscaler{}
	case "policy/v1 PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}
	case "networking.k8s.io/v1 NetworkPolicy":
		return &networkingv1.NetworkPolicy{}
	}
	return nil
}

var docSeparator = regexp.MustCompile(`(?m)^---[ \t]*$`)

// decode splits a multi-document YAML stream and decodes each document strictly.
func decode(data []byte) []object {
	var out []object
	for i, text := range docSeparator.Split(string(data), -1) {
		blank := true
		for _, line := range strings.Split(text, "\n") {
			if t := strings.TrimSpace(line); t != "" && !strings.HasPrefix(t, "#") {
				blank = false
				break
			}
		}
		if blank {
			continue
		}
		js, err := yaml.YAMLToJSONStrict([]byte(text))
		if err != nil {
			fail("document %d: not strict YAML: %v", i, err)
			continue
		}
		var tm metav1.TypeMeta
		if err := kjson.UnmarshalCaseSensitivePreserveInts(js, &tm); err != nil {
			fail("document %d: no apiVersion/kind: %v", i, err)
			continue
		}
		typed := newTyped(tm.APIVersion, tm.Kind)
		if typed == nil {
			fail("document %d: unexpected apiVersion/kind %q/%q", i, tm.APIVersion, tm.Kind)
			continue
		}
		strictErrs, err := kjson.UnmarshalStrict(js, typed)
		if err != nil {
			fail("document %d (%s): does not decode: %v", i, tm.Kind, err)
			continue
		}
		for _, e := range strictErrs {
			fail("document %d (%s): %v", i, tm.Kind, e)
		}
		meta := metaOf(typed)
		out = append(out, object{kind: tm.Kind, name: meta.Name, doc: i, obj: typed})
	}
	return out
}

func metaOf(o any) *metav1.ObjectMeta {
	switch v := o.(type) {
	case *corev1.ConfigMap:
		return &v.ObjectMeta
	case *corev1.Secret:
		return &v.ObjectMeta
	case *corev1.Service:
		return &v.ObjectMeta
	case *corev1.ServiceAccount:
		return &v.ObjectMeta
	case *appsv1.Deployment:
		return &v.ObjectMeta
	case *autoscalingv2.HorizontalPodAutoscaler:
		return &v.ObjectMeta
	case *policyv1.PodDisruptionBudget:
		return &v.ObjectMeta
	case *networkingv1.NetworkPolicy:
		return &v.ObjectMeta
	}
	panic("unreachable")
}

// ---------------------------------------------------------------- --help ----

type setting struct {
	def      string
	required bool
	kind     string // "text, 1..256 bytes", "integer 1..64", "duration 0ms..5m", "secret, ..."
}

var (
	helpLine = regexp.MustCompile(`^  ([A-Z][A-Z0-9_]*)(?:=(\S*)| \(required\))\s`)
	helpKind = regexp.MustCompile(`\[([^\[\]]+)\]$`)
)

// helpSettings runs `binary --help` in a clean environment and parses its settings.
func helpSettings(binary string) (map[string]*setting, error) {
	cmd := exec.Command(binary, "--help")
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasSuffix(k, "SAN_OPTIONS") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	outText, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s --help: %v", binary, err)
	}
	settings := map[string]*setting{}
	var last *setting
	for _, line := range strings.Split(string(outText), "\n") {
		if m := helpLine.FindStringSubmatch(line + " "); m != nil {
			last = &setting{def: m[2], required: strings.Contains(m[0], "(required)")}
			settings[m[1]] = last
		}
		if k := helpKind.FindStringSubmatch(strings.TrimRight(line, " ")); k != nil && last != nil && last.kind == "" {
			last.kind = k[1]
		}
	}
	if len(settings) == 0 {
		return nil, fmt.Errorf("%s --help lists no settings", binary)
	}
	return settings, nil
}

var (
	kindInt      = regexp.MustCompile(`^integer (-?\d+)\.\.(-?\d+)$`)
	kindDuration = regexp.MustCompile(`^duration (\S+)\.\.(\S+)$`)
	kindBytes    = regexp.MustCompile(`^(?:text|secret), (\d+)(?:\.\.(\d+))? bytes$`)
	durationText = regexp.MustCompile(`^(\d+)(ms|s|m|h)?$`)
)

func durationMs(text string) (int64, bool) {
	m := durationText.FindStringSubmatch(text)
	if m == nil {
		return 0, false
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	return n * map[string]int64{"": 1, "ms": 1, "s": 1000, "m": 60000, "h": 3600000}[m[2]], true
}

// valueProblem: why value is outside what --help says the setting takes, or "".
func valueProblem(kind, value string) string {
	if m := kindInt.FindStringSubmatch(kind); m != nil {
		n, err := strconv.ParseInt(value, 10, 64)
		lo, _ := strconv.ParseInt(m[1], 10, 64)
		hi, _ := strconv.ParseInt(m[2], 10, 64)
		if err != nil || n < lo || n > hi {
			return "not an integer in " + m[1] + ".." + m[2]
		}
		return ""
	}
	if m := kindDuration.FindStringSubmatch(kind); m != nil {
		d, ok := durationMs(value)
		lo, _ := durationMs(m[1])
		hi, _ := durationMs(m[2])
		if !ok || d < lo || d > hi {
			return "not a duration in " + m[1] + ".." + m[2]
		}
		return ""
	}
	if m := kindBytes.FindStringSubmatch(kind); m != nil {
		lo, _ := strconv.Atoi(m[1])
		hi := lo
		if m[2] != "" {
			hi, _ = strconv.Atoi(m[2])
		}
		if len(value) < lo || len(value) > hi {
			return fmt.Sprintf("length %d outside %d..%d bytes", len(value), lo, hi)
		}
		return ""
	}
	return ""
}

// ----------------------------------------------------------------- rules ----

type index struct {
	deployments []*appsv1.Deployment
	services    []*corev1.Service
	configMaps  map[string]*corev1.ConfigMap
	secrets     map[string]*corev1.Secret
	pdbs        []*policyv1.PodDisruptionBudget
	hpas        []*autoscalingv2.HorizontalPodAutoscaler
	netpols     []*networkingv1.NetworkPolicy
}

func build(objs []object) *index {
	ix := &index{configMaps: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{}}
	seen := map[string]bool{}
	for _, o := range objs {
		key := o.kind + "/" + o.name
		if seen[key] {
			fail("%s rendered twice", key)
		}
		seen[key] = true
		meta := metaOf(o.obj)
		nameCheck := validation.IsDNS1123Subdomain
		if o.kind == "Service" || o.kind == "Deployment" {
			nameCheck = validation.IsDNS1123Label
		}
		for _, e := range nameCheck(meta.Name) {
			fail("%s: name %q: %s", key, meta.Name, e)
		}
		checkLabels(key, meta.Labels)
		switch v := o.obj.(type) {
		case *appsv1.Deployment:
			ix.deployments = append(ix.deployments, v)
		case *corev1.Service:
			ix.services = append(ix.services, v)
		case *corev1.ConfigMap:
			ix.configMaps[v.Name] = v
		case *corev1.Secret:
			ix.secrets[v.Name] = v
		case *policyv1.PodDisruptionBudget:
			ix.pdbs = append(ix.pdbs, v)
		case *autoscalingv2.HorizontalPodAutoscaler:
			ix.hpas = append(ix.hpas, v)
		case *networkingv1.NetworkPolicy:
			ix.netpols = append(ix.netpols, v)
		}
	}
	return ix
}

func checkLabels(where string, l map[string]string) {
	for k, v := range l {
		for _, e := range validation.IsQualifiedName(k) {
			fail("%s: label key %q: %s", where, k, e)
		}
		for _, e := range validation.IsValidLabelValue(v) {
			fail("%s: label %s value %q: %s", where, k, v, e)
		}
	}
}

func selects(sel *metav1.LabelSelector, podLabels map[string]string) bool {
	if sel == nil {
		return false
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil || s.Empty() {
		return false
	}
	return s.Matches(labels.Set(podLabels))
}

func portNames(c *corev1.Container) map[string]int32 {
	out := map[string]int32{}
	for _, p := range c.Ports {
		out[p.Name] = p.ContainerPort
	}
	return out
}

func checkProbe(where, what string, p *corev1.Probe, ports map[string]int32) {
	if p == nil {
		fail("%s: no %s probe", where, what)
		return
	}
	var port intstr.IntOrString
	switch {
	case p.HTTPGet != nil:
		port = p.HTTPGet.Port
		if !strings.HasPrefix(p.HTTPGet.Path, "/") {
			fail("%s: %s probe path %q", where, what, p.HTTPGet.Path)
		}
	case p.GRPC != nil:
		port = intstr.FromInt32(p.GRPC.Port)
	case p.TCPSocket != nil:
		port = p.TCPSocket.Port
	default:
		fail("%s: %s probe has no HTTP, gRPC or TCP action", where, what)
		return
	}
	if !portIn(port, ports) {
		fail("%s: %s probe on port %s, which the container does not declare", where, what, port.String())
	}
}

func portIn(port intstr.IntOrString, ports map[string]int32) bool {
	if port.Type == intstr.String {
		_, ok := ports[port.StrVal]
		return ok
	}
	for _, n := range ports {
		if n == port.IntVal {
			return true
		}
	}
	return false
}

func checkContainer(where string, pod *corev1.PodSpec, c *corev1.Container) {
	if c.Image == "" || !strings.Contains(filepath.Base(c.Image), ":") || strings.HasSuffix(c.Image, ":latest") {
		fail("%s: image %q has no fixed tag", where, c.Image)
	}
	for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		lim, okL := c.Resources.Limits[res]
		req, okR := c.Resources.Requests[res]
		if !okL {
			fail("%s: no %s limit", where, res)
		}
		if !okR {
			fail("%s: no %s request", where, res)
		}
		if okL && okR && req.Cmp(lim) > 0 {
			fail("%s: %s request %s above its limit %s", where, res, req.String(), lim.String())
		}
	}
	ports := portNames(c)
	checkProbe(where, "startup", c.StartupProbe, ports)
	checkProbe(where, "liveness", c.LivenessProbe, ports)
	checkProbe(where, "readiness", c.ReadinessProbe, ports)

	sc, psc := c.SecurityContext, pod.SecurityContext
	if sc == nil {
		fail("%s: no securityContext", where)
		return
	}
	if sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
		fail("%s: securityContext.runAsNonRoot is not true", where)
	}
	if sc.RunAsUser != nil && *sc.RunAsUser == 0 {
		fail("%s: runs as uid 0", where)
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		fail("%s: securityContext.readOnlyRootFilesystem is not true", where)
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		fail("%s: securityContext.allowPrivilegeEscalation is not false", where)
	}
	if sc.Privileged != nil && *sc.Privileged {
		fail("%s: privileged", where)
	}
	if sc.Capabilities == nil || len(sc.Capabilities.Add) > 0 ||
		len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" {
		fail("%s: capabilities are not drop [ALL] with nothing added", where)
	}
	seccomp := sc.SeccompProfile
	if seccomp == nil && psc != nil {
		seccomp = psc.SeccompProfile
	}
	if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
		fail("%s: seccompProfile is not RuntimeDefault", where)
	}
	tmp := false
	for _, m := range c.VolumeMounts {
		if m.MountPath == "/tmp" {
			for _, v := range pod.Volumes {
				if v.Name == m.Name && v.EmptyDir != nil {
					tmp = true
				}
			}
		}
	}
	if !tmp {
		fail("%s: /tmp is not an emptyDir (the root filesystem is read-only)", where)
	}
}

// envOf: every variable a container gets, with its value when literal or from a
// rendered ConfigMap, and whether it comes from a Secret.
type envVar struct {
	value      string
	known      bool // value known (literal or rendered ConfigMap)
	fromSecret bool
}

func envOf(where string, c *corev1.Container, ix *index) map[string]envVar {
	env := map[string]envVar{}
	for _, from := range c.EnvFrom {
		switch {
		case from.ConfigMapRef != nil:
			cm, ok := ix.configMaps[from.ConfigMapRef.Name]
			if !ok {
				if from.ConfigMapRef.Optional == nil || !*from.ConfigMapRef.Optional {
					fail("%s: envFrom ConfigMap %q is not rendered", where, from.ConfigMapRef.Name)
				}
				continue
			}
			for k, v := range cm.Data {
				env[from.Prefix+k] = envVar{value: v, known: true}
			}
		case from.SecretRef != nil:
			fail("%s: envFrom a whole Secret hides which variables it sets; use secretKeyRef", where)
		}
	}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = envVar{value: e.Value, known: true}
		case e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			if s, ok := ix.secrets[ref.Name]; ok {
				_, inData := s.Data[ref.Key]
				_, inString := s.StringData[ref.Key]
				if !inData && !inString {
					fail("%s: %s from key %q that Secret %q does not have", where, e.Name, ref.Key, ref.Name)
				}
			}
			env[e.Name] = envVar{fromSecret: true}
		case e.ValueFrom.ConfigMapKeyRef != nil:
			ref := e.ValueFrom.ConfigMapKeyRef
			cm, ok := ix.configMaps[ref.Name]
			if !ok {
				fail("%s: %s from ConfigMap %q, which is not rendered", where, e.Name, ref.Name)
				continue
			}
			v, ok := cm.Data[ref.Key]
			if !ok {
				fail("%s: %s from key %q that ConfigMap %q does not have", where, e.Name, ref.Key, ref.Name)
			}
			env[e.Name] = envVar{value: v, known: true}
		default:
			env[e.Name] = envVar{}
		}
	}
	return env
}

func listenPort(addr string) (int32, bool) {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, false
	}
	n, err := strconv.Atoi(p)
	return int32(n), err == nil
}

var listenPorts = map[string]string{"GRPC_ADDR": "grpc", "ADMIN_ADDR": "admin", "GATEWAY_ADDR": "http"}

func checkProgramEnv(where string, c *corev1.Container, settings map[string]*setting, ix *index) {
	env := envOf(where, c, ix)
	names := make([]string, 0, len(env))
	for n := range env {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		v := env[name]
		s, ok := settings[name]
		if !ok {
			fail("%s: sets %s, which %s --help does not list", where, name, c.Name)
			continue
		}
		secret := strings.HasPrefix(s.kind, "secret")
		if secret && !v.fromSecret {
			fail("%s: %s is a secret setting but is not taken from a Secret", where, name)
		}
		if !secret && v.fromSecret {
			fail("%s: %s is not a secret setting but comes from a Secret", where, name)
		}
		if v.known {
			if p := valueProblem(s.kind, v.value); p != "" {
				fail("%s: %s=%q: %s (--help: [%s])", where, name, v.value, p, s.kind)
			}
		}
	}
	for name, s := range settings {
		if _, set := env[name]; set {
			continue
		}
		if s.required {
			fail("%s: required setting %s is not set", where, name)
		} else if strings.Contains(s.def, "127.0.0.1") {
			fail("%s: %s is not set, and its default %q names this host only", where, name, s.def)
		}
	}
	ports := portNames(c)
	for name, portName := range listenPorts {
		v, ok := env[name]
		if !ok || !v.known {
			continue
		}
		p, ok := listenPort(v.value)
		if want, has := ports[portName]; !ok || !has || p != want {
			fail("%s: %s=%s is not the container port named %q", where, name, v.value, portName)
		}
	}
	// gRPC targets of the release's headless Services: dns:///<svc>[.<ns>.svc...]:port
	for _, name := range names {
		v := env[name]
		if !strings.HasSuffix(name, "_ADDR") || !v.known || !strings.HasPrefix(v.value, "dns:///") {
			continue
		}
		host, port, err := net.SplitHostPort(strings.TrimPrefix(v.value, "dns:///"))
		if err != nil {
			fail("%s: %s=%s is not dns:///host:port", where, name, v.value)
			continue
		}
		svcName, _, _ := strings.Cut(host, ".")
		var svc *corev1.Service
		for _, s := range ix.services {
			if s.Name == svcName {
				svc = s
			}
		}
		if svc == nil {
			fail("%s: %s=%s names no Service of the release", where, name, v.value)
			continue
		}
		if svc.Spec.ClusterIP != corev1.ClusterIPNone {
			fail("%s: %s=%s: Service %s is not headless (no client-side balancing)", where, name, v.value, svcName)
		}
		found := false
		for _, sp := range svc.Spec.Ports {
			if strconv.Itoa(int(sp.Port)) == port && sp.Name == "grpc" {
				found = true
			}
		}
		if !found {
			fail("%s: %s=%s: Service %s has no grpc port %s", where, name, v.value, svcName, port)
		}
	}
}

func check(ix *index, programs map[string]map[string]*setting, requireHPA bool) {
	if len(ix.deployments) == 0 {
		fail("no Deployment rendered")
	}
	containers := map[string]bool{}
	for _, d := range ix.deployments {
		where := "Deployment/" + d.Name
		pod := &d.Spec.Template.Spec
		if !selects(d.Spec.Selector, d.Spec.Template.Labels) {
			fail("%s: selector does not match its pod labels", where)
		}
		checkLabels(where+" pod", d.Spec.Template.Labels)
		if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
			fail("%s: the service account token is mounted", where)
		}
		if psc := pod.SecurityContext; psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
			fail("%s: pod securityContext.runAsNonRoot is not true", where)
		}
		if len(pod.Containers) == 0 {
			fail("%s: no containers", where)
		}
		for i := range pod.Containers {
			c := &pod.Containers[i]
			cw := where + " container " + c.Name
			containers[c.Name] = true
			checkContainer(cw, pod, c)
			if programs != nil {
				settings, ok := programs[c.Name]
				if !ok {
					fail("%s: no program of that name was given", cw)
				} else {
					checkProgramEnv(cw, c, settings, ix)
				}
			}
		}
		// PDB and HPA
		pdbs := 0
		for _, p := range ix.pdbs {
			if selects(p.Spec.Selector, d.Spec.Template.Labels) {
				pdbs++
				if p.Spec.MinAvailable == nil && p.Spec.MaxUnavailable == nil {
					fail("PodDisruptionBudget/%s: neither minAvailable nor maxUnavailable", p.Name)
				}
			}
		}
		if pdbs != 1 {
			fail("%s: %d PodDisruptionBudgets select its pods, want 1", where, pdbs)
		}
		hpas := 0
		for _, h := range ix.hpas {
			if h.Spec.ScaleTargetRef.Kind == "Deployment" && h.Spec.ScaleTargetRef.APIVersion == "apps/v1" &&
				h.Spec.ScaleTargetRef.Name == d.Name {
				hpas++
			}
		}
		switch {
		case hpas > 1:
			fail("%s: %d HorizontalPodAutoscalers target it", where, hpas)
		case hpas == 1 && d.Spec.Replicas != nil:
			fail("%s: sets replicas although an HPA scales it (every upgrade would reset the scale)", where)
		case hpas == 0 && requireHPA:
			fail("%s: no HorizontalPodAutoscaler targets it", where)
		case hpas == 0 && d.Spec.Replicas == nil:
			fail("%s: neither replicas nor an HPA", where)
		}
	}
	for name := range programs {
		if !containers[name] {
			fail("program %s: no Deployment runs a container of that name", name)
		}
	}
	for _, h := range ix.hpas {
		where := "HorizontalPodAutoscaler/" + h.Name
		var target *appsv1.Deployment
		for _, d := range ix.deployments {
			if d.Name == h.Spec.ScaleTargetRef.Name && h.Spec.ScaleTargetRef.Kind == "Deployment" {
				target = d
			}
		}
		if target == nil {
			fail("%s: targets %s/%s, which is not rendered", where, h.Spec.ScaleTargetRef.Kind, h.Spec.ScaleTargetRef.Name)
			continue
		}
		if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 1 || *h.Spec.MinReplicas > h.Spec.MaxReplicas {
			fail("%s: minReplicas must be 1..maxReplicas", where)
		}
		if len(h.Spec.Metrics) == 0 {
			fail("%s: no metrics", where)
		}
		for _, m := range h.Spec.Metrics {
			if m.Type == autoscalingv2.ResourceMetricSourceType && m.Resource != nil &&
				m.Resource.Target.Type == autoscalingv2.UtilizationMetricType {
				for _, c := range target.Spec.Template.Spec.Containers {
					if _, ok := c.Resources.Requests[m.Resource.Name]; !ok {
						fail("%s: %s utilization, but container %s requests no %s", where, m.Resource.Name, c.Name, m.Resource.Name)
					}
				}
			}
		}
	}
	for _, s := range ix.services {
		where := "Service/" + s.Name
		var matched []*appsv1.Deployment
		for _, d := range ix.deployments {
			if len(s.Spec.Selector) > 0 && labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) {
				matched = append(matched, d)
			}
		}
		if len(matched) != 1 {
			fail("%s: selects the pods of %d Deployments, want 1", where, len(matched))
			continue
		}
		ports := map[string]int32{}
		for _, c := range matched[0].Spec.Template.Spec.Containers {
			for k, v := range portNames(&c) {
				ports[k] = v
			}
		}
		grpc := false
		for _, p := range s.Spec.Ports {
			target := p.TargetPort
			if target.Type == intstr.Int && target.IntVal == 0 {
				target = intstr.FromInt32(p.Port)
			}
			if !portIn(target, ports) {
				fail("%s: port %s targets %s, which Deployment/%s does not declare", where, p.Name, target.String(), matched[0].Name)
			}
			if p.Name == "grpc" || target.StrVal == "grpc" {
				grpc = true
			}
		}
		if _, serves := ports["grpc"]; serves || grpc {
			if s.Spec.ClusterIP != corev1.ClusterIPNone {
				fail("%s: a gRPC server's Service must be headless (clusterIP: None) for client-side balancing", where)
			}
		}
	}
	for _, n := range ix.netpols {
		any := false
		for _, d := range ix.deployments {
			if selects(&n.Spec.PodSelector, d.Spec.Template.Labels) {
				any = true
			}
		}
		if !any {
			fail("NetworkPolicy/%s: selects no Deployment's pods", n.Name)
		}
	}
}

type programList []string

func (p *programList) String() string     { return strings.Join(*p, ",") }
func (p *programList) Set(v string) error { *p = append(*p, v); return nil }

func main() {
	var programs programList
	requireHPA := flag.Bool("require-hpa", false, "every Deployment must have a HorizontalPodAutoscaler")
	flag.Var(&programs, "program", "a program binary (repeatable): its --help gives the settings its container may get")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: k8scheck [-require-hpa] [-program BINARY]... MANIFEST.yaml")
		os.Exit(2)
	}
	data, err := os.ReadFile(flag.Arg(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var settings map[string]map[string]*setting
	if len(programs) > 0 {
		settings = map[string]map[string]*setting{}
		for _, bin := range programs {
			s, err := helpSettings(bin)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(2)
			}
			settings[filepath.Base(bin)] = s
		}
	}
	objs := decode(data)
	ix := build(objs)
	check(ix, settings, *requireHPA)

	kinds := map[string]int{}
	for _, o := range objs {
		kinds[o.kind]++
	}
	var summary bytes.Buffer
	keys := make([]string, 0, len(kinds))
	for k := range kinds {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for i, k := range keys {
		if i > 0 {
			summary.WriteString(", ")
		}
		fmt.Fprintf(&summary, "%d %s", kinds[k], k)
	}
	if len(failures) > 0 {
		for _, f := range failures {
			fmt.Fprintln(os.Stderr, "FAIL:", f)
		}
		fmt.Fprintf(os.Stderr, "k8scheck %s: %d objects (%s), %d failures\n", flag.Arg(0), len(objs), summary.String(), len(failures))
		os.Exit(1)
	}
	fmt.Printf("k8scheck %s: %d objects (%s), all checks passed\n", flag.Arg(0), len(objs), summary.String())
}
