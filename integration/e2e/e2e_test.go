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
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
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
	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/integration/e2e/fakekubelet"
	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/integration/harness"
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
)

func TestTutorial(t *testing.T) {
	if testing.Short() {
		t.Skip("the end-to-end test starts a control plane; not in -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 9*time.Minute)
	defer cancel()
	modules := []string{"etcd", "kubernetes", "prometheus", "prometheus-operator"}
	if !inNetns() {
		runInNetns(ctx, t, modules...)
		return
	}
	if err := setUpNetns(ctx); err != nil {
		t.Fatal(err)
	}
	w := newWorld(t)
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	dir := t.TempDir()

	third, err := harness.ThirdPartyBinaries(ctx, modules...)
	if err != nil {
		t.Fatal(err)
	}
	crds, err := operatorCRDFiles(ctx)
	if err != nil {
		t.Fatal(err)
	}
	own, err := harness.Binaries(ctx)
	if err != nil {
		t.Fatal(err)
	}
	adapterBin, adapterName, err := adapterBinary(ctx)
	if err != nil {
		t.Fatal(err)
	}
	w.step("binaries ready (custom metrics: %s)", adapterName)

	c, err := cluster.Start(ctx, cluster.Options{
		Dir: filepath.Join(dir, "cluster"),
		Bins: cluster.Binaries{
			Etcd:              third["E2E_ETCD_BIN"],
			APIServer:         third["E2E_KUBE_APISERVER_BIN"],
			ControllerManager: third["E2E_KUBE_CONTROLLER_MANAGER_BIN"],
		},
		HPASyncPeriod: 2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range c.Processes() {
		w.started(p) // stopped in reverse: the API server before etcd
	}
	client := c.Client
	w.step("control plane ready at %s", c.URL)

	kctx, kstop := context.WithCancel(ctx)
	t.Cleanup(kstop)

	// Ports and certificates of the processes the API server calls.
	injectorAddr, adapterAddr := freeAddr(t), freeAddr(t)
	vals := runtimeValues{caPEM: c.CA.CertPEM, injectorPort: port(t, injectorAddr), adapterPort: port(t, adapterAddr), operatorCRDs: crds}
	objs, err := kustomizeBuild(filepath.Join(dir, "kustomize"), vals)
	if err != nil {
		t.Fatal(err)
	}
	// The kubelet stand-in: command and Kong pods Running and Ready, each
	// with an address of its own in podCIDR, on which the port the shipped
	// Service sends Prometheus to is free.
	sidecarPort := sidecarTargetPort(t, objs)
	addrs := podAddresses(sidecarPort)
	for _, sel := range []string{"app=command", "app=kong"} {
		if err := fakekubelet.RunPods(kctx, client, "kong", sel, addrs, logger); err != nil {
			t.Fatal(err)
		}
	}

	// --- The injector, as the shipped Deployment configures it.
	injector := startInjector(t, w, c, objs, own["kong-metrics-injector"], injectorAddr, filepath.Join(dir, "injector"))

	// --- Step 1: apply.
	ap, err := newApplier(c.Admin)
	if err != nil {
		t.Fatal(err)
	}
	n, err := ap.applyAll(ctx, objs)
	if err != nil {
		t.Fatal(err)
	}
	w.step("step 1 passed: server-side applied %d objects (%s)", n, kinds(objs))
	startOperator(t, w, c, third["E2E_PROMETHEUS_OPERATOR_BIN"], filepath.Join(dir, "operator"))

	// --- Step 2: the webhook.
	kongPod := step2Webhook(ctx, t, w, c, injector)

	// --- Step 3: the data plane, the sidecar and Prometheus.
	dp := startDataPlane(ctx, t, w, c, own, kongPod, sidecarPort, filepath.Join(dir, "volume"), logger)
	prom, pc := startMonitoring(ctx, t, w, c, third["E2E_PROMETHEUS_BIN"], filepath.Join(dir, "prometheus"))
	tr := startTraffic(ctx, dp.proxyURL, "0.1")
	t.Cleanup(func() { _, _ = tr.stop() }) // the traffic steps check it; this only ends it
	step3Scrape(ctx, t, w, prom, kongPod.Name)
	stepHonorLabels(ctx, t, w, c, prom, pc, kongPod.Name)
	stepPodMonitor(ctx, t, w, c, ap, prom, pc, kongPod.Name)

	// --- Step 4: the custom metric.
	startAdapter(t, w, c, adapterBin, adapterAddr, prom.URL, filepath.Join(dir, "adapter"))
	step4Metric(ctx, t, w, c)

	// --- Step 5: the HPA.
	step5Scale(ctx, t, w, c, dp, &tr)

	// --- Step 6: hot reload through the API server.
	step6Reload(ctx, t, w, c, dp)
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

func step2Webhook(ctx context.Context, t *testing.T, w *world, c *cluster.Cluster, injector *harness.Process) *corev1.Pod {
	t.Helper()
	pods := c.Client.CoreV1().Pods("kong")
	var kongPod *corev1.Pod
	w.waitFor(ctx, 60*time.Second, "Kong Deployment's pod with the sidecar", func() (bool, string) {
		list, err := pods.List(ctx, metav1.ListOptions{LabelSelector: "app=kong"})
		if err != nil {
			return false, err.Error()
		}
		if len(list.Items) == 0 {
			return false, "no pod yet"
		}
		kongPod = &list.Items[0]
		sc, native := sidecarOf(kongPod)
		if sc == nil {
			t.Fatalf("pod %s of the opted-in Kong Deployment was stored without the sidecar: %s", kongPod.Name, podSummary(kongPod))
		}
		if native && (sc.RestartPolicy == nil || *sc.RestartPolicy != corev1.ContainerRestartPolicyAlways) {
			t.Fatalf("native sidecar without restartPolicy Always: %s", podSummary(kongPod))
		}
		return true, podSummary(kongPod)
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
	w.step("step 2 passed: opted-in pod %s stored with the sidecar (%s); unlabelled pod and command pods untouched; with the injector stopped an opted-in pod was created in %s without it",
		kongPod.Name, podSummary(kongPod), time.Since(start).Round(time.Millisecond))
	return kongPod
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

// dataPlane is the Kong data plane's processes: the simulator in place of
// Kong and the sidecar binary as the injector specified it.
type dataPlane struct {
	proxyURL, sidecarURL string
	sidecar              *harness.Process
	volume               string
	projected            chan string // ConfigMap resourceVersions written
}

func startDataPlane(ctx context.Context, t *testing.T, w *world, c *cluster.Cluster, own map[string]string, pod *corev1.Pod, sidecarPort, volume string, logger *slog.Logger) *dataPlane {
	t.Helper()
	proxyAddr, statusAddr := freeAddr(t), freeAddr(t)
	sim, err := harness.Start("kong-simulator", own["kong-simulator"], []string{"-proxy-listen", proxyAddr, "-listen", statusAddr}, nil)
	if err != nil {
		t.Fatal(err)
	}
	w.started(sim)
	if err := harness.WaitHTTP("http://"+statusAddr+"/status", sim, 30*time.Second); err != nil {
		t.Fatal(err)
	}

	sc, _ := sidecarOf(pod)
	// The ConfigMap volume the sidecar mounts, and the file it reads.
	var cmName, mountPath string
	for _, m := range sc.VolumeMounts {
		for _, v := range pod.Spec.Volumes {
			if v.Name == m.Name && v.ConfigMap != nil {
				cmName, mountPath = v.ConfigMap.Name, m.MountPath
			}
		}
	}
	if cmName == "" {
		t.Fatalf("the injected sidecar mounts no ConfigMap: %+v", sc.VolumeMounts)
	}
	env := map[string]string{}
	for _, e := range sc.Env {
		if e.ValueFrom == nil {
			env[e.Name] = e.Value
		}
	}
	cfgFile := env["SIDECAR_CONFIG_FILE"]
	if !strings.HasPrefix(cfgFile, mountPath+"/") {
		t.Fatalf("SIDECAR_CONFIG_FILE %q is not in the ConfigMap mount %s", cfgFile, mountPath)
	}
	dp := &dataPlane{proxyURL: "http://" + proxyAddr, volume: volume, projected: make(chan string, 16)}
	if err := fakekubelet.ProjectConfigMap(ctx, c.Client, "kong", cmName, volume, logger, func(rv string) {
		select {
		case dp.projected <- rv:
		default:
		}
	}); err != nil {
		t.Fatal(err)
	}
	<-dp.projected
	// The injected environment, with the pod's addresses made local ones:
	// the sidecar listens at the pod's address on the port of the Service,
	// where its EndpointSlice sends Prometheus; file events, not the poll, must carry
	// the reload of step 6.
	sidecarAddr := net.JoinHostPort(podIP(ctx, t, w, c, pod), sidecarPort)
	dp.sidecarURL = "http://" + sidecarAddr
	env["SIDECAR_LISTEN_ADDR"] = sidecarAddr
	env["SIDECAR_UPSTREAM_URL"] = "http://" + statusAddr + "/metrics"
	env["SIDECAR_CONFIG_FILE"] = filepath.Join(volume, strings.TrimPrefix(cfgFile, mountPath+"/"))
	env["SIDECAR_CONFIG_POLL_INTERVAL"] = "10m"
	env["SIDECAR_LOG_FORMAT"] = "text"
	var list []string
	for k, v := range env {
		list = append(list, k+"="+v)
	}
	dp.sidecar, err = harness.Start(sidecarName, own[sidecarName], nil, list)
	if err != nil {
		t.Fatal(err)
	}
	w.started(dp.sidecar)
	if err := harness.WaitHTTP(dp.sidecarURL+"/readyz", dp.sidecar, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	w.step("data plane up: simulator %s, sidecar %s reading ConfigMap kong/%s projected into %s", proxyAddr, sidecarAddr, cmName, volume)
	return dp
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

// podIP waits for the kubelet stand-in to give pod its address.
func podIP(ctx context.Context, t *testing.T, w *world, c *cluster.Cluster, pod *corev1.Pod) string {
	t.Helper()
	var ip string
	w.waitFor(ctx, 30*time.Second, "pod "+pod.Name+" Running with an address", func() (bool, string) {
		p, err := c.Client.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		ip = p.Status.PodIP
		return ip != "" && p.Spec.NodeName != "", fmt.Sprintf("node %q, phase %s, podIP %q", p.Spec.NodeName, p.Status.Phase, ip)
	})
	return ip
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

func step3Scrape(ctx context.Context, t *testing.T, w *world, prom *harness.Prometheus, kongPod string) {
	t.Helper()
	cfg, err := adapter.ParseConfig(shippedAdapterConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	seriesQuery := cfg.Rules[0].SeriesQuery
	w.waitFor(ctx, 90*time.Second, "the rule's seriesQuery finds the sidecar's command series with the target labels Prometheus Operator's relabelings set", func() (bool, string) {
		series, err := prom.Series(ctx, seriesQuery)
		if err != nil {
			return false, err.Error()
		}
		for _, s := range series {
			if s["exported_service"] == "command" && s["exported_namespace"] == "kong" &&
				s["namespace"] == "kong" && s["service"] == "kong-metrics-sidecar" && s["job"] == "kong-metrics-sidecar" &&
				s["pod"] == kongPod && s["endpoint"] == "sidecar-metrics" {
				samples, err := prom.Query(ctx, `sum(kong_upstream_latency_ms_count{exported_service="command"})`)
				if err != nil || len(samples) == 0 || samples[0].Value == 0 {
					return false, fmt.Sprintf("series found, no counted requests yet (%v)", err)
				}
				return true, fmt.Sprintf("%d series; %v; %.0f requests counted", len(series), s, samples[0].Value)
			}
		}
		return false, fmt.Sprintf("%d series match", len(series))
	})
	w.step("step 3 passed: Prometheus finds the sidecar through Kubernetes service discovery and scrapes it; the rule's seriesQuery finds kong/command")
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
	obs := w.waitFor(ctx, 120*time.Second, "GET "+metricPath+" = 100ms ± 10%", func() (bool, string) {
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
		return mv >= 90_000 && mv <= 110_000, fmt.Sprintf("value %s", it.Value.String())
	})
	// The HPA controller asks v1beta2: the same value must be there.
	raw, err := c.Client.Discovery().RESTClient().Get().AbsPath(strings.Replace(metricPath, "/v1beta1/", "/v1beta2/", 1)).DoRaw(ctx)
	if err != nil || !strings.Contains(string(raw), `"name":"command"`) {
		t.Fatalf("custom.metrics.k8s.io/v1beta2: %v %s", err, raw)
	}
	w.step("step 4 passed: custom metric for Service kong/command (v1beta1 and v1beta2): %s", obs)
}

func replicas(ctx context.Context, c *cluster.Cluster) (spec, ready int32, err error) {
	d, err := c.Client.AppsV1().Deployments("kong").Get(ctx, "command", metav1.GetOptions{})
	if err != nil {
		return 0, 0, err
	}
	return *d.Spec.Replicas, d.Status.ReadyReplicas, nil
}

// rescales returns the HPA's SuccessfulRescale event messages.
func rescales(ctx context.Context, c *cluster.Cluster) ([]string, error) {
	list, err := c.Client.CoreV1().Events("kong").List(ctx, metav1.ListOptions{
		FieldSelector: "involvedObject.kind=HorizontalPodAutoscaler,involvedObject.name=command,reason=SuccessfulRescale",
	})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range list.Items {
		out = append(out, e.Message)
	}
	return out, nil
}

func hasRescale(msgs []string, sub string) bool {
	for _, m := range msgs {
		if strings.Contains(m, sub) {
			return true
		}
	}
	return false
}

func step5Scale(ctx context.Context, t *testing.T, w *world, c *cluster.Cluster, dp *dataPlane, tr **traffic) {
	t.Helper()
	scale := func(want int32, reason string, timeout time.Duration) string {
		return w.waitFor(ctx, timeout, fmt.Sprintf("command scaled to %d with a SuccessfulRescale %q", want, reason), func() (bool, string) {
			spec, ready, err := replicas(ctx, c)
			if err != nil {
				return false, err.Error()
			}
			msgs, err := rescales(ctx, c)
			if err != nil {
				return false, err.Error()
			}
			last := ""
			if len(msgs) > 0 {
				last = msgs[len(msgs)-1]
			}
			return spec == want && ready == want && hasRescale(msgs, reason),
				fmt.Sprintf("replicas %d (ready %d); %d rescale events, last %q", spec, ready, len(msgs), last)
		})
	}
	obs := scale(10, "above target", 120*time.Second)
	w.step("step 5a passed: at sleep 0.1 the HPA scaled command to 10: %s", obs)

	ok, err := (*tr).stop()
	t.Logf("traffic at sleep 0.1: %d requests, error %v", ok, err)
	*tr = startTraffic(ctx, dp.proxyURL, "0")
	obs = scale(1, "All metrics below target", 180*time.Second)
	w.step("step 5b passed: at sleep 0 the HPA scaled command back to 1: %s", obs)

	// Traffic stopped entirely: the rule's rate over 60s becomes 0/0,
	// which prometheus-adapter serves as 0; the HPA stays at its minimum.
	ok, err = (*tr).stop()
	t.Logf("traffic at sleep 0: %d requests, error %v", ok, err)
	stopped := time.Now()
	obs = w.waitFor(ctx, 150*time.Second, "with traffic stopped, the metric reads 0 and command stays at 1", func() (bool, string) {
		list, code, err := customMetric(ctx, c)
		spec, _, rerr := replicas(ctx, c)
		if err != nil || rerr != nil {
			return false, fmt.Sprintf("HTTP %d: %v; replicas %d %v", code, err, spec, rerr)
		}
		if spec != 1 {
			t.Fatalf("with traffic stopped command went to %d replicas", spec)
		}
		if len(list.Items) != 1 {
			return false, fmt.Sprintf("%d items", len(list.Items))
		}
		return list.Items[0].Value.IsZero(), fmt.Sprintf("value %s, replicas %d", list.Items[0].Value.String(), spec)
	})
	w.step("step 5c: traffic stopped: metric 0 after %s (%s), no rescale", time.Since(stopped).Round(time.Second), obs)
}

func step6Reload(ctx context.Context, t *testing.T, w *world, c *cluster.Cluster, dp *dataPlane) {
	t.Helper()
	exports := func() (bool, error) {
		body, err := harness.Get(ctx, dp.sidecarURL+"/metrics")
		return strings.Contains(string(body), `exported_service="command"`), err
	}
	if has, err := exports(); err != nil || !has {
		t.Fatalf("before the update the sidecar should export command's series: %v %v", has, err)
	}
	pid := dp.sidecar.Pid()

	cms := c.Client.CoreV1().ConfigMaps("kong")
	cm, err := cms.Get(ctx, "kong-metrics-sidecar", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	old := cm.Data["config.yaml"]
	updated := strings.Replace(old, "- name: command", "- name: not-command", 1)
	if updated == old {
		t.Fatalf("config.yaml does not select command as expected:\n%s", old)
	}
	cm.Data["config.yaml"] = updated
	cm, err = cms.Update(ctx, cm, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	updatedAt := time.Now()
	for rv := ""; rv != cm.ResourceVersion; {
		select {
		case rv = <-dp.projected:
		case <-time.After(30 * time.Second):
			t.Fatal("the ConfigMap update was not projected into the volume within 30s")
		}
	}
	w.step("step 6: ConfigMap updated (command dropped) and projected via ..data swap after %s", time.Since(updatedAt).Round(time.Millisecond))
	w.waitFor(ctx, 30*time.Second, "the sidecar stops exporting command without a restart", func() (bool, string) {
		has, err := exports()
		if dp.sidecar.Exited() || dp.sidecar.Pid() != pid {
			t.Fatal("the sidecar exited")
		}
		return err == nil && !has, fmt.Sprintf("exports command: %v (%v)", has, err)
	})
	w.step("step 6: sidecar (pid %d, not restarted) stopped exporting command %s after the update", pid, time.Since(updatedAt).Round(time.Millisecond))
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
