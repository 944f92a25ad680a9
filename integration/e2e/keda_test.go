package e2e_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	emv1beta1 "k8s.io/metrics/pkg/apis/external_metrics/v1beta1"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/testsupport/harness"
)

// The KEDA scenario (issue 15, docs/keda.md): the tutorial's setup with
// manifests/examples/keda's ScaledObject (with its bearer-auth Component)
// in place of the tutorial's HPA, and the real KEDA operator and metrics
// API server, from the module integration/e2e/bins/keda builds, as local
// processes against the API server; KEDA queries Prometheus through a
// proxy that wants the bearer token of the example's Secret.
const (
	kedaModule    = "github.com/kedacore/keda/v2"
	kedaNamespace = "keda"
	// Both KEDA processes run as KEDA's ServiceAccount: config/rbac and
	// config/metrics-server bind their roles to it.
	kedaUser     = "system:serviceaccount:keda:keda-operator"
	kedaHPA      = "keda-hpa-command"
	scaledObject = "command"
	// The scenario runs one Kong pod and one Prometheus, as the tutorial
	// does: what it is about is KEDA's path from Prometheus to the HPA;
	// TestTutorial covers three Kong replicas and the HA pair.
	kedaKongReplicas = 1
	kedaPromReplicas = 1
)

var scaledObjectResource = schema.GroupVersionResource{Group: "keda.sh", Version: "v1alpha1", Resource: "scaledobjects"}

func TestKEDA(t *testing.T) {
	if testing.Short() {
		t.Skip("the end-to-end test starts a control plane; not in -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 9*time.Minute)
	defer cancel()
	modules := []string{"etcd", "kubernetes", "prometheus", "prometheus-operator", "keda"}
	tb := startTestbed(ctx, t, modules...)
	if tb == nil {
		return // it ran in its own network namespace
	}
	w, logger, dir, third, own := tb.w, tb.logger, tb.dir, tb.third, tb.own
	kedaDir, err := kedaModuleDir(ctx)
	if err != nil {
		t.Fatal(err)
	}
	w.step("binaries ready (KEDA %s from %s)", third["E2E_KEDA_OPERATOR_BIN"], kedaDir)

	c := tb.startControlPlane(ctx, t)

	// The tutorial's objects as TestTutorial applies them, without the
	// tutorial's HPA and prometheus-adapter's APIServices: no adapter runs.
	all, injectorAddr, _ := tb.buildTutorial(t, c)
	tutorialHPA, err := find(all, "HorizontalPodAutoscaler", "command")
	if err != nil {
		t.Fatal(err)
	}
	var objs []*unstructured.Unstructured
	for _, o := range all {
		if (o.GetKind() == "HorizontalPodAutoscaler" && o.GetName() == "command") || o.GetKind() == "APIService" {
			continue
		}
		objs = append(objs, o)
	}
	if err := setReplicas(objs, "Deployment", "kong", kedaKongReplicas); err != nil {
		t.Fatal(err)
	}
	if err := setReplicas(objs, "Prometheus", promName, kedaPromReplicas); err != nil {
		t.Fatal(err)
	}
	if len(objs) != len(all)-3 {
		t.Fatalf("the tutorial's build should hold one HPA command and two APIServices (custom.metrics.k8s.io v1beta1, v1beta2); dropped %d objects", len(all)-len(objs))
	}
	sidecarPort := tb.runKubelet(ctx, t, c, objs)
	startInjector(t, w, c, objs, own["kong-metrics-injector"], injectorAddr, filepath.Join(dir, "injector"))
	ap, err := newApplier(c.Admin)
	if err != nil {
		t.Fatal(err)
	}
	n, err := ap.applyAll(ctx, objs)
	if err != nil {
		t.Fatal(err)
	}
	w.step("applied the tutorial's %d objects without its HPA, with %d Kong replica and %d Prometheus replica (%s)", n, kedaKongReplicas, kedaPromReplicas, kinds(objs))
	startOperator(t, w, c, third["E2E_PROMETHEUS_OPERATOR_BIN"], filepath.Join(dir, "operator"))
	dp := &dataPlanes{w: w, c: c, own: own, sidecarPort: sidecarPort, dir: filepath.Join(dir, "pods"), logger: logger}
	runDataPlanes(ctx, t, dp)
	pods := dp.waitRunning(ctx, kedaKongReplicas, 60*time.Second)
	lb := startServiceProxy(ctx, t, c, "kong", "kong-proxy", "proxy")
	w.waitFor(ctx, 30*time.Second, "Service kong/kong-proxy has the Kong pod as ready endpoint", func() (bool, string) {
		eps := lb.endpoints()
		return len(eps) == kedaKongReplicas, fmt.Sprint(eps)
	})
	w.step("data plane up: Kong pod %s with its simulator and sidecar; Service kong/kong-proxy sends requests to %v", podNames(pods), lb.endpoints())
	proms := startMonitoring(ctx, t, w, c, third["E2E_PROMETHEUS_BIN"], filepath.Join(dir, "prometheus"))
	if len(proms) != kedaPromReplicas {
		t.Fatalf("%d Prometheus replicas run, want %d", len(proms), kedaPromReplicas)
	}
	prom := &proms[0].Prometheus
	tr := startTraffic(ctx, lb.URL, "0.1")
	t.Cleanup(func() { _, _ = tr.stop() })

	// --- KEDA: its CRDs, RBAC and APIService from its module, the
	// example's ScaledObject pointed at the test's Prometheus.
	// KEDA reaches Prometheus through a proxy that wants a bearer token,
	// with the example's bearer-auth Component and the Secret it names.
	token := rand.Text()
	proxy := startBearerProxy(t, prom.URL, token)
	if _, err := c.Client.CoreV1().Secrets("kong").Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "keda-prometheus"},
		StringData: map[string]string{"bearerToken": token},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	adapterAddr := freeAddr(t)
	kobjs, err := kedaBuild(filepath.Join(dir, "keda-kustomize"), kedaDir, c.CA.CertPEM, port(t, adapterAddr), proxy.URL)
	if err != nil {
		t.Fatal(err)
	}
	so, err := find(kobjs, "ScaledObject", scaledObject)
	if err != nil {
		t.Fatal(err)
	}
	trig, _, _ := unstructured.NestedSlice(so.Object, "spec", "triggers")
	var query string
	if len(trig) == 1 {
		query, _, _ = unstructured.NestedString(trig[0].(map[string]any), "metadata", "query")
	}
	if query == "" {
		t.Fatalf("the example's ScaledObject has no prometheus query: %v", trig)
	}
	// The example's query on the test's Prometheus: one sample, ~100 ms.
	obs := w.waitFor(ctx, 120*time.Second, "the ScaledObject's query returns one sample of 100 ms ± 10%", func() (bool, string) {
		s, err := prom.Query(ctx, query)
		if err != nil {
			return false, err.Error()
		}
		if len(s) != 1 {
			return false, fmt.Sprintf("%d samples", len(s))
		}
		return s[0].Value >= 90 && s[0].Value <= 110, fmt.Sprintf("%v = %.1f", s[0].Metric, s[0].Value)
	})
	w.step("the example's query on Prometheus: %s", obs)

	// The ScaledObject goes in once the external metrics APIService is
	// Available (step 1): before, KEDA's HPA would fail its syncs, two
	// Warning events each, against the recorder's budget of 25 per type
	// that step 5 needs one of.
	kconfig := without(kobjs, so)
	n, err = ap.applyAll(ctx, kconfig)
	if err != nil {
		t.Fatal(err)
	}
	w.step("applied KEDA's config (CRDs, RBAC, APIService) from its module and the example's TriggerAuthentication: %d objects (%s)", n, kinds(kconfig))
	grpcAddr := freeAddr(t)
	startKEDAOperator(t, w, c, third["E2E_KEDA_OPERATOR_BIN"], grpcAddr, filepath.Join(dir, "keda-operator"))
	startKEDAAdapter(t, w, c, third["E2E_KEDA_ADAPTER_BIN"], adapterAddr, grpcAddr, filepath.Join(dir, "keda-adapter"))

	// --- Step 1: the ScaledObject is Ready and KEDA's HPA appears.
	hpa := kedaStep1(ctx, t, w, c, ap, so, typedHPA(t, tutorialHPA))
	if _, err := harness.Get(ctx, proxy.URL+"/api/v1/query?query=up"); err == nil {
		t.Fatal("the bearer proxy forwarded a query without the token")
	}
	ext := hpa.Spec.Metrics[0].External
	sel, err := metav1.LabelSelectorAsSelector(ext.Metric.Selector)
	if err != nil {
		t.Fatal(err)
	}
	metricPath := "/apis/external.metrics.k8s.io/v1beta1/namespaces/kong/" + ext.Metric.Name
	metric := func() (*emv1beta1.ExternalMetricValueList, int, error) {
		return externalMetric(ctx, c, metricPath, sel.String())
	}

	// --- Step 2: at sleep 0.1, 100 ms and up to 10 replicas.
	obs = w.waitFor(ctx, 120*time.Second, "GET "+metricPath+"?labelSelector="+sel.String()+" = 100 ms ± 10%", func() (bool, string) {
		list, code, err := metric()
		if err != nil {
			return false, fmt.Sprintf("HTTP %d: %v", code, err)
		}
		if len(list.Items) != 1 {
			return false, fmt.Sprintf("%d items", len(list.Items))
		}
		mv := list.Items[0].Value.MilliValue()
		return mv >= 90_000 && mv <= 110_000, "value " + list.Items[0].Value.String()
	})
	fwd, refused := proxy.counts()
	if fwd == 0 || refused != 1 {
		t.Fatalf("bearer proxy: %d queries forwarded, %d refused; want KEDA's forwarded and only the test's own tokenless one refused", fwd, refused)
	}
	w.step("step 2a passed: external metric %s for ScaledObject command: %s (KEDA's %d queries carried the TriggerAuthentication's bearer token; a query without it was refused)", ext.Metric.Name, obs, fwd)
	obs = kedaScale(ctx, t, w, c, eventCounts{}, 10, "above target", 150*time.Second)
	up, err := rescales(kedaEvents(ctx, t, c))
	if err != nil {
		t.Fatal(err)
	}
	sizes := make([]int, len(up))
	for i, r := range up {
		sizes[i] = r.size
	}
	for i := 1; i < len(sizes); i++ {
		if sizes[i] <= sizes[i-1] {
			t.Fatalf("SuccessfulRescale sizes on the way up are not strictly increasing: %v", sizes)
		}
	}
	if len(sizes) == 0 || sizes[len(sizes)-1] != 10 {
		t.Fatalf("SuccessfulRescale sizes %v, want them to end at exactly 10", sizes)
	}
	w.step("step 2b passed: KEDA's HPA scaled command up through sizes %v: %s", sizes, obs)
	doctorBin, err := doctorBinary(ctx, own)
	if err != nil {
		t.Fatal(err)
	}
	d := newDoctor(t, c, doctorBin, prom.URL, "scaledobject/"+scaledObject)
	// KEDA sets Active on its own polling interval: one run may see it late.
	w.waitFor(ctx, 60*time.Second, "the doctor: scaledobject Ready and Active", func() (bool, string) {
		_, r, _, err := d.run(ctx)
		if err != nil || len(r.Links) == 0 {
			return false, fmt.Sprint(err)
		}
		last := r.Links[len(r.Links)-1].Detail
		return strings.Contains(last, "Ready and Active"), last
	})
	w.step("doctor on scaledobject/%s at 10 replicas: exit 0, every link ok (%s)", scaledObject, d.expectWhole(ctx, t, "Ready and Active"))

	// --- Step 3: at sleep 0, back to 1.
	ok, err := tr.stop()
	t.Logf("traffic at sleep 0.1: %d requests, error %v", ok, err)
	tr = startTraffic(ctx, lb.URL, "0")
	obs = kedaScale(ctx, t, w, c, snapshot(kedaEvents(ctx, t, c)), 1, "All metrics below target", 180*time.Second)
	w.step("step 3 passed: at sleep 0 KEDA's HPA scaled command back to 1: %s", obs)

	// --- Step 4: traffic stopped: 0, and nothing moves.
	ok, err = tr.stop()
	t.Logf("traffic at sleep 0: %d requests, error %v", ok, err)
	before := snapshot(kedaEvents(ctx, t, c))
	warnings := warningEvents(ctx, t, c)
	stopped := time.Now()
	obs = w.waitFor(ctx, 150*time.Second, "with traffic stopped, the external metric reads 0 and command stays at 1", func() (bool, string) {
		list, code, err := metric()
		if spec, _, rerr := replicas(ctx, c); rerr == nil && spec != 1 {
			t.Fatalf("with traffic stopped command went to %d replicas", spec)
		}
		if err != nil {
			return false, fmt.Sprintf("HTTP %d: %v", code, err)
		}
		if len(list.Items) != 1 {
			return false, fmt.Sprintf("%d items", len(list.Items))
		}
		return list.Items[0].Value.IsZero(), "value " + list.Items[0].Value.String()
	})
	zeroAfter := time.Since(stopped).Round(time.Second)
	// Hold: a few HPA syncs and a KEDA polling interval at 0.
	for end := time.Now().Add(35 * time.Second); time.Now().Before(end); time.Sleep(2 * time.Second) {
		list, code, err := metric()
		if err != nil || len(list.Items) != 1 || !list.Items[0].Value.IsZero() {
			t.Fatalf("with traffic stopped the external metric left 0: HTTP %d %v %v", code, err, list)
		}
		if spec, _, err := replicas(ctx, c); err != nil || spec != 1 {
			t.Fatalf("with traffic stopped command has %d replicas (%v)", spec, err)
		}
	}
	if again := before.since(kedaEvents(ctx, t, c), reasonRescale); len(again) > 0 {
		t.Fatalf("with traffic stopped the HPA rescaled: %v", again)
	}
	if added := newWarnings(warnings, warningEvents(ctx, t, c)); len(added) > 0 {
		t.Fatalf("with traffic stopped: warning events %v", added)
	}
	w.step("step 4 passed: traffic stopped: external metric 0 after %s (%s); command stayed at 1 for 35s more, no rescale, no warning event", zeroAfter, obs)
	// No traffic is not a fault: the doctor exits 0 and says idle.
	obs = w.waitFor(ctx, 60*time.Second, "the doctor: exit 0, every link ok, the ScaledObject idle", func() (bool, string) {
		code, r, stderr, err := d.run(ctx)
		if err != nil {
			return false, err.Error()
		}
		_, notOK := r.verdict()
		last := r.Links[len(r.Links)-1]
		return code == 0 && len(notOK) == 0 && strings.Contains(last.Detail, "Idle, not a fault"), fmt.Sprintf("exit %d, not ok %v, %s: %s %s", code, notOK, last.Name, last.Detail, stderr)
	})
	w.step("doctor with traffic stopped: %s", obs)

	// --- Step 5: the extension no longer selects command, under load, so
	// that keeping the replicas and scaling to the minimum differ.
	tr = startTraffic(ctx, lb.URL, "0.1")
	obs = kedaScale(ctx, t, w, c, snapshot(kedaEvents(ctx, t, c)), 10, "above target", 150*time.Second)
	w.step("step 5: traffic at sleep 0.1 again: %s", obs)
	kedaStep5(ctx, t, w, c, dp, prom, query, metric, 10)
	w.step("doctor on scaledobject/%s with the ConfigMap not selecting command: %s", scaledObject, d.waitBroken(ctx, t, w, 30*time.Second, "extension", "not kong/command"))
}
