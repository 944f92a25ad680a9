package e2e_test

import (
	"context"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	emv1beta1 "k8s.io/metrics/pkg/apis/external_metrics/v1beta1"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/integration/e2e/cluster"
	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/testsupport/harness"
)

var apiServiceResource = schema.GroupVersionResource{Group: "apiregistration.k8s.io", Version: "v1", Resource: "apiservices"}

// kedaModuleDir is the KEDA module integration/e2e/bins/keda builds from,
// in the module cache (building it has downloaded it).
func kedaModuleDir(ctx context.Context) (string, error) {
	cmd := exec.CommandContext(ctx, "go", "list", "-mod=readonly", "-m", "-f", "{{.Dir}}", kedaModule)
	cmd.Dir = filepath.Join("bins", "keda")
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("finding %s in the module cache (run scripts/build-test-bins.sh keda): %w", kedaModule, err)
	}
	dir := strings.TrimSpace(string(out))
	if dir == "" {
		return "", fmt.Errorf("%s is not in the module cache (run scripts/build-test-bins.sh keda)", kedaModule)
	}
	return dir, nil
}

// kedaBuild builds, as `kustomize build` would, KEDA's own config from its
// module (namespace, CRDs, RBAC, ServiceAccount, and the metrics server's
// Service, RBAC and APIService without its Deployment) and
// manifests/examples/keda with its bearer-auth Component, as the
// example's kustomization offers it, with what only the run knows: the
// metrics server's Service is an ExternalName to localhost on its port,
// the APIService trusts the test's CA, and the trigger asks promURL.
func kedaBuild(dir, kedaDir string, caPEM []byte, adapterPort int, promURL string) ([]*unstructured.Unstructured, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var resources strings.Builder
	for _, r := range []string{
		filepath.Join(kedaDir, "config", "general"),
		filepath.Join(kedaDir, "config", "crd"),
		filepath.Join(kedaDir, "config", "rbac"),
		filepath.Join(kedaDir, "config", "service_account"),
		filepath.Join(kedaDir, "config", "metrics-server"),
		filepath.Join(harness.RepoRoot(), "manifests", "examples", "keda"),
	} {
		// kustomize takes no absolute paths in resources.
		rel, err := filepath.Rel(dir, r)
		if err != nil {
			return nil, err
		}
		resources.WriteString("- " + rel + "\n")
	}
	component, err := filepath.Rel(dir, filepath.Join(harness.RepoRoot(), "manifests", "examples", "keda", "bearer-auth"))
	if err != nil {
		return nil, err
	}
	ca := base64.StdEncoding.EncodeToString(caPEM)
	p := strconv.Itoa(adapterPort)
	k := `apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
` + resources.String() + `components:
- ` + component + `
patches:
- patch: |-
    $patch: delete
    apiVersion: apps/v1
    kind: Deployment
    metadata:
      name: keda-metrics-apiserver
      namespace: keda
- target: {kind: Service, name: keda-metrics-apiserver, namespace: keda}
  patch: |-
    - {op: replace, path: /spec/type, value: ExternalName}
    - {op: add, path: /spec/externalName, value: localhost}
    - {op: remove, path: /spec/selector}
    - {op: replace, path: /spec/ports/0/port, value: ` + p + `}
- target: {kind: APIService, name: v1beta1.external.metrics.k8s.io}
  patch: |-
    - {op: add, path: /spec/caBundle, value: "` + ca + `"}
    - {op: add, path: /spec/service/port, value: ` + p + `}
- target: {group: keda.sh, kind: ScaledObject, name: command}
  patch: |-
    - {op: replace, path: /spec/triggers/0/metadata/serverAddress, value: "` + promURL + `"}
`
	objs, err := buildKustomization(dir, k)
	if err != nil {
		return nil, fmt.Errorf("KEDA's config and manifests/examples/keda: %w", err)
	}
	return objs, nil
}

// kedaCertDir writes what KEDA's processes read from their --cert-dir:
// ca.crt, the CA both trust, and tls.crt/tls.key, a certificate for both
// ends of the operator-to-metrics-server gRPC (mutual TLS) and for the
// names the process is reached by.
func kedaCertDir(t *testing.T, c *cluster.Cluster, dir, name string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	kp, err := c.CA.IssuePair(harness.CertRequest{
		CommonName: name,
		DNSNames:   []string{"localhost", name + ".keda.svc", name + ".keda.svc.cluster.local"},
		IPs:        []net.IP{net.IPv4(127, 0, 0, 1)},
		Server:     true,
		Client:     true,
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := kp.Write(dir, "tls"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ca.crt"), c.CA.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
}

// kedaEnv is the environment KEDA's Deployments give both processes, and
// the kubeconfig of KEDA's ServiceAccount.
func kedaEnv(t *testing.T, c *cluster.Cluster, name string) []string {
	t.Helper()
	kubeconfig, err := c.Kubeconfig(name, kedaUser, []string{"system:serviceaccounts", "system:serviceaccounts:" + kedaNamespace})
	if err != nil {
		t.Fatal(err)
	}
	return []string{
		"KUBECONFIG=" + kubeconfig,
		"WATCH_NAMESPACE=",
		"POD_NAMESPACE=" + kedaNamespace,
		// Read from the pod's ServiceAccount volume otherwise.
		"KEDA_CLUSTER_OBJECT_NAMESPACE=" + kedaNamespace,
	}
}

// startKEDAOperator runs keda-operator with its gRPC metrics service on
// grpcAddr, certificates from the test's CA and no certificate rotation of
// its own.
func startKEDAOperator(t *testing.T, w *world, c *cluster.Cluster, bin, grpcAddr, dir string) {
	t.Helper()
	kedaCertDir(t, c, dir, "keda-operator")
	caDir := filepath.Join(dir, "custom-ca")
	if err := os.MkdirAll(caDir, 0o755); err != nil {
		t.Fatal(err)
	}
	probe := freeAddr(t)
	p, err := harness.Start("keda-operator", bin, []string{
		"--leader-elect=false",
		"--zap-log-level=info",
		"--zap-encoder=console",
		"--enable-cert-rotation=false",
		"--cert-dir=" + dir,
		"--ca-dir=" + caDir,
		"--metrics-bind-address=" + freeAddr(t),
		"--health-probe-bind-address=" + probe,
		"--metrics-service-bind-address=" + grpcAddr,
	}, kedaEnv(t, c, "keda-operator"))
	if err != nil {
		t.Fatal(err)
	}
	w.started(p)
	if err := harness.WaitHTTP("http://"+probe+"/readyz", p, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	w.step("keda-operator ready (gRPC metrics service on %s, mutual TLS with the test CA's certificates)", grpcAddr)
}

// startKEDAAdapter runs keda-metrics-apiserver with the flags of KEDA's
// Deployment, its addresses made local: it serves the external metrics API
// on addr and asks the operator on grpcAddr.
func startKEDAAdapter(t *testing.T, w *world, c *cluster.Cluster, bin, addr, grpcAddr, dir string) {
	t.Helper()
	kedaCertDir(t, c, dir, "keda-metrics-apiserver")
	env := kedaEnv(t, c, "keda-metrics-apiserver")
	kubeconfig := strings.TrimPrefix(env[0], "KUBECONFIG=")
	host, p, _ := net.SplitHostPort(addr)
	proc, err := harness.Start("keda-metrics-apiserver", bin, []string{
		"--bind-address=" + host,
		"--secure-port=" + p,
		"--zap-log-level=info",
		"--client-ca-file=" + filepath.Join(dir, "ca.crt"),
		"--tls-cert-file=" + filepath.Join(dir, "tls.crt"),
		"--tls-private-key-file=" + filepath.Join(dir, "tls.key"),
		"--cert-dir=" + dir,
		"--requestheader-client-ca-file=" + c.FrontProxyCAFile,
		"--lister-kubeconfig=" + kubeconfig,
		"--authentication-kubeconfig=" + kubeconfig,
		"--authorization-kubeconfig=" + kubeconfig,
		"--metrics-service-address=" + grpcAddr,
		"--port=" + strconv.Itoa(port(t, freeAddr(t))),
	}, env)
	if err != nil {
		t.Fatal(err)
	}
	w.started(proc)
	if err := harness.WaitHTTPS("https://"+addr+"/readyz", c.CA.Pool(), proc, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	w.step("keda-metrics-apiserver ready on %s", addr)
}

// condition returns status and reason of a condition in an unstructured
// object's status.conditions.
func condition(o *unstructured.Unstructured, typ string) (status, reason, message string) {
	conds, _, _ := unstructured.NestedSlice(o.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == typ {
			s, _ := m["status"].(string)
			r, _ := m["reason"].(string)
			msg, _ := m["message"].(string)
			return s, r, msg
		}
	}
	return "", "", ""
}

// kedaStep1 waits for the APIService, applies the ScaledObject so, waits
// for its Ready=True and KEDA's HPA, and checks that HPA against the
// ScaledObject.
func kedaStep1(ctx context.Context, t *testing.T, w *world, c *cluster.Cluster, ap *applier, so *unstructured.Unstructured, tutorialHPA *autoscalingv2.HorizontalPodAutoscaler) *autoscalingv2.HorizontalPodAutoscaler {
	t.Helper()
	w.waitFor(ctx, 90*time.Second, "APIService v1beta1.external.metrics.k8s.io Available", func() (bool, string) {
		o, err := ap.client.Resource(apiServiceResource).Get(ctx, "v1beta1.external.metrics.k8s.io", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		s, r, m := condition(o, "Available")
		return s == "True", fmt.Sprintf("Available=%s %s %s", s, r, m)
	})
	if err := ap.apply(ctx, so); err != nil {
		t.Fatal(err)
	}
	obs := w.waitFor(ctx, 90*time.Second, "ScaledObject kong/command Ready=True", func() (bool, string) {
		o, err := ap.client.Resource(scaledObjectResource).Namespace("kong").Get(ctx, scaledObject, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		s, r, m := condition(o, "Ready")
		return s == "True", fmt.Sprintf("Ready=%s %s %q", s, r, m)
	})
	var hpa *autoscalingv2.HorizontalPodAutoscaler
	w.waitFor(ctx, 60*time.Second, "HPA kong/"+kedaHPA, func() (bool, string) {
		var err error
		hpa, err = c.Client.AutoscalingV2().HorizontalPodAutoscalers("kong").Get(ctx, kedaHPA, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return true, "found"
	})
	if hpas, err := c.Client.AutoscalingV2().HorizontalPodAutoscalers("kong").List(ctx, metav1.ListOptions{}); err != nil || len(hpas.Items) != 1 {
		t.Fatalf("HPAs in kong: %v; want KEDA's only", err)
	}
	s := hpa.Spec
	if s.ScaleTargetRef.Kind != "Deployment" || s.ScaleTargetRef.Name != "command" || s.MinReplicas == nil || *s.MinReplicas != 1 || s.MaxReplicas != 10 {
		t.Fatalf("%s: target %+v, replicas %v..%d; want Deployment command, 1..10", kedaHPA, s.ScaleTargetRef, s.MinReplicas, s.MaxReplicas)
	}
	if len(s.Metrics) != 1 || s.Metrics[0].External == nil {
		t.Fatalf("%s: metrics %+v, want one External metric", kedaHPA, s.Metrics)
	}
	target := s.Metrics[0].External.Target
	if target.Type != autoscalingv2.ValueMetricType || target.Value == nil || target.Value.String() != "40" {
		t.Fatalf("%s: target %+v, want Value 40 (metricType Value)", kedaHPA, target)
	}
	if err := sameBehavior(s.Behavior, tutorialHPA.Spec.Behavior); err != nil {
		t.Fatalf("%s: behavior not the tutorial HPA's: %v", kedaHPA, err)
	}
	m := s.Metrics[0].External.Metric
	w.step("step 1 passed: %s; KEDA made HPA %s: Deployment command 1..10, external metric %q selector %v, target Value 40, the tutorial's behaviour",
		obs, kedaHPA, m.Name, m.Selector.MatchLabels)
	return hpa
}

// externalMetric GETs an external metric through the API server.
func externalMetric(ctx context.Context, c *cluster.Cluster, path, selector string) (*emv1beta1.ExternalMetricValueList, int, error) {
	var code int
	raw, err := c.Client.Discovery().RESTClient().Get().AbsPath(path).Param("labelSelector", selector).Do(ctx).StatusCode(&code).Raw()
	if err != nil {
		return nil, code, err
	}
	var list emv1beta1.ExternalMetricValueList
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, code, fmt.Errorf("decoding %s: %w", raw, err)
	}
	return &list, code, nil
}

// kedaEvents lists the events of KEDA's HPA, oldest first.
func kedaEvents(ctx context.Context, t *testing.T, c *cluster.Cluster) []hpaEvent {
	t.Helper()
	events, err := hpaEventsOf(ctx, c, kedaHPA)
	if err != nil {
		t.Fatal(err)
	}
	return events
}

// kedaScale waits until command has want ready replicas and KEDA's HPA has
// sent, since base, the SuccessfulRescale "New size: <want>; ..." whose
// message contains reason (a new event, or one the recorder counted up).
// The size must be in the event, not only in the Deployment: the recorder
// sends events from a queue of its own, after a failed write 0-10 s late,
// and the checks after this one read the event.
func kedaScale(ctx context.Context, t *testing.T, w *world, c *cluster.Cluster, base eventCounts, want int32, reason string, timeout time.Duration) string {
	t.Helper()
	return w.waitFor(ctx, timeout, fmt.Sprintf("command scaled to %d with a new SuccessfulRescale \"New size: %d; ...%s\"", want, want, reason), func() (bool, string) {
		spec, ready, err := replicas(ctx, c)
		if err != nil {
			return false, err.Error()
		}
		evs := base.since(kedaEvents(ctx, t, c), reasonRescale)
		found, last := false, ""
		size := fmt.Sprintf("New size: %d; ", want)
		for _, e := range evs {
			if msg := strings.TrimPrefix(e.message, combinedPrefix); strings.HasPrefix(msg, size) && strings.Contains(msg, reason) {
				found = true
			}
			last = e.message
		}
		return spec == want && ready == want && found, fmt.Sprintf("replicas %d (ready %d); %d new rescale events, last %q", spec, ready, len(evs), last)
	})
}

// warningEvents returns the Warning events in kong by name, with their
// counts.
func warningEvents(ctx context.Context, t *testing.T, c *cluster.Cluster) map[string]corev1.Event {
	t.Helper()
	list, err := c.Client.CoreV1().Events("kong").List(ctx, metav1.ListOptions{FieldSelector: "type=Warning"})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]corev1.Event{}
	for _, e := range list.Items {
		out[e.Name] = e
	}
	return out
}

// newWarnings describes the events of after that are not in before, or
// have counted up since.
func newWarnings(before, after map[string]corev1.Event) []string {
	var out []string
	for name, e := range after {
		if b, ok := before[name]; !ok || b.Count != e.Count {
			out = append(out, fmt.Sprintf("%s %s/%s %s: %s (x%d)", e.Reason, e.InvolvedObject.Kind, e.InvolvedObject.Name, e.Type, e.Message, e.Count))
		}
	}
	sort.Strings(out)
	return out
}

// kedaStep5 makes the sidecar's extension stop selecting command, as
// TestTutorial's step 6 does, while command runs want replicas under load,
// and asserts what follows: the query returns nothing; command keeps its
// replicas throughout; with ignoreNullValues "false" KEDA's scaler fails instead of
// reading 0, the external metrics API answers with an error, the HPA reports
// FailedGetExternalMetric (condition and warning event) and keeps command's
// replicas, and the ScaledObject turns Ready=False (TriggerError) with a
// KEDAScalerFailed warning event.
func kedaStep5(ctx context.Context, t *testing.T, w *world, c *cluster.Cluster, dp *dataPlanes, prom *harness.Prometheus, query string, metric func() (*emv1beta1.ExternalMetricValueList, int, error), want int32) {
	t.Helper()
	before := snapshot(kedaEvents(ctx, t, c))
	warnings := warningEvents(ctx, t, c)
	deselectCommand(ctx, t, c)
	updatedAt := time.Now()
	w.waitFor(ctx, 60*time.Second, "every sidecar stops exporting command", func() (bool, string) {
		pods := dp.running()
		done := len(pods) > 0
		var obs []string
		for _, k := range pods {
			body, err := harness.Get(ctx, k.sidecarURL+"/metrics")
			has := strings.Contains(string(body), `exported_service="command"`)
			done = done && err == nil && !has
			obs = append(obs, fmt.Sprintf("%s exports command: %v (%v)", k.name, has, err))
		}
		return done, strings.Join(obs, "; ")
	})
	w.step("step 5: extension no longer selects command; every sidecar stopped exporting it after %s", time.Since(updatedAt).Round(time.Second))
	w.waitFor(ctx, 150*time.Second, "the ScaledObject's query returns nothing", func() (bool, string) {
		if spec, _, err := replicas(ctx, c); err == nil && spec != want {
			t.Fatalf("while the series went away command went from %d to %d replicas", want, spec)
		}
		s, err := prom.Query(ctx, query)
		if err != nil {
			return false, err.Error()
		}
		return len(s) == 0, fmt.Sprintf("%d samples %v", len(s), s)
	})
	emptyAfter := time.Since(updatedAt).Round(time.Second)
	w.step("step 5: the query returns nothing %s after the update", emptyAfter)

	var metricErr, hpaCond, soCond string
	obs := w.waitFor(ctx, 120*time.Second, "KEDA and the HPA report the lost series", func() (bool, string) {
		if spec, _, err := replicas(ctx, c); err == nil && spec != want {
			t.Fatalf("with the series gone command went from %d to %d replicas", want, spec)
		}
		list, code, err := metric()
		if err == nil {
			return false, fmt.Sprintf("external metric still served: %v", list.Items)
		}
		metricErr = fmt.Sprintf("HTTP %d: %v", code, err)
		hpa, err := c.Client.AutoscalingV2().HorizontalPodAutoscalers("kong").Get(ctx, kedaHPA, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		hpaOK := false
		for _, cd := range hpa.Status.Conditions {
			if cd.Type == autoscalingv2.ScalingActive {
				hpaCond = fmt.Sprintf("ScalingActive=%s %s", cd.Status, cd.Reason)
				hpaOK = cd.Status == corev1.ConditionFalse && cd.Reason == "FailedGetExternalMetric"
			}
		}
		u, err := unstructuredGet(ctx, c, "kong", scaledObject)
		if err != nil {
			return false, err.Error()
		}
		s, r, _ := condition(u, "Ready")
		soCond = fmt.Sprintf("Ready=%s %s", s, r)
		return hpaOK && s == "False" && r == "TriggerError", fmt.Sprintf("metric %s; HPA %s; ScaledObject %s", metricErr, hpaCond, soCond)
	})
	added := newWarnings(warnings, warningEvents(ctx, t, c))
	var reasons []string
	for _, a := range added {
		reasons = append(reasons, strings.SplitN(a, " ", 2)[0])
	}
	for _, want := range []string{"FailedGetExternalMetric HorizontalPodAutoscaler/" + kedaHPA, "KEDAScalerFailed ScaledObject/" + scaledObject} {
		found := false
		for _, a := range added {
			found = found || strings.HasPrefix(a, want+" ")
		}
		if !found {
			t.Fatalf("no warning %s; new warnings: %v", want, added)
		}
	}
	if again := before.since(kedaEvents(ctx, t, c), reasonRescale); len(again) > 0 {
		t.Fatalf("with the series gone the HPA rescaled: %v", again)
	}
	if spec, _, err := replicas(ctx, c); err != nil || spec != want {
		t.Fatalf("with the series gone command has %d replicas, want the %d it had (%v)", spec, want, err)
	}
	t.Logf("warning events after the series went: %v", added)
	w.step("step 5 passed: series gone: %s; command kept its %d replicas, no rescale; new warnings %v", obs, want, reasons)
}

func unstructuredGet(ctx context.Context, c *cluster.Cluster, ns, name string) (*unstructured.Unstructured, error) {
	raw, err := c.Client.Discovery().RESTClient().Get().AbsPath("/apis/keda.sh/v1alpha1/namespaces/" + ns + "/scaledobjects/" + name).DoRaw(ctx)
	if err != nil {
		return nil, err
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(raw); err != nil {
		return nil, err
	}
	return u, nil
}

// typedHPA converts a built HorizontalPodAutoscaler.
func typedHPA(t *testing.T, o *unstructured.Unstructured) *autoscalingv2.HorizontalPodAutoscaler {
	t.Helper()
	var h autoscalingv2.HorizontalPodAutoscaler
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &h); err != nil {
		t.Fatal(err)
	}
	return &h
}

// sameBehavior compares what the tutorial's HPA sets of a behaviour; the
// API server defaults the rest (scaleDown's selectPolicy) in what it stores.
func sameBehavior(got, want *autoscalingv2.HorizontalPodAutoscalerBehavior) error {
	if got == nil || want == nil {
		return fmt.Errorf("behavior %+v, want %+v", got, want)
	}
	for _, r := range []struct {
		name      string
		got, want *autoscalingv2.HPAScalingRules
	}{{"scaleUp", got.ScaleUp, want.ScaleUp}, {"scaleDown", got.ScaleDown, want.ScaleDown}} {
		if r.got == nil || r.want == nil {
			return fmt.Errorf("%s %+v, want %+v", r.name, r.got, r.want)
		}
		if !reflect.DeepEqual(r.got.StabilizationWindowSeconds, r.want.StabilizationWindowSeconds) || !reflect.DeepEqual(r.got.Policies, r.want.Policies) ||
			(r.want.SelectPolicy != nil && !reflect.DeepEqual(r.got.SelectPolicy, r.want.SelectPolicy)) {
			return fmt.Errorf("%s %+v, want %+v", r.name, *r.got, *r.want)
		}
	}
	return nil
}

// bearerProxy stands for an authenticating proxy in front of Prometheus:
// it forwards a request only with "Authorization: Bearer <token>" and
// counts what it forwarded and what it refused.
type bearerProxy struct {
	URL                string
	mu                 sync.Mutex
	forwarded, refused int
}

func startBearerProxy(t *testing.T, target, token string) *bearerProxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p := &bearerProxy{}
	rp := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		ok := subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), []byte("Bearer "+token)) == 1
		p.mu.Lock()
		if ok {
			p.forwarded++
		} else {
			p.refused++
		}
		p.mu.Unlock()
		if !ok {
			http.Error(rw, "bearer token required", http.StatusUnauthorized)
			return
		}
		rp.ServeHTTP(rw, r)
	}))
	t.Cleanup(srv.Close)
	p.URL = srv.URL
	return p
}

func (p *bearerProxy) counts() (forwarded, refused int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.forwarded, p.refused
}

// setReplicas sets spec.replicas of the built object kind/name.
func setReplicas(objs []*unstructured.Unstructured, kind, name string, n int64) error {
	o, err := find(objs, kind, name)
	if err != nil {
		return err
	}
	if _, found, _ := unstructured.NestedFieldNoCopy(o.Object, "spec", "replicas"); !found {
		return fmt.Errorf("%s %s has no spec.replicas to set", kind, name)
	}
	return unstructured.SetNestedField(o.Object, n, "spec", "replicas")
}
