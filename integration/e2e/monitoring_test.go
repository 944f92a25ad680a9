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
	"strconv"
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
	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/testsupport/harness"
)

// The Prometheus resource of overlay/prometheus.yaml, and the Secret into
// which Prometheus Operator writes its configuration.
const (
	promNamespace = "prometheus"
	promName      = "prometheus-kube-prometheus-prometheus"
	promSecret    = "prometheus-" + promName
	promConfigKey = "prometheus.yaml.gz"
	promAPI       = "/apis/monitoring.coreos.com/v1/namespaces/" + promNamespace + "/prometheuses/" + promName
)

// promPod is the name of the StatefulSet's pod i, whose place the test's
// Prometheus replica i takes: what the config-reloader would put in
// $(POD_NAME).
func promPod(i int) string { return fmt.Sprintf("prometheus-%s-%d", promName, i) }

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
	pod        string // $(POD_NAME)

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
//     StatefulSet pod's environment (pod, shard 0);
//   - adds kubeconfig_file to every kubernetes_sd_configs entry: the
//     operator writes them for in-cluster defaults (the pod's ServiceAccount
//     token and the kubernetes.default Service), which a process outside a
//     pod does not have. An entry that names an api_server is refused.
func renderPrometheusConfig(gz []byte, kubeconfig, pod string) ([]byte, int, error) {
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		return nil, 0, fmt.Errorf("decompressing %s: %w", promConfigKey, err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		return nil, 0, fmt.Errorf("decompressing %s: %w", promConfigKey, err)
	}
	env := map[string]string{"POD_NAME": pod, "SHARD": "0"}
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
	if err := relativeRuleFiles(cfg); err != nil { // alerts_test.go
		return nil, 0, err
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

// promReplica is one Prometheus of the Prometheus resource's replicas, in
// place of StatefulSet pod promPod(index): its own configuration file,
// data and a fixed address, so that it can be killed and started again
// where it was, as a pod's container restarts.
type promReplica struct {
	harness.Prometheus // URL is fixed; Process changes on restart (the test's goroutine only)
	index              int
	bin, dir, addr     string
	pc                 *promConfig
}

// start runs the replica's Prometheus and waits until it is ready.
func (r *promReplica) start(t *testing.T, w *world) {
	t.Helper()
	p, err := harness.Start(fmt.Sprintf("prometheus-%d", r.index), r.bin, []string{
		"--config.file=" + r.pc.file,
		"--storage.tsdb.path=" + filepath.Join(r.dir, "data"),
		"--web.listen-address=" + r.addr,
		"--web.enable-lifecycle", // POST /-/reload, as the config-reloader does
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	w.started(p)
	r.Process = p
	if err := harness.WaitHTTP(r.URL+"/-/ready", p, time.Minute); err != nil {
		t.Fatal(err)
	}
}

// startMonitoring waits for the operator to write the configuration of
// the Prometheus resource, runs one Prometheus 3 with it for each of the
// resource's replicas and keeps each in step with the Secret until the
// test ends.
func startMonitoring(ctx context.Context, t *testing.T, w *world, c *cluster.Cluster, bin, dir string) []*promReplica {
	t.Helper()
	// Prometheus's discovery authenticates as the chart's ServiceAccount:
	// overlay/prometheus.yaml's ClusterRole is what it runs with.
	kubeconfig, err := c.Kubeconfig("prometheus", "system:serviceaccount:"+promNamespace+":"+promName,
		[]string{"system:serviceaccounts", "system:serviceaccounts:" + promNamespace})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := c.Client.Discovery().RESTClient().Get().AbsPath(promAPI).DoRaw(ctx)
	if err != nil {
		t.Fatalf("reading the Prometheus resource: %v", err)
	}
	var res struct {
		Spec struct{ Replicas *int }
	}
	if err := yaml.Unmarshal(raw, &res); err != nil || res.Spec.Replicas == nil || *res.Spec.Replicas < 1 {
		t.Fatalf("the Prometheus resource's spec.replicas: %v %s", err, raw)
	}
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
	var proms []*promReplica
	for i := range *res.Spec.Replicas {
		rdir := filepath.Join(dir, strconv.Itoa(i))
		if err := os.MkdirAll(rdir, 0o755); err != nil {
			t.Fatal(err)
		}
		pc := &promConfig{file: filepath.Join(rdir, "prometheus.yml"), kubeconfig: kubeconfig, pod: promPod(i)}
		cfg, n, err := renderPrometheusConfig(gz, kubeconfig, pc.pod)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(pc.file, cfg, 0o644); err != nil {
			t.Fatal(err)
		}
		pc.last = gz
		addr := freeAddr(t)
		r := &promReplica{Prometheus: harness.Prometheus{URL: "http://" + addr}, index: i, bin: bin, dir: rdir, addr: addr, pc: pc}
		r.start(t, w)
		proms = append(proms, r)
		w.step("Prometheus %d (%s) up at %s with the operator's configuration: jobs %v; kubeconfig_file added to %d kubernetes_sd_configs", i, pc.pod, r.URL, jobNames(cfg), n)
	}

	// The config-reloader's loop, beside each replica: the Secret, polled,
	// then POST /-/reload.
	rctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	urls := make([]string, len(proms))
	for i, r := range proms {
		urls[i] = r.URL
	}
	go func() {
		defer close(done)
		for {
			select {
			case <-rctx.Done():
				return
			case <-time.After(time.Second):
			}
			for i, r := range proms {
				r.pc.follow(rctx, secrets, urls[i])
			}
		}
	}()
	t.Cleanup(func() {
		stop()
		<-done
		for _, r := range proms {
			n, err := r.pc.reloaded()
			t.Logf("Prometheus %d: config reloads after the Secret changed: %d; last error: %v", r.index, n, err)
		}
	})
	w.step("%d Prometheus replicas (the resource's spec.replicas) run, each reloaded when the operator's Secret changes", len(proms))
	return proms
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

// reloadsOf is each replica's count of reloads after a Secret change.
func reloadsOf(proms []*promReplica) []int {
	n := make([]int, len(proms))
	for i, r := range proms {
		n[i], _ = r.pc.reloaded()
	}
	return n
}

// waitReloaded waits until every replica has been reloaded since before
// and runs a configuration that has, per has, what the step wants.
func waitReloaded(ctx context.Context, w *world, proms []*promReplica, before []int, what string, has func(cfg string) (bool, string)) {
	w.waitFor(ctx, 60*time.Second, "every Prometheus reloaded: "+what, func() (bool, string) {
		var obs []string
		done := true
		for i, r := range proms {
			n, rerr := r.pc.reloaded()
			cfg, err := loadedConfig(ctx, r.URL)
			if err != nil {
				return false, err.Error()
			}
			ok, o := has(cfg)
			done = done && ok && n > before[i]
			obs = append(obs, fmt.Sprintf("Prometheus %d: %d reloads (last error %v); %s", i, n, rerr, o))
		}
		return done, strings.Join(obs, "; ")
	})
}

// waitFreshScrapes waits until every replica has scraped every pod's
// sidecar since the time since.
func waitFreshScrapes(ctx context.Context, w *world, proms []*promReplica, pods []string, since time.Time) {
	w.waitFor(ctx, 60*time.Second, "a scrape of every sidecar by every Prometheus with the reloaded configuration", func() (bool, string) {
		var obs []string
		done := true
		for i, r := range proms {
			fresh, err := scrapedSince(ctx, r, since)
			if err != nil {
				return false, err.Error()
			}
			for _, p := range pods {
				done = done && fresh[p]
			}
			obs = append(obs, fmt.Sprintf("Prometheus %d: %d fresh up samples", i, len(fresh)))
		}
		return done, strings.Join(obs, "; ")
	})
}

// scrapedSince returns the pods whose sidecar r has scraped since since.
func scrapedSince(ctx context.Context, r *promReplica, since time.Time) (map[string]bool, error) {
	samples, err := r.Query(ctx, fmt.Sprintf(`time() - timestamp(up{job="kong-metrics-sidecar"}) < %f`, time.Since(since).Seconds()))
	if err != nil {
		return nil, err
	}
	fresh := map[string]bool{}
	for _, s := range samples {
		fresh[s.Metric["pod"]] = true
	}
	return fresh, nil
}

// stepHonorLabels sets the ServiceMonitor's honorLabels to true and back
// to false, and waits each time for the operator to rewrite its Secret and
// for every Prometheus to run the new configuration after a reload, and
// for the rule's seriesQuery to find every pod's command series in a
// scrape made with it.
func stepHonorLabels(ctx context.Context, t *testing.T, w *world, c *cluster.Cluster, proms []*promReplica, pods []string) {
	t.Helper()
	const smPath = "/apis/monitoring.coreos.com/v1/namespaces/kong/servicemonitors/kong-metrics-sidecar"
	for _, honor := range []bool{true, false} {
		before := reloadsOf(proms)
		patch := fmt.Sprintf(`[{"op":"replace","path":"/spec/endpoints/0/honorLabels","value":%v}]`, honor)
		if _, err := c.Client.Discovery().RESTClient().Patch(types.JSONPatchType).AbsPath(smPath).Body([]byte(patch)).DoRaw(ctx); err != nil {
			t.Fatalf("patching the ServiceMonitor's honorLabels to %v: %v", honor, err)
		}
		changed := time.Now()
		// Prometheus prints honor_labels only when true.
		waitReloaded(ctx, w, proms, before, fmt.Sprintf("honor_labels %v from the operator's Secret", honor), func(cfg string) (bool, string) {
			has := strings.Contains(cfg, "honor_labels: true")
			return has == honor, fmt.Sprintf("loaded configuration has honor_labels true: %v", has)
		})
		reloaded := time.Since(changed).Round(100 * time.Millisecond)
		// A scrape after the reload: the sample's timestamp is newer.
		waitFreshScrapes(ctx, w, proms, pods, changed)
		for _, r := range proms {
			step3Scrape(ctx, t, w, r, pods)
		}
		w.step("step 3b: ServiceMonitor honorLabels %v: operator rewrote the Secret, every Prometheus reloaded %s after the change, and its next scrapes give the rule the same series", honor, reloaded)
	}
}

// stepPodMonitor applies the shipped PodMonitor beside the ServiceMonitor,
// waits for the operator's job to be loaded by every Prometheus after a
// reload and for its scrapes of the sidecars to give the rule's
// seriesQuery every pod's command series with the labels the PodMonitor's
// relabelings set, then deletes it again (the docs say to use one monitor,
// not both) and waits for its job to go.
func stepPodMonitor(ctx context.Context, t *testing.T, w *world, c *cluster.Cluster, ap *applier, proms []*promReplica, pods []string) {
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
	jobLoaded := func(want bool) func(string) (bool, string) {
		return func(cfg string) (bool, string) {
			has := strings.Contains(cfg, "job_name: "+pmJob)
			sm := strings.Contains(cfg, "job_name: serviceMonitor/kong/kong-metrics-sidecar/0")
			return has == want && sm, fmt.Sprintf("job %s loaded: %v; the ServiceMonitor's: %v", pmJob, has, sm)
		}
	}
	before := reloadsOf(proms)
	if err := ap.apply(ctx, &pm); err != nil {
		t.Fatal(err)
	}
	applied := time.Now()
	waitReloaded(ctx, w, proms, before, "the PodMonitor's job added, the ServiceMonitor's still there", jobLoaded(true))
	reloaded := time.Since(applied).Round(100 * time.Millisecond)
	cfg, err := adapter.ParseConfig(shippedAdapterConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	obs := w.waitFor(ctx, 60*time.Second, "the rule's seriesQuery finds every pod's command series the PodMonitor's job scrapes, in every Prometheus", func() (bool, string) {
		var obs []string
		done := true
		for i, r := range proms {
			series, err := r.Series(ctx, cfg.Rules[0].SeriesQuery)
			if err != nil {
				return false, err.Error()
			}
			found := map[string]bool{}
			for _, s := range series {
				if s["job"] == job && s["exported_service"] == "command" && s["exported_namespace"] == "kong" &&
					s["namespace"] == "kong" && s["container"] == sidecarName && s["endpoint"] == "sidecar-metrics" {
					found[s["pod"]] = true
				}
			}
			for _, p := range pods {
				done = done && found[p]
			}
			obs = append(obs, fmt.Sprintf("Prometheus %d: job %s has the command series of %d pods", i, job, len(found)))
		}
		return done, strings.Join(obs, "; ")
	})
	w.step("step 3c: the shipped PodMonitor: the operator added job %s, every Prometheus reloaded %s after the apply; %s", pmJob, reloaded, obs)

	before = reloadsOf(proms)
	if err := c.Client.Discovery().RESTClient().Delete().AbsPath(pmAPI).Do(ctx).Error(); err != nil {
		t.Fatalf("deleting the PodMonitor: %v", err)
	}
	waitReloaded(ctx, w, proms, before, "the PodMonitor's job gone, the ServiceMonitor's still there", jobLoaded(false))
	w.step("step 3c passed: PodMonitor deleted, its job gone from every Prometheus after a reload; the ServiceMonitor's stays")
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
	cfg, _, err := renderPrometheusConfig(gz, pc.kubeconfig, pc.pod)
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
