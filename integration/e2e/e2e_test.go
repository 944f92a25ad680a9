// Package e2e_test runs Kong's tutorial "Autoscale workloads with
// Prometheus" with kong-metrics-sidecar on a real control plane: etcd,
// kube-apiserver (aggregation layer on), kube-controller-manager (HPA),
// Prometheus Operator, Prometheus 3 with the configuration the operator
// generates and a custom-metrics adapter, all in a network namespace of
// the test's own. See README.md for what runs where and what stands in for
// what.
package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	cmv1beta1 "k8s.io/metrics/pkg/apis/custom_metrics/v1beta1"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/integration/e2e/adapter"
	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/integration/e2e/cluster"
	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/testsupport/harness"
)

const (
	sidecarName = "kong-metrics-sidecar"
	injectLabel = "kong-metrics-sidecar.io/inject"
	metricName  = "kong_upstream_latency_ms_60s_average"
	metricPath  = "/apis/custom.metrics.k8s.io/v1beta1/namespaces/kong/services/command/" + metricName
	// Discovery looks back one relist interval (prometheus-adapter's
	// default --metrics-max-age), so it must span two scrapes (15s) or
	// series drop out of discovery between them and the metric flaps to 404.
	adapterRelist = 30 * time.Second
	// kongReplicas is the Kong Deployment's replicas in overlay/kong.yaml.
	kongReplicas = 3
	// minFetchInterval is SIDECAR_MIN_FETCH_INTERVAL as docs/reference.md
	// recommends it for the shipped ServiceMonitor's 15s: a few seconds
	// less than the scrape interval, so that however many Prometheus
	// replicas scrape a sidecar, Kong is fetched once per interval. The
	// overlay sets it on the injector (INJECTOR_SIDECAR_MIN_FETCH_INTERVAL),
	// which puts it in every injected sidecar.
	minFetchInterval = 12 * time.Second
)

func TestTutorial(t *testing.T) {
	if testing.Short() {
		t.Skip("the end-to-end test starts a control plane; not in -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 18*time.Minute)
	defer cancel()
	modules := []string{"etcd", "kubernetes", "prometheus", "prometheus-operator"}
	tb := startTestbed(ctx, t, modules...)
	if tb == nil {
		return // it ran in its own network namespace
	}
	w, logger, dir, third, own := tb.w, tb.logger, tb.dir, tb.third, tb.own
	adapterBin, adapterName, err := adapterBinary(ctx)
	if err != nil {
		t.Fatal(err)
	}
	doctorBin, err := doctorBinary(ctx, own)
	if err != nil {
		t.Fatal(err)
	}
	w.step("binaries ready (custom metrics: %s; doctor %s)", adapterName, doctorBin)

	c := tb.startControlPlane(ctx, t)

	objs, injectorAddr, adapterAddr := tb.buildTutorial(t, c)
	sidecarPort := tb.runKubelet(ctx, t, c, objs)

	// --- The injector, as the shipped Deployment configures it.
	injector := startInjector(t, w, c, objs, own["kong-metrics-injector"], injectorAddr, filepath.Join(dir, "injector"))

	// --- Step 1: apply.
	ap, err := newApplier(c.Admin)
	if err != nil {
		t.Fatal(err)
	}
	// The tutorial creates its HPA last, once the custom metric is
	// served; so does the test (step 5). Created before, it would spend
	// its Warning events on a metric that is not there yet: the event
	// recorder lets an object's events of one type through at 25 at
	// once, then one per 5 minutes, and the faults need them.
	hpaObj, err := find(objs, "HorizontalPodAutoscaler", "command")
	if err != nil {
		t.Fatal(err)
	}
	n, err := ap.applyAll(ctx, without(objs, hpaObj))
	if err != nil {
		t.Fatal(err)
	}
	w.step("step 1 passed: server-side applied %d objects (%s)", n, kinds(objs))
	combined, perRule := tutorialRoute(ctx, t, c)
	w.step("step 1: HTTPRoute kong/command stored with its backendRef's weight defaulted to 1: Kong Operator 2.1+ names its Kong service %s, Kong Gateway Operator 1.x %s", combined, perRule)
	startOperator(t, w, c, third["E2E_PROMETHEUS_OPERATOR_BIN"], filepath.Join(dir, "operator"))

	// --- Step 2: the webhook.
	kongPods := step2Webhook(ctx, t, w, c, injector)
	// The injector again, as its Deployment's pods would be: a Kong pod
	// the ReplicaSet replaces gets the sidecar too.
	startInjectorAgain := func() *harness.Process {
		return startInjector(t, w, c, objs, own["kong-metrics-injector"], injectorAddr, filepath.Join(dir, "injector"))
	}
	injector = startInjectorAgain()

	// --- Step 3: the data planes, the sidecars and Prometheus.
	dp := &dataPlanes{w: w, c: c, own: own, sidecarPort: sidecarPort, dir: filepath.Join(dir, "pods"), logger: logger, kongServices: simServices(combined)}
	runDataPlanes(ctx, t, dp)
	pods := podNames(dp.waitRunning(ctx, kongReplicas, 60*time.Second))
	if !slices.Equal(pods, kongPods) {
		t.Fatalf("running Kong pods %v, want the Deployment's %v", pods, kongPods)
	}
	lb := startServiceProxy(ctx, t, c, "kong", "kong-proxy", "proxy")
	w.waitFor(ctx, 30*time.Second, "Service kong/kong-proxy has the three Kong pods as ready endpoints", func() (bool, string) {
		eps := lb.endpoints()
		return len(eps) == kongReplicas, fmt.Sprint(eps)
	})
	w.step("data planes up: %d Kong pods, each with its simulator (Kong service %s) and sidecar on its own address; Service kong/kong-proxy spreads requests over %v", kongReplicas, combined, lb.endpoints())
	stepRouteMapping(ctx, t, w, c, dp)
	proms := startMonitoring(ctx, t, w, c, third["E2E_PROMETHEUS_BIN"], filepath.Join(dir, "prometheus"))
	startAlerts(ctx, t, w, c, ap, proms, filepath.Join(dir, "alerts"))
	tr := startTraffic(ctx, lb.URL, "0.1")
	t.Cleanup(func() { _, _ = tr.stop() }) // the traffic steps check it; this only ends it
	for _, r := range proms {
		step3Scrape(ctx, t, w, r, pods)
	}
	stepHonorLabels(ctx, t, w, c, proms, pods)
	stepPodMonitor(ctx, t, w, c, ap, proms, pods)
	stepHA(ctx, t, w, objs, proms, dp)

	// --- Step 4: the custom metric, from the first Prometheus.
	startAdapter(t, w, c, adapterBin, adapterAddr, proms[0].URL, filepath.Join(dir, "adapter"))
	step4Metric(ctx, t, w, c)
	stepSpread(ctx, t, w, proms[0], pods)
	stepAlertsQuiet(ctx, t, w, proms, 20*time.Second)

	// --- Step 5: the HPA, with faults at 10 replicas.
	if err := ap.apply(ctx, hpaObj); err != nil {
		t.Fatal(err)
	}
	w.step("step 5: the tutorial's HPA applied, as the tutorial does once the custom metric is served")
	hpa := step5ScaleUp(ctx, t, w, c)
	stepPodDeleted(ctx, t, w, c, dp, proms, hpa)
	stepKongRestart(ctx, t, w, c, dp, proms, hpa)
	stepKongDownAlert(ctx, t, w, dp, proms)
	stepPrometheusRestart(ctx, t, w, c, proms, hpa)
	stepRouteRuleNames(ctx, t, w, c, dp, proms, combined, perRule)
	step5ScaleDown(ctx, t, w, c, lb, &tr, hpa)
	stepExtensionBrokenAlert(ctx, t, w, c, proms)

	// --- Step 6: hot reload through the API server.
	step6Reload(ctx, t, w, c, dp)
	stepSeriesLostAlert(ctx, w, proms)

	// --- kubectl kong-metrics doctor on the chain, whole and broken.
	stepDoctor(ctx, t, w, c, dp, proms, lb, &tr, doctorBin, &injector, startInjectorAgain)
}

func podNames(pods []*kongPod) []string {
	names := make([]string, len(pods))
	for i, k := range pods {
		names[i] = k.name
	}
	return names
}

// adapterBinary is $PROMETHEUS_ADAPTER_BIN, else the test adapter, built.
func adapterBinary(ctx context.Context) (bin, name string, err error) {
	if bin := os.Getenv("PROMETHEUS_ADAPTER_BIN"); bin != "" {
		return bin, "prometheus-adapter " + bin, nil
	}
	out := filepath.Join(harness.RepoRoot(), "integration", ".work", "bin", "test-adapter")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/test-adapter")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("building the test adapter: %w\n%s", err, b)
	}
	return out, "the test adapter (set PROMETHEUS_ADAPTER_BIN for prometheus-adapter)", nil
}

func freeAddr(t *testing.T) string {
	t.Helper()
	a, err := harness.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func port(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// startInjector runs kong-metrics-injector with the environment of the
// shipped Deployment's container, its TLS and listen addresses changed to
// local ones. The serving certificate has the name the API server dials.
func startInjector(t *testing.T, w *world, c *cluster.Cluster, objs []*unstructured.Unstructured, bin, addr, dir string) *harness.Process {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	dep, err := find(objs, "Deployment", "kong-metrics-injector")
	if err != nil {
		t.Fatal(err)
	}
	var d appsv1.Deployment
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(dep.Object, &d); err != nil {
		t.Fatal(err)
	}
	cert, key := servingCert(t, c, dir, "kong-metrics-injector.kong-metrics-sidecar-system.svc")
	env := []string{
		"INJECTOR_LISTEN_ADDR=" + addr,
		"INJECTOR_TLS_CERT_FILE=" + cert,
		"INJECTOR_TLS_KEY_FILE=" + key,
		"INJECTOR_METRICS_ADDR=" + freeAddr(t),
	}
	for _, e := range d.Spec.Template.Spec.Containers[0].Env {
		if strings.HasPrefix(e.Name, "INJECTOR_") && e.ValueFrom == nil {
			env = append(env, e.Name+"="+e.Value)
		}
	}
	// The route mapping reaches the API server as the injector's
	// ServiceAccount would, so that the shipped RBAC is what allows it.
	kubeconfig, err := c.Kubeconfig("injector", "system:serviceaccount:"+d.Namespace+":"+d.Spec.Template.Spec.ServiceAccountName,
		[]string{"system:serviceaccounts", "system:serviceaccounts:" + d.Namespace})
	if err != nil {
		t.Fatal(err)
	}
	env = append(env, "INJECTOR_KUBECONFIG="+kubeconfig)
	if bin == "" {
		t.Fatal("no kong-metrics-injector binary (cmd/kong-metrics-injector)")
	}
	p, err := harness.Start("kong-metrics-injector", bin, nil, env)
	if err != nil {
		t.Fatal(err)
	}
	w.started(p)
	if err := harness.WaitHTTPS("https://"+addr+"/readyz", c.CA.Pool(), p, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	w.step("injector ready on %s (%s)", addr, strings.Join(env[4:], " "))
	return p
}

// sidecarOf returns the injected sidecar container of pod, if any.
func sidecarOf(pod *corev1.Pod) (*corev1.Container, bool) {
	for i := range pod.Spec.InitContainers {
		if pod.Spec.InitContainers[i].Name == sidecarName {
			return &pod.Spec.InitContainers[i], true
		}
	}
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == sidecarName {
			return &pod.Spec.Containers[i], false
		}
	}
	return nil, false
}

func step2Webhook(ctx context.Context, t *testing.T, w *world, c *cluster.Cluster, injector *harness.Process) []string {
	t.Helper()
	pods := c.Client.CoreV1().Pods("kong")
	var kongPods []string
	var summary string
	w.waitFor(ctx, 60*time.Second, fmt.Sprintf("the Kong Deployment's %d pods, each with the sidecar", kongReplicas), func() (bool, string) {
		list, err := pods.List(ctx, metav1.ListOptions{LabelSelector: "app=kong"})
		if err != nil {
			return false, err.Error()
		}
		kongPods = nil
		var sums []string
		for i := range list.Items {
			p := &list.Items[i]
			sc, native := sidecarOf(p)
			if sc == nil {
				t.Fatalf("pod %s of the opted-in Kong Deployment was stored without the sidecar: %s", p.Name, podSummary(p))
			}
			if native && (sc.RestartPolicy == nil || *sc.RestartPolicy != corev1.ContainerRestartPolicyAlways) {
				t.Fatalf("native sidecar without restartPolicy Always: %s", podSummary(p))
			}
			kongPods = append(kongPods, p.Name)
			sums = append(sums, podSummary(p))
		}
		slices.Sort(kongPods)
		summary = strings.Join(sums, ", ")
		return len(kongPods) == kongReplicas, summary
	})

	// A Kong pod that did not opt in is stored as sent.
	plain := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "kong-not-opted-in", Labels: map[string]string{"app": "kong-plain"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "proxy", Image: "kong/kong-gateway:3.9"}}},
	}
	got, err := pods.Create(ctx, plain, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Spec.InitContainers) != 0 || len(got.Spec.Containers) != 1 || len(got.Annotations) != 0 || len(got.Spec.Volumes) != 1 {
		// One volume: the service-account token the API server adds.
		t.Fatalf("unlabelled pod changed: %s", podSummary(got))
	}
	cmd, err := pods.List(ctx, metav1.ListOptions{LabelSelector: "app=command"})
	if err != nil || len(cmd.Items) == 0 {
		t.Fatalf("command pods: %v (%d)", err, len(cmd.Items))
	}
	if sc, _ := sidecarOf(&cmd.Items[0]); sc != nil {
		t.Fatalf("command pod got the sidecar: %s", podSummary(&cmd.Items[0]))
	}

	// With the injector down, failurePolicy Ignore lets opted-in pods in.
	injector.Stop(5 * time.Second)
	down := plain.DeepCopy()
	down.Name, down.Labels = "kong-injector-down", map[string]string{injectLabel: "true"}
	start := time.Now()
	got, err = pods.Create(ctx, down, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating an opted-in pod with the injector stopped: %v", err)
	}
	if sc, _ := sidecarOf(got); sc != nil {
		t.Fatalf("pod got a sidecar with the injector stopped: %s", podSummary(got))
	}
	w.step("step 2 passed: the Kong Deployment's %d pods stored with the sidecar (%s); unlabelled pod and command pods untouched; with the injector stopped an opted-in pod was created in %s without it",
		len(kongPods), summary, time.Since(start).Round(time.Millisecond))
	return kongPods
}

func podSummary(p *corev1.Pod) string {
	var names []string
	for _, c := range p.Spec.InitContainers {
		rp := ""
		if c.RestartPolicy != nil {
			rp = "," + string(*c.RestartPolicy)
		}
		names = append(names, "init:"+c.Name+rp)
	}
	for _, c := range p.Spec.Containers {
		names = append(names, c.Name)
	}
	return p.Name + " [" + strings.Join(names, " ") + "]"
}

// sidecarTargetPort is the targetPort of the shipped Service
// kong/kong-metrics-sidecar, which the ServiceMonitor selects.
func sidecarTargetPort(t *testing.T, objs []*unstructured.Unstructured) string {
	t.Helper()
	o, err := find(objs, "Service", "kong-metrics-sidecar")
	if err != nil {
		t.Fatal(err)
	}
	var svc corev1.Service
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &svc); err != nil {
		t.Fatal(err)
	}
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].TargetPort.IntValue() == 0 {
		t.Fatalf("Service kong-metrics-sidecar: want one port with a numeric targetPort, have %+v", svc.Spec.Ports)
	}
	return svc.Spec.Ports[0].TargetPort.String()
}

// shippedAdapterConfig is prometheus-adapter's --config as the shipped
// values.yaml makes it: rules.custom, verbatim, under rules:.
func shippedAdapterConfig(t *testing.T) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(harness.RepoRoot(), "manifests", "monitoring", "prometheus-adapter", "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := adapter.ConfigFromChartValues(data)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// step3Scrape waits until the rule's seriesQuery finds, in prom, every
// pod's command series with the target labels the operator's relabelings
// set, and counted requests.
func step3Scrape(ctx context.Context, t *testing.T, w *world, prom *promReplica, pods []string) {
	t.Helper()
	cfg, err := adapter.ParseConfig(shippedAdapterConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	seriesQuery := cfg.Rules[0].SeriesQuery
	w.waitFor(ctx, 90*time.Second, fmt.Sprintf("Prometheus %d: the rule's seriesQuery finds every sidecar's command series with the target labels Prometheus Operator's relabelings set", prom.index), func() (bool, string) {
		series, err := prom.Series(ctx, seriesQuery)
		if err != nil {
			return false, err.Error()
		}
		found := map[string]bool{}
		for _, s := range series {
			if s["exported_service"] == "command" && s["exported_namespace"] == "kong" &&
				s["namespace"] == "kong" && s["service"] == "kong-metrics-sidecar" && s["job"] == "kong-metrics-sidecar" &&
				s["endpoint"] == "sidecar-metrics" {
				found[s["pod"]] = true
			}
		}
		for _, p := range pods {
			if !found[p] {
				return false, fmt.Sprintf("%d series match, pods %v", len(series), found)
			}
		}
		samples, err := prom.Query(ctx, `sum(kong_upstream_latency_ms_count{exported_service="command"})`)
		if err != nil || len(samples) == 0 || samples[0].Value == 0 {
			return false, fmt.Sprintf("series of every pod found, no counted requests yet (%v)", err)
		}
		return true, fmt.Sprintf("%d series, of pods %v; %.0f requests counted", len(series), pods, samples[0].Value)
	})
	w.step("step 3 passed: Prometheus %d finds the %d sidecars through Kubernetes service discovery and scrapes them; the rule's seriesQuery finds kong/command in each", prom.index, len(pods))
}

// startAdapter runs the custom-metrics adapter with prometheus-adapter's
// flags and the shipped rule, verbatim, in prometheus-adapter's config
// format (rules: as a list; values.yaml nests it under rules.custom).
func startAdapter(t *testing.T, w *world, c *cluster.Cluster, bin, addr, promURL, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgFile, shippedAdapterConfig(t), 0o644); err != nil {
		t.Fatal(err)
	}
	cert, key := servingCert(t, c, dir, "prometheus-adapter.prometheus.svc")
	// The chart's ServiceAccount, as a client certificate's user name: the
	// RBAC the overlay applies is what the adapter gets.
	kubeconfig, err := c.Kubeconfig("prometheus-adapter", "system:serviceaccount:prometheus:prometheus-adapter",
		[]string{"system:serviceaccounts", "system:serviceaccounts:prometheus"})
	if err != nil {
		t.Fatal(err)
	}
	host, p, _ := net.SplitHostPort(addr)
	proc, err := harness.Start("custom-metrics-adapter", bin, []string{
		"--prometheus-url=" + promURL,
		"--config=" + cfgFile,
		"--bind-address=" + host,
		"--secure-port=" + p,
		"--tls-cert-file=" + cert,
		"--tls-private-key-file=" + key,
		"--lister-kubeconfig=" + kubeconfig,
		"--authentication-kubeconfig=" + kubeconfig,
		"--authorization-kubeconfig=" + kubeconfig,
		"--requestheader-client-ca-file=" + c.FrontProxyCAFile,
		"--metrics-relist-interval=" + adapterRelist.String(),
		"--cert-dir=" + dir,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	w.started(proc)
	w.step("custom-metrics adapter started on %s", addr)
}

// customMetric GETs the tutorial's metric through the API server.
func customMetric(ctx context.Context, c *cluster.Cluster) (*cmv1beta1.MetricValueList, int, error) {
	var code int
	raw, err := c.Client.Discovery().RESTClient().Get().AbsPath(metricPath).Do(ctx).StatusCode(&code).Raw()
	if err != nil {
		return nil, code, err
	}
	var list cmv1beta1.MetricValueList
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, code, fmt.Errorf("decoding %s: %w", raw, err)
	}
	return &list, code, nil
}

func step4Metric(ctx context.Context, t *testing.T, w *world, c *cluster.Cluster) {
	t.Helper()
	// The HPA controller asks v1beta2, a separate APIService that the
	// aggregator finds available on its own schedule: the step waits
	// until both versions serve the value, not v1beta1 alone.
	v1beta2Path := strings.Replace(metricPath, "/v1beta1/", "/v1beta2/", 1)
	obs := w.waitFor(ctx, 120*time.Second, "GET "+metricPath+" = 100ms ± 10%, and its v1beta2 twin", func() (bool, string) {
		list, code, err := customMetric(ctx, c)
		if err != nil {
			return false, fmt.Sprintf("HTTP %d: %v", code, err)
		}
		if len(list.Items) != 1 {
			return false, fmt.Sprintf("%d items", len(list.Items))
		}
		it := list.Items[0]
		if it.DescribedObject.Kind != "Service" || it.DescribedObject.Name != "command" || it.DescribedObject.Namespace != "kong" {
			return false, fmt.Sprintf("described object %+v", it.DescribedObject)
		}
		mv := it.Value.MilliValue()
		if mv < 90_000 || mv > 110_000 {
			return false, fmt.Sprintf("value %s", it.Value.String())
		}
		raw, err := c.Client.Discovery().RESTClient().Get().AbsPath(v1beta2Path).DoRaw(ctx)
		if err != nil || !strings.Contains(string(raw), `"name":"command"`) {
			return false, fmt.Sprintf("value %s; v1beta2: %v %s", it.Value.String(), err, raw)
		}
		return true, fmt.Sprintf("value %s", it.Value.String())
	})
	w.step("step 4 passed: custom metric for Service kong/command (v1beta1 and v1beta2): %s", obs)
}

// step6Reload updates the ConfigMap to select another Service than
// command and waits for every pod's volume to follow and every sidecar,
// not restarted, to stop exporting command; then for the custom metric to
// go away.
func step6Reload(ctx context.Context, t *testing.T, w *world, c *cluster.Cluster, dp *dataPlanes) {
	t.Helper()
	pods := dp.running()
	if len(pods) != kongReplicas {
		t.Fatalf("%d Kong pods run, want %d", len(pods), kongReplicas)
	}
	exports := func(k *kongPod) (bool, error) {
		body, err := harness.Get(ctx, k.sidecarURL+"/metrics")
		return strings.Contains(string(body), `exported_service="command"`), err
	}
	pids := map[string]int{}
	for _, k := range pods {
		if has, err := exports(k); err != nil || !has {
			t.Fatalf("before the update the sidecar of %s should export command's series: %v %v", k.name, has, err)
		}
		pids[k.name] = k.sidecar.Pid()
	}

	cm := deselectCommand(ctx, t, c)
	updatedAt := time.Now()
	for _, k := range pods {
		for rv := ""; rv != cm.ResourceVersion; {
			select {
			case rv = <-k.projected:
			case <-time.After(30 * time.Second):
				t.Fatalf("the ConfigMap update was not projected into the volume of %s within 30s", k.name)
			}
		}
	}
	w.step("step 6: ConfigMap updated (command dropped) and projected into the %d pods' volumes via ..data swap after %s", len(pods), time.Since(updatedAt).Round(time.Millisecond))
	w.waitFor(ctx, 30*time.Second, "every sidecar stops exporting command without a restart", func() (bool, string) {
		var obs []string
		done := true
		for _, k := range pods {
			has, err := exports(k)
			if k.sidecar.Exited() || k.sidecar.Pid() != pids[k.name] {
				t.Fatalf("the sidecar of %s exited", k.name)
			}
			done = done && err == nil && !has
			obs = append(obs, fmt.Sprintf("%s exports command: %v (%v)", k.name, has, err))
		}
		return done, strings.Join(obs, "; ")
	})
	w.step("step 6: the %d sidecars (not restarted) stopped exporting command %s after the update", len(pods), time.Since(updatedAt).Round(time.Millisecond))
	w.waitFor(ctx, 150*time.Second, "the custom metric goes away (404)", func() (bool, string) {
		list, code, err := customMetric(ctx, c)
		if err != nil {
			return apierrors.IsNotFound(err), fmt.Sprintf("HTTP %d: %v", code, err)
		}
		return false, fmt.Sprintf("still %d items", len(list.Items))
	})
	gone := time.Since(updatedAt).Round(time.Second)
	// Gone for good: through a whole relist interval, not a gap in discovery.
	for end := time.Now().Add(adapterRelist + 5*time.Second); time.Now().Before(end); time.Sleep(time.Second) {
		if list, code, err := customMetric(ctx, c); !apierrors.IsNotFound(err) {
			t.Fatalf("the custom metric came back: HTTP %d %v %v", code, err, list)
		}
	}
	w.step("step 6 passed: the custom metric is gone (404) %s after the update, and stays gone", gone)
}

// servingCert writes a serving certificate from the cluster's CA, for
// 127.0.0.1, localhost and a Service's DNS name, into dir as tls.crt and
// tls.key.
func servingCert(t *testing.T, c *cluster.Cluster, dir, dnsName string) (certFile, keyFile string) {
	t.Helper()
	certPEM, keyPEM, err := c.CA.Issue(0, time.Time{}, dnsName)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := harness.WritePair(certFile, keyFile, certPEM, keyPEM); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// deselectCommand updates the sidecar's ConfigMap so that the extension
// selects Service not-command instead of command, and returns the stored
// ConfigMap; selectCommand undoes it.
func deselectCommand(ctx context.Context, t *testing.T, c *cluster.Cluster) *corev1.ConfigMap {
	t.Helper()
	return renameSelectedService(ctx, t, c, "command", "not-command")
}

func selectCommand(ctx context.Context, t *testing.T, c *cluster.Cluster) *corev1.ConfigMap {
	t.Helper()
	return renameSelectedService(ctx, t, c, "not-command", "command")
}

// renameSelectedService replaces the extension's service selector name
// from with to in the sidecar's ConfigMap and returns the stored ConfigMap.
func renameSelectedService(ctx context.Context, t *testing.T, c *cluster.Cluster, from, to string) *corev1.ConfigMap {
	t.Helper()
	cms := c.Client.CoreV1().ConfigMaps("kong")
	cm, err := cms.Get(ctx, "kong-metrics-sidecar", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	old := cm.Data["config.yaml"]
	updated := strings.Replace(old, "- name: "+from, "- name: "+to, 1)
	if updated == old {
		t.Fatalf("config.yaml does not select Service %s as expected:\n%s", from, old)
	}
	cm.Data["config.yaml"] = updated
	if cm, err = cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	return cm
}
