package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/dynamic"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/integration/e2e/cluster"
	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/testsupport/harness"
)

// doctorProgram is the kubectl plugin, kubectl kong-metrics.
const doctorProgram = "kubectl-kong_metrics"

// doctorBinary is the plugin from the release image (E2E_IMAGE_BIN_DIR,
// as make e2e sets it), else built with go build.
func doctorBinary(ctx context.Context, own map[string]string) (string, error) {
	if bin := own[doctorProgram]; bin != "" {
		return bin, nil
	}
	dir := filepath.Join(harness.RepoRoot(), "integration", ".work", "bin")
	bins, err := harness.Build(ctx, dir, "./cmd/"+doctorProgram)
	if err != nil {
		return "", err
	}
	return bins[doctorProgram], nil
}

// doctorLink and doctorReport are the plugin's -o json.
type doctorLink struct {
	Name, Status, Detail, Fix string
}

type doctorReport struct {
	Target string
	Links  []doctorLink
}

// doctor runs the plugin as a user would, with a kubeconfig of the
// cluster's, and returns its exit status and report.
type doctor struct {
	bin, kubeconfig, prometheus string
	// target is service/command unless set.
	target string
}

// newDoctor is the doctor as a user of c, asking prom.
func newDoctor(t *testing.T, c *cluster.Cluster, bin, prom, target string) *doctor {
	t.Helper()
	kubeconfig, err := c.Kubeconfig("doctor", "doctor-user", []string{"system:masters"})
	if err != nil {
		t.Fatal(err)
	}
	return &doctor{bin: bin, kubeconfig: kubeconfig, prometheus: prom, target: target}
}

func (d *doctor) run(ctx context.Context) (int, *doctorReport, string, error) {
	target := d.target
	if target == "" {
		target = "service/command"
	}
	cmd := exec.CommandContext(ctx, d.bin, "doctor", "-n", "kong", target, "-o", "json",
		"--kubeconfig", d.kubeconfig, "--prometheus", d.prometheus, "--timeout", "30s")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		return -1, nil, "", err
	}
	var r doctorReport
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		return code, nil, stderr.String(), fmt.Errorf("exit %d, decoding %q: %w (stderr %s)", code, stdout.String(), err, stderr.String())
	}
	return code, &r, stderr.String(), nil
}

// verdict sums a report up: the broken links and the links not ok.
func (r *doctorReport) verdict() (broken []string, notOK []string) {
	for _, l := range r.Links {
		if l.Status == "broken" {
			broken = append(broken, l.Name)
		}
		if l.Status != "ok" {
			notOK = append(notOK, l.Name+"="+l.Status)
		}
	}
	return broken, notOK
}

func (r *doctorReport) link(name string) doctorLink {
	for _, l := range r.Links {
		if l.Name == name {
			return l
		}
	}
	return doctorLink{}
}

// waitWhole waits until the doctor exits 0 with every link ok.
func (d *doctor) waitWhole(ctx context.Context, t *testing.T, w *world, timeout time.Duration, after string) time.Duration {
	t.Helper()
	start := time.Now()
	w.waitFor(ctx, timeout, "the doctor: exit 0, every link ok ("+after+")", func() (bool, string) {
		code, r, stderr, err := d.run(ctx)
		if err != nil {
			return false, err.Error()
		}
		_, notOK := r.verdict()
		return code == 0 && len(notOK) == 0, fmt.Sprintf("exit %d, links not ok %v %s", code, notOK, stderr)
	})
	return time.Since(start).Round(100 * time.Millisecond)
}

// expectWhole runs the doctor once and requires exit 0 with every link
// ok, the last one's detail saying says.
func (d *doctor) expectWhole(ctx context.Context, t *testing.T, says string) string {
	t.Helper()
	code, r, stderr, err := d.run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, notOK := r.verdict(); code != 0 || len(notOK) > 0 {
		t.Fatalf("the doctor on %s: exit %d, links not ok %v, want exit 0, every link ok: %+v %s", d.target, code, notOK, r.Links, stderr)
	}
	last := r.Links[len(r.Links)-1]
	if !strings.Contains(last.Detail, says) {
		t.Fatalf("the doctor's %s line %q does not say %q", last.Name, last.Detail, says)
	}
	return last.Name + ": " + last.Detail
}

// waitBroken waits until the doctor exits 1 naming exactly link as
// broken, every link before it ok, its detail saying says; it returns the
// link's line.
func (d *doctor) waitBroken(ctx context.Context, t *testing.T, w *world, timeout time.Duration, link, says string) string {
	t.Helper()
	var found doctorLink
	w.waitFor(ctx, timeout, "the doctor: exit 1, broken link "+link+" ("+says+")", func() (bool, string) {
		code, r, stderr, err := d.run(ctx)
		if err != nil {
			return false, err.Error()
		}
		broken, notOK := r.verdict()
		found = r.link(link)
		var before []string
		for _, l := range r.Links {
			if l.Name == link {
				break
			}
			if l.Status != "ok" {
				before = append(before, l.Name+"="+l.Status)
			}
		}
		done := code == 1 && slices.Equal(broken, []string{link}) && len(before) == 0 && strings.Contains(found.Detail, says)
		return done, fmt.Sprintf("exit %d, broken %v, not ok %v: %s %s", code, broken, notOK, found.Detail, stderr)
	})
	if found.Fix == "" {
		t.Fatalf("the doctor names %s broken without a fix: %+v", link, found)
	}
	return found.Name + ": " + found.Detail
}

// doctorBreak is one link broken on purpose and repaired.
type doctorBreak struct {
	link, says      string
	breakIt, repair func() error
	timeout         time.Duration
}

// stepDoctor runs kubectl kong-metrics doctor on the tutorial's chain:
// first on what step 2 left behind (a Kong pod without the opt-in label,
// one created while the injector was down), then on the whole chain, then
// with one link broken at a time, each named exactly and repaired.
func stepDoctor(ctx context.Context, t *testing.T, w *world, c *cluster.Cluster, dp *dataPlanes, proms []*promReplica, lb *serviceProxy, tr **traffic,
	doctorBin string, injector **harness.Process, startInjectorAgain func() *harness.Process,
) {
	t.Helper()
	start := time.Now()
	// Prometheus listens on loopback here, which the API server's Service
	// proxy refuses to dial: the doctor is given its URL.
	d := newDoctor(t, c, doctorBin, proms[0].URL, "")

	// Back to a whole chain after step 6: command selected again, traffic.
	selectCommand(ctx, t, c)
	*tr = startTraffic(ctx, lb.URL, "0")
	w.step("doctor: ConfigMap selects command again; traffic at sleep 0")

	// Step 2's pods: kong-not-opted-in runs Kong without the label.
	line := d.waitBroken(ctx, t, w, 150*time.Second, "opt-in", "kong-not-opted-in lack the label")
	w.step("doctor: opt-in label missing on step 2's pod: %s", line)
	deletePod(ctx, t, c, "kong-not-opted-in")

	// kong-injector-down was created while the injector was stopped.
	line = d.waitBroken(ctx, t, w, 30*time.Second, "injection", "is injected now")
	w.step("doctor: step 2's kong-injector-down (created with the injector down): %s", line)
	(*injector).Stop(5 * time.Second)
	line = d.waitBroken(ctx, t, w, 30*time.Second, "injection", "The injector is down or unreachable")
	w.step("doctor: injector stopped: %s", line)
	*injector = startInjectorAgain()
	deletePod(ctx, t, c, "kong-injector-down")
	took := d.waitWhole(ctx, t, w, 150*time.Second, "step 2's pods gone, injector up")
	w.step("doctor: the chain is whole (exit 0, every link ok) %s after the injector's return", took)

	dyn, err := dynamic.NewForConfig(c.Admin)
	if err != nil {
		t.Fatal(err)
	}
	serviceMonitors := dyn.Resource(schema.GroupVersionResource{Group: "monitoring.coreos.com", Version: "v1", Resource: "servicemonitors"}).Namespace("kong")
	apiServices := dyn.Resource(schema.GroupVersionResource{Group: "apiregistration.k8s.io", Version: "v1", Resource: "apiservices"})
	hpas := c.Client.AutoscalingV2().HorizontalPodAutoscalers("kong")
	var simServices []string
	for _, k := range dp.running() {
		if i := slices.Index(k.simArgs, "-services"); i >= 0 {
			simServices = append(simServices, k.simArgs[i+1])
		} else {
			simServices = append(simServices, "")
		}
	}
	restartSims := func(args func(k *kongPod, i int) []string) error {
		for i, k := range dp.running() {
			k.simulator().Stop(10 * time.Second)
			k.simArgs = args(k, i)
			if err := k.startSimulator(dp); err != nil {
				return err
			}
		}
		return nil
	}
	patch := func(what string, apply func(body string) error, body string) func() error {
		return func() error {
			if err := apply(body); err != nil {
				return fmt.Errorf("%s: %w", what, err)
			}
			return nil
		}
	}
	mergeSM := func(body string) error {
		_, err := serviceMonitors.Patch(ctx, "kong-metrics-sidecar", types.MergePatchType, []byte(body), metav1.PatchOptions{})
		return err
	}
	as, err := apiServices.Get(ctx, "v1beta1.custom.metrics.k8s.io", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	adapterPort, _, _ := unstructuredInt(as.Object, "spec", "service", "port")
	mergeAS := func(body string) error {
		_, err := apiServices.Patch(ctx, "v1beta1.custom.metrics.k8s.io", types.MergePatchType, []byte(body), metav1.PatchOptions{})
		return err
	}
	jsonHPA := func(body string) error {
		_, err := hpas.Patch(ctx, "command", types.JSONPatchType, []byte(body), metav1.PatchOptions{})
		return err
	}
	breaks := []doctorBreak{
		{link: "extension", says: "not kong/command",
			breakIt: func() error { deselectCommand(ctx, t, c); return nil },
			repair:  func() error { selectCommand(ctx, t, c); return nil }},
		{link: "kong-plugin", says: "latency_metrics is off",
			breakIt: func() error {
				return restartSims(func(k *kongPod, _ int) []string { return append(slices.Clone(k.simArgs), "-latency-metrics=false") })
			},
			repair: func() error {
				return restartSims(func(k *kongPod, _ int) []string {
					return slices.DeleteFunc(slices.Clone(k.simArgs), func(a string) bool { return a == "-latency-metrics=false" })
				})
			}},
		{link: "resolution", says: `"doctor-unmapped" (no_rule`,
			breakIt: func() error {
				return restartSims(func(k *kongPod, _ int) []string {
					return withServices(k.simArgs, "httproute/kong/command/0=doctor-unmapped")
				})
			},
			repair: func() error {
				return restartSims(func(k *kongPod, i int) []string {
					return withServices(k.simArgs, simServices[min(i, len(simServices)-1)])
				})
			}},
		{link: "monitor", says: "no Service in kong has those labels",
			breakIt: patch("ServiceMonitor selector", mergeSM, `{"spec":{"selector":{"matchLabels":{"app.kubernetes.io/name":"no-such-service"}}}}`),
			repair:  patch("ServiceMonitor selector", mergeSM, `{"spec":{"selector":{"matchLabels":{"app.kubernetes.io/name":"kong-metrics-sidecar"}}}}`),
			timeout: 120 * time.Second},
		{link: "prometheus", says: "does not answer",
			breakIt: func() error {
				r := proms[0]
				r.Stop(10 * time.Second)
				return nil
			},
			repair:  func() error { proms[0].start(t, w); return nil },
			timeout: 120 * time.Second},
		{link: "custom-metrics", says: "is not Available",
			breakIt: patch("APIService port", mergeAS, `{"spec":{"service":{"port":1}}}`),
			repair:  patch("APIService port", mergeAS, fmt.Sprintf(`{"spec":{"service":{"port":%d}}}`, adapterPort)),
			timeout: 120 * time.Second},
		{link: "hpa", says: `asks for metric "kong_upstream_latency_ms_60s_averag"`,
			breakIt: patch("HPA metric", jsonHPA, `[{"op":"replace","path":"/spec/metrics/0/object/metric/name","value":"kong_upstream_latency_ms_60s_averag"}]`),
			repair:  patch("HPA metric", jsonHPA, `[{"op":"replace","path":"/spec/metrics/0/object/metric/name","value":"kong_upstream_latency_ms_60s_average"}]`)},
	}
	for _, b := range breaks {
		if err := b.breakIt(); err != nil {
			t.Fatal(err)
		}
		broke := time.Now()
		line := d.waitBroken(ctx, t, w, 60*time.Second, b.link, b.says)
		named := time.Since(broke).Round(100 * time.Millisecond)
		if err := b.repair(); err != nil {
			t.Fatal(err)
		}
		timeout := b.timeout
		if timeout == 0 {
			timeout = 90 * time.Second
		}
		took := d.waitWhole(ctx, t, w, timeout, b.link+" repaired")
		w.step("doctor: %s broken, named after %s (%s); repaired, whole again after %s", b.link, named, line, took)
	}
	line = doctorThroughServiceProxy(ctx, t, c, d, proms[0].addr)
	w.step("doctor without --prometheus, through the Prometheus resource's Service and the API server's Service proxy: whole (%s)", line)
	w.step("doctor passed: opt-in, injection (injector down; pod created while it was), extension, kong-plugin, resolution, monitor, prometheus, custom-metrics and hpa each named alone when broken; whole after each repair (%s in all)",
		time.Since(start).Round(time.Second))
}

// promServiceAddr is where the test forwards to Prometheus for the API
// server's Service proxy, which refuses loopback: an address of the pod
// network that podAddresses never hands out.
const promServiceAddr = "10.244.255.9"

// doctorThroughServiceProxy gives the Prometheus resource the Service
// kube-prometheus-stack gives it (same name, port http-web 9090), its
// endpoint a forwarder to the Prometheus at promAddr, and runs the doctor
// without --prometheus: it finds the Service from the resource and asks
// Prometheus through the API server. It returns the prometheus line.
func doctorThroughServiceProxy(ctx context.Context, t *testing.T, c *cluster.Cluster, d *doctor, promAddr string) string {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(promServiceAddr, "9090"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	go func() {
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer in.Close()
				out, err := net.Dial("tcp", promAddr)
				if err != nil {
					return
				}
				defer out.Close()
				go func() { _, _ = io.Copy(out, in) }()
				_, _ = io.Copy(in, out)
			}()
		}
	}()
	name, port := promName, int32(9090)
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "prometheus"},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http-web", Port: port, TargetPort: intstr.FromInt32(port)}}},
	}
	if _, err := c.Client.CoreV1().Services("prometheus").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The API server's Service proxy only dials an endpoint that is a pod
	// of the Service's namespace with that IP: the first replica's pod,
	// which the StatefulSet would run, with the forwarder's address.
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: promPod(0), Namespace: "prometheus"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "prometheus", Image: "quay.io/prometheus/prometheus"}}},
	}
	pod, err = c.Client.CoreV1().Pods("prometheus").Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pod.Status.PodIP, pod.Status.PodIPs = promServiceAddr, []corev1.PodIP{{IP: promServiceAddr}}
	if _, err := c.Client.CoreV1().Pods("prometheus").UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Endpoints, not an EndpointSlice: the API server's Service proxy
	// (services/proxy) reads them.
	//nolint:staticcheck // deprecated for clients, still what services/proxy reads
	eps := &corev1.Endpoints{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "prometheus"},
		Subsets: []corev1.EndpointSubset{{
			Addresses: []corev1.EndpointAddress{{IP: promServiceAddr, TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: "prometheus", Name: pod.Name, UID: pod.UID}}},
			Ports:     []corev1.EndpointPort{{Name: "http-web", Port: port}},
		}},
	}
	if _, err := c.Client.CoreV1().Endpoints("prometheus").Create(ctx, eps, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	viaService := *d
	viaService.prometheus = ""
	want := fmt.Sprintf("Prometheus (Service prometheus/%s:9090) scrapes every sidecar", name)
	var found string
	for end := time.Now().Add(30 * time.Second); ; time.Sleep(time.Second) {
		code, r, stderr, err := viaService.run(ctx)
		if err == nil {
			found = r.link("prometheus").Detail
			_, notOK := r.verdict()
			if code == 0 && len(notOK) == 0 && strings.Contains(found, want) {
				return found
			}
			found = fmt.Sprintf("exit %d, not ok %v, prometheus: %s %s", code, notOK, found, stderr)
		} else {
			found = err.Error()
		}
		if time.Now().After(end) {
			t.Fatalf("the doctor without --prometheus: %s; want exit 0, every link ok, %q", found, want)
		}
	}
}

func unstructuredInt(obj map[string]any, path ...string) (int64, bool, error) {
	var v any = obj
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return 0, false, nil
		}
		v = m[p]
	}
	switch n := v.(type) {
	case int64:
		return n, true, nil
	case float64:
		return int64(n), true, nil
	}
	return 0, false, fmt.Errorf("%v: not a number: %v", path, v)
}

// deletePod deletes a pod the kubelet stand-in does not run, at once.
func deletePod(ctx context.Context, t *testing.T, c *cluster.Cluster, name string) {
	t.Helper()
	zero := int64(0)
	err := c.Client.CoreV1().Pods("kong").Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
	if err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
}
