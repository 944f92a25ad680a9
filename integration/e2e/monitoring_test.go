package e2e_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/integration/e2e/adapter"
	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/integration/e2e/cluster"
	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/integration/e2e/fakekubelet"
	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/integration/harness"
)

// The Prometheus resource of overlay/prometheus.yaml, and the Secret into
// which Prometheus Operator writes its configuration.
const (
	promNamespace = "prometheus"
	promName      = "prometheus-kube-prometheus-prometheus"
	promSecret    = "prometheus-" + promName
	promConfigKey = "prometheus.yaml.gz"
	// promPod is the StatefulSet's first pod, whose place the test's
	// Prometheus takes: the name the config-reloader would put in
	// $(POD_NAME).
	promPod = "prometheus-" + promName + "-0"
)

// startOperator runs Prometheus Operator against the API server as a
// system:masters user, watching every namespace, with the kubelet
// Endpoints controller off (no --kubelet-service).
func startOperator(t *testing.T, w *world, c *cluster.Cluster, bin, dir string) *harness.Process {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	kp, err := c.CA.IssuePair(harness.CertRequest{CommonName: "prometheus-operator", Organizations: []string{"system:masters"}, Client: true})
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := kp.Write(dir, "client")
	if err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	p, err := harness.Start("prometheus-operator", bin, []string{
		"--apiserver=" + c.URL,
		"--cert-file=" + cert,
		"--key-file=" + key,
		"--ca-file=" + filepath.Join(c.Dir, "pki", "ca.crt"),
		"--web.listen-address=" + addr,
		"--log-level=info",
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	w.started(p)
	if err := harness.WaitHTTP("http://"+addr+"/healthz", p, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	w.step("Prometheus Operator up (metrics and health on %s)", addr)
	return p
}

// promConfig does the config-reloader's job for the test's Prometheus:
// it follows the operator's Secret, renders the configuration into file
// and reloads Prometheus when it changes.
type promConfig struct {
	file       string
	kubeconfig string

	mu      sync.Mutex // Protects the fields below.
	last    []byte     // the Secret's prometheus.yaml.gz last rendered
	reloads int
	err     error // the last failed render or reload
}

// envVar is a $(NAME) reference, which the config-reloader expands from
// its environment.
var envVar = regexp.MustCompile(`\$\(([a-zA-Z_0-9]+)\)`)

// renderPrometheusConfig turns the operator's gzipped configuration into
// the one the test's Prometheus loads. It does two things to it:
//   - expands $(POD_NAME) and $(SHARD) as the config-reloader does with the
//     StatefulSet pod's environment (pod promPod, shard 0);
//   - adds kubeconfig_file to every kubernetes_sd_configs entry: the
//     operator writes them for in-cluster defaults (the pod's ServiceAccount
//     token and the kubernetes.default Service), which a process outside a
//     pod does not have. An entry that names an api_server is refused.
func renderPrometheusConfig(gz []byte, kubeconfig string) ([]byte, int, error) {
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		return nil, 0, fmt.Errorf("decompressing %s: %w", promConfigKey, err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		return nil, 0, fmt.Errorf("decompressing %s: %w", promConfigKey, err)
	}
	env := map[string]string{"POD_NAME": promPod, "SHARD": "0"}
	var unknown []string
	raw = envVar.ReplaceAllFunc(raw, func(m []byte) []byte {
		name := string(envVar.FindSubmatch(m)[1])
		v, ok := env[name]
		if !ok {
			unknown = append(unknown, name)
			return m
		}
		return []byte(v)
	})
	if len(unknown) > 0 {
		return nil, 0, fmt.Errorf("the configuration refers to $(%s), which the config-reloader's environment does not have", strings.Join(unknown, "), $("))
	}
	var cfg map[string]any
	if err := yaml.Unmarshal(raw, &cfg); err != nil {
		return nil, 0, fmt.Errorf("decoding the operator's configuration: %w", err)
	}
	scs, _ := cfg["scrape_configs"].([]any)
	n := 0
	for _, sc := range scs {
		m, _ := sc.(map[string]any)
		sds, _ := m["kubernetes_sd_configs"].([]any)
		for _, sd := range sds {
			sdm, ok := sd.(map[string]any)
			if !ok {
				return nil, 0, fmt.Errorf("job %v: kubernetes_sd_configs entry %v is not a mapping", m["job_name"], sd)
			}
			if _, set := sdm["api_server"]; set {
				return nil, 0, fmt.Errorf("job %v: kubernetes_sd_configs names an api_server; only in-cluster defaults are rewritten", m["job_name"])
			}
			sdm["kubeconfig_file"] = kubeconfig
			n++
		}
	}
	out, err := yaml.Marshal(cfg)
	if err != nil {
		return nil, 0, fmt.Errorf("encoding the configuration: %w", err)
	}
	return out, n, nil
}

// jobNames lists the scrape jobs of a rendered configuration.
func jobNames(cfg []byte) []string {
	var c struct {
		ScrapeConfigs []struct {
			JobName string `json:"job_name"`
		} `json:"scrape_configs"`
	}
	if err := yaml.Unmarshal(cfg, &c); err != nil {
		return []string{err.Error()}
	}
	var names []string
	for _, sc := range c.ScrapeConfigs {
		names = append(names, sc.JobName)
	}
	sort.Strings(names)
	return names
}

// startMonitoring waits for the operator to write the configuration of
// the Prometheus resource, runs Prometheus 3 with it and keeps it in step
// with the Secret until the test ends.
func startMonitoring(ctx context.Context, t *testing.T, w *world, c *cluster.Cluster, bin, dir string) (*harness.Prometheus, *promConfig) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// Prometheus's discovery authenticates as the chart's ServiceAccount:
	// overlay/prometheus.yaml's ClusterRole is what it runs with.
	kubeconfig, err := c.Kubeconfig("prometheus", "system:serviceaccount:"+promNamespace+":"+promName,
		[]string{"system:serviceaccounts", "system:serviceaccounts:" + promNamespace})
	if err != nil {
		t.Fatal(err)
	}
	pc := &promConfig{file: filepath.Join(dir, "prometheus.yml"), kubeconfig: kubeconfig}
	secrets := c.Client.CoreV1().Secrets(promNamespace)
	var gz []byte
	w.waitFor(ctx, 90*time.Second, "Prometheus Operator writes Secret "+promNamespace+"/"+promSecret, func() (bool, string) {
		s, err := secrets.Get(ctx, promSecret, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		gz = s.Data[promConfigKey]
		return len(gz) > 0, fmt.Sprintf("keys %v", keys(s))
	})
	cfg, n, err := renderPrometheusConfig(gz, kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pc.file, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	pc.last = gz
	w.step("Prometheus Operator wrote %s/%s: jobs %v; kubeconfig_file added to %d kubernetes_sd_configs", promNamespace, promSecret, jobNames(cfg), n)

	p, err := harness.Start("prometheus", bin, []string{
		"--config.file=" + pc.file,
		"--storage.tsdb.path=" + filepath.Join(dir, "data"),
		"--web.listen-address=" + harness.AnyPort,
		"--web.enable-lifecycle", // POST /-/reload, as the config-reloader does
		"--log.level=info",       // for the port it picked, logged as exporter-toolkit's "Listening on"
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	w.started(p)
	addr, err := p.LoggedValue(time.Minute, "address", "msg", "Listening on")
	if err != nil {
		t.Fatal(err)
	}
	prom := &harness.Prometheus{Process: p, URL: "http://" + addr}
	if err := harness.WaitHTTP(prom.URL+"/-/ready", p, time.Minute); err != nil {
		t.Fatal(err)
	}

	// The config-reloader's loop: the Secret, polled, then POST /-/reload.
	rctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-rctx.Done():
				return
			case <-time.After(time.Second):
			}
			pc.follow(rctx, secrets, prom.URL)
		}
	}()
	t.Cleanup(func() {
		stop()
		<-done
		pc.mu.Lock()
		defer pc.mu.Unlock()
		t.Logf("config reloads after the Secret changed: %d; last error: %v", pc.reloads, pc.err)
	})
	w.step("Prometheus up at %s with the operator's configuration, reloaded when the Secret changes", prom.URL)
	return prom, pc
}

// reloaded is how many times the configuration was reloaded after a
// change of the Secret, and the last error.
func (pc *promConfig) reloaded() (int, error) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	return pc.reloads, pc.err
}

// loadedConfig is the configuration Prometheus runs now
// (GET /api/v1/status/config).
func loadedConfig(ctx context.Context, promURL string) (string, error) {
	body, err := harness.Get(ctx, promURL+"/api/v1/status/config")
	if err != nil {
		return "", err
	}
	var resp struct {
		Data struct{ YAML string }
	}
	if err := yaml.Unmarshal(body, &resp); err != nil {
		return "", fmt.Errorf("decoding /api/v1/status/config: %w", err)
	}
	return resp.Data.YAML, nil
}

// stepHonorLabels sets the ServiceMonitor's honorLabels to true and back
// to false, and waits each time for the operator to rewrite its Secret and
// for Prometheus to run the new configuration after a reload, and for the
// rule's seriesQuery to find the command series in a scrape made with it.
func stepHonorLabels(ctx context.Context, t *testing.T, w *world, c *cluster.Cluster, prom *harness.Prometheus, pc *promConfig, kongPod string) {
	t.Helper()
	const smPath = "/apis/monitoring.coreos.com/v1/namespaces/kong/servicemonitors/kong-metrics-sidecar"
	for _, honor := range []bool{true, false} {
		before, _ := pc.reloaded()
		patch := fmt.Sprintf(`[{"op":"replace","path":"/spec/endpoints/0/honorLabels","value":%v}]`, honor)
		if _, err := c.Client.Discovery().RESTClient().Patch(types.JSONPatchType).AbsPath(smPath).Body([]byte(patch)).DoRaw(ctx); err != nil {
			t.Fatalf("patching the ServiceMonitor's honorLabels to %v: %v", honor, err)
		}
		changed := time.Now()
		// Prometheus prints honor_labels only when true.
		w.waitFor(ctx, 60*time.Second, fmt.Sprintf("Prometheus reloaded with honor_labels %v from the operator's Secret", honor), func() (bool, string) {
			n, rerr := pc.reloaded()
			cfg, err := loadedConfig(ctx, prom.URL)
			if err != nil {
				return false, err.Error()
			}
			has := strings.Contains(cfg, "honor_labels: true")
			return n > before && has == honor, fmt.Sprintf("%d reloads (last error %v); loaded configuration has honor_labels true: %v", n, rerr, has)
		})
		reloaded := time.Since(changed).Round(100 * time.Millisecond)
		// A scrape after the reload: the sample's timestamp is newer.
		w.waitFor(ctx, 60*time.Second, "a scrape with the reloaded configuration", func() (bool, string) {
			samples, err := prom.Query(ctx, fmt.Sprintf(`time() - timestamp(up{job="kong-metrics-sidecar",pod=%q}) < %f`, kongPod, time.Since(changed).Seconds()))
			if err != nil {
				return false, err.Error()
			}
			return len(samples) == 1, fmt.Sprintf("%d fresh up samples", len(samples))
		})
		step3Scrape(ctx, t, w, prom, kongPod)
		w.step("step 3b: ServiceMonitor honorLabels %v: operator rewrote the Secret, Prometheus reloaded %s after the change, and its next scrape gives the rule the same series", honor, reloaded)
	}
}

// stepPodMonitor applies the shipped PodMonitor beside the ServiceMonitor,
// waits for the operator's job to be loaded after a reload and for its
// scrape of the sidecar to give the rule's seriesQuery the command series
// with the labels the PodMonitor's relabelings set, then deletes it again
// (the docs say to use one monitor, not both) and waits for its job to go.
func stepPodMonitor(ctx context.Context, t *testing.T, w *world, c *cluster.Cluster, ap *applier, prom *harness.Prometheus, pc *promConfig, kongPod string) {
	t.Helper()
	const (
		job   = "kong/kong-metrics-sidecar" // the PodMonitor's namespace/name
		pmJob = "podMonitor/kong/kong-metrics-sidecar/0"
		pmAPI = "/apis/monitoring.coreos.com/v1/namespaces/kong/podmonitors/kong-metrics-sidecar"
	)
	data, err := os.ReadFile(filepath.Join(harness.RepoRoot(), "manifests", "monitoring", "podmonitor", "podmonitor.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var pm unstructured.Unstructured
	if err := yaml.Unmarshal(data, &pm.Object); err != nil {
		t.Fatalf("decoding the shipped PodMonitor: %v", err)
	}
	waitJob := func(want bool, before int) {
		w.waitFor(ctx, 60*time.Second, fmt.Sprintf("Prometheus reloaded, job %s loaded: %v, the ServiceMonitor's job still there", pmJob, want), func() (bool, string) {
			n, rerr := pc.reloaded()
			cfg, err := loadedConfig(ctx, prom.URL)
			if err != nil {
				return false, err.Error()
			}
			has := strings.Contains(cfg, "job_name: "+pmJob)
			sm := strings.Contains(cfg, "job_name: serviceMonitor/kong/kong-metrics-sidecar/0")
			return n > before && has == want && sm, fmt.Sprintf("%d reloads (last error %v); job loaded: %v; the ServiceMonitor's: %v", n, rerr, has, sm)
		})
	}
	before, _ := pc.reloaded()
	if err := ap.apply(ctx, &pm); err != nil {
		t.Fatal(err)
	}
	applied := time.Now()
	waitJob(true, before)
	reloaded := time.Since(applied).Round(100 * time.Millisecond)
	cfg, err := adapter.ParseConfig(shippedAdapterConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	obs := w.waitFor(ctx, 60*time.Second, "the rule's seriesQuery finds the command series the PodMonitor's job scrapes", func() (bool, string) {
		series, err := prom.Series(ctx, cfg.Rules[0].SeriesQuery)
		if err != nil {
			return false, err.Error()
		}
		for _, s := range series {
			if s["job"] == job && s["exported_service"] == "command" && s["exported_namespace"] == "kong" &&
				s["namespace"] == "kong" && s["pod"] == kongPod && s["container"] == sidecarName && s["endpoint"] == "sidecar-metrics" {
				return true, fmt.Sprint(s)
			}
		}
		return false, fmt.Sprintf("%d series match, none of job %s", len(series), job)
	})
	w.step("step 3c: the shipped PodMonitor: the operator added job %s, Prometheus reloaded %s after the apply; the rule finds %s", pmJob, reloaded, obs)

	before, _ = pc.reloaded()
	if err := c.Client.Discovery().RESTClient().Delete().AbsPath(pmAPI).Do(ctx).Error(); err != nil {
		t.Fatalf("deleting the PodMonitor: %v", err)
	}
	waitJob(false, before)
	w.step("step 3c passed: PodMonitor deleted, its job gone from Prometheus after a reload; the ServiceMonitor's stays")
}

// follow renders and reloads the configuration if the Secret changed.
func (pc *promConfig) follow(ctx context.Context, secrets interface {
	Get(context.Context, string, metav1.GetOptions) (*corev1.Secret, error)
}, promURL string) {
	s, err := secrets.Get(ctx, promSecret, metav1.GetOptions{})
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if err != nil {
		if ctx.Err() == nil {
			pc.err = err
		}
		return
	}
	gz := s.Data[promConfigKey]
	if bytes.Equal(gz, pc.last) {
		return
	}
	cfg, _, err := renderPrometheusConfig(gz, pc.kubeconfig)
	if err == nil {
		err = os.WriteFile(pc.file, cfg, 0o644)
	}
	if err == nil {
		err = reloadPrometheus(ctx, promURL)
	}
	if err != nil {
		pc.err = err
		return
	}
	pc.last = gz
	pc.reloads++
}

// reloadPrometheus is the config-reloader's POST /-/reload.
func reloadPrometheus(ctx context.Context, promURL string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, promURL+"/-/reload", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("reloading Prometheus: %w", err)
	}
	defer func() { _ = resp.Body.Close() }() // a read-only response
	body, _ := io.ReadAll(resp.Body)         // only for the error message
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("reloading Prometheus: HTTP %d: %s", resp.StatusCode, body)
	}
	return nil
}

func keys(s *corev1.Secret) []string {
	var ks []string
	for k := range s.Data {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// podAddresses hands out the addresses of podCIDR's first /24 from .2, one
// per pod, each one on which port is free, so that every pod's processes
// can listen on its own address and the pod's port, as in a cluster.
func podAddresses(port string) fakekubelet.PodIP {
	var mu sync.Mutex
	next := 2
	return func(*corev1.Pod) (string, error) {
		mu.Lock()
		defer mu.Unlock()
		for ; next < 255; next++ {
			ip := fmt.Sprintf("10.244.0.%d", next)
			l, err := net.Listen("tcp", net.JoinHostPort(ip, port))
			if err != nil {
				continue
			}
			next++
			if err := l.Close(); err != nil {
				return "", err
			}
			return ip, nil
		}
		return "", fmt.Errorf("no address left in 10.244.0.2-254 with port %s free", port)
	}
}
