//go:build e2escale

package e2e_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/integration/e2e/cluster"
	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/integration/e2e/fakekubelet"
	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/testsupport/harness"
)

// The scale scenario (make e2e-scale, issue 18): the tutorial's HPA on a
// sharded, highly available Prometheus behind Thanos Query.
const (
	scaleKongPods = 20
	scaleShards   = 2
	scaleReplicas = 2
	// thanosVersion is the version bins/thanos builds, which the Prometheus
	// resource names as kube-prometheus-stack does (prometheusSpec.thanos).
	thanosVersion = "v0.42.4"
	// replicaLabel is the external label Prometheus Operator gives each
	// replica ($(POD_NAME)); Thanos Query deduplicates along it.
	replicaLabel = "prometheus_replica"
	sidecarJob   = "serviceMonitor/kong/kong-metrics-sidecar/0"
	// commandMatchers are the rule's <<.LabelMatchers>> for the HPA's
	// described object, Service kong/command.
	commandMatchers = `exported_namespace="kong",exported_service="command"`
)

// TestScale is the scale scenario (make e2e-scale; docs/performance.md):
// the tutorial's custom metric and HPA with scaleKongPods Kong pods and the
// Prometheus resource at shards × replicas with a Thanos sidecar, read
// through Thanos Query, checked against one Prometheus that scrapes every
// pod, with a shard stopped for a while; it prints the figures the docs
// quote. Behind the e2escale build tag, so that make e2e leaves it out.
func TestScale(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 18*time.Minute)
	defer cancel()
	modules := []string{"etcd", "kubernetes", "prometheus", "prometheus-operator", "thanos"}
	tb := startTestbed(ctx, t, modules...)
	if tb == nil {
		return // it ran in its own network namespace
	}
	w, logger, dir, third, own := tb.w, tb.logger, tb.dir, tb.third, tb.own
	adapterBin, adapterName, err := adapterBinary(ctx)
	if err != nil {
		t.Fatal(err)
	}
	w.step("binaries ready (custom metrics: %s; thanos %s)", adapterName, third["E2E_THANOS_BIN"])

	c := tb.startControlPlane(ctx, t)

	objs, injectorAddr, adapterAddr := tb.buildTutorial(t, c)
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
	w.step("server-side applied %d objects (%s)", n, kinds(objs))
	scaleUpResources(ctx, t, w, c)
	startOperator(t, w, c, third["E2E_PROMETHEUS_OPERATOR_BIN"], filepath.Join(dir, "operator"))

	fleet := startFleet(ctx, t, w, c, own, sidecarPort, filepath.Join(dir, "fleet"), logger)
	mon := startShardedMonitoring(ctx, t, w, c, third["E2E_PROMETHEUS_BIN"], third["E2E_THANOS_BIN"], filepath.Join(dir, "monitoring"))
	tr := startFleetTraffic(ctx, fleet, 0.1)
	t.Cleanup(tr.stop)

	assertSharding(ctx, t, w, mon, fleet)
	startAdapter(t, w, c, adapterBin, adapterAddr, mon.query.URL, filepath.Join(dir, "adapter"))
	step4Metric(ctx, t, w, c)
	assertSameAnswer(ctx, t, w, mon)
	measureScale(ctx, t, w, mon, fleet)

	scaleTo(ctx, t, w, c, 10, "above target", 150*time.Second)
	w.step("HPA: at sleep 0.1 on %d Kong pods, command scaled to 10 through Thanos", scaleKongPods)
	stepShardOutage(ctx, t, w, c, mon)

	tr.stop()
	tr = startFleetTraffic(ctx, fleet, 0)
	t.Cleanup(tr.stop)
	scaleTo(ctx, t, w, c, 1, "All metrics below target", 180*time.Second)
	w.step("HPA: at sleep 0 command scaled back to 1 through Thanos")
}

// scaleUpResources makes the Prometheus resource what kube-prometheus-stack
// renders for prometheusSpec.shards: 2 and prometheusSpec.thanos (the
// sidecar container, no object storage) beside its replicas: 2, and runs
// the Kong Deployment at scaleKongPods replicas.
func scaleUpResources(ctx context.Context, t *testing.T, w *world, c *cluster.Cluster) {
	t.Helper()
	patch := fmt.Sprintf(`{"spec":{"shards":%d,"replicas":%d,"thanos":{"version":%q}}}`, scaleShards, scaleReplicas, thanosVersion)
	path := "/apis/monitoring.coreos.com/v1/namespaces/" + promNamespace + "/prometheuses/" + promName
	if _, err := c.Client.Discovery().RESTClient().Patch(types.MergePatchType).AbsPath(path).Body([]byte(patch)).DoRaw(ctx); err != nil {
		t.Fatalf("patching the Prometheus resource: %v", err)
	}
	kp := fmt.Sprintf(`{"spec":{"replicas":%d}}`, scaleKongPods)
	if _, err := c.Client.AppsV1().Deployments("kong").Patch(ctx, "kong", types.MergePatchType, []byte(kp), metav1.PatchOptions{}); err != nil {
		t.Fatalf("scaling the Kong Deployment: %v", err)
	}
	w.step("Prometheus resource patched with %s; Kong Deployment at %d replicas", patch, scaleKongPods)
}

// scalePod is one Kong data-plane pod's processes: the simulator in Kong's
// place and the injected sidecar on the pod's address.
type scalePod struct {
	name, ip                        string
	proxyURL, statusURL, sidecarURL string
	sim, sidecar                    *harness.Process
}

// startFleet waits for the Kong Deployment's pods, each stored with the
// injected sidecar and given an address, and runs a simulator (Kong's
// fixture services: kong/command, which the extension selects, and
// default/billing and default/echo, which it does not, and 100 generated
// routes with traffic, so that Kong's page is a gateway's) and the sidecar, with
// the injected environment, for each. The ConfigMap the sidecars mount is
// projected once into a directory they share.
func startFleet(ctx context.Context, t *testing.T, w *world, c *cluster.Cluster, own map[string]string, sidecarPort, dir string, logger *slog.Logger) []*scalePod {
	t.Helper()
	var pods []corev1.Pod
	w.waitFor(ctx, 120*time.Second, fmt.Sprintf("%d Kong pods with the sidecar, Running with an address", scaleKongPods), func() (bool, string) {
		list, err := c.Client.CoreV1().Pods("kong").List(ctx, metav1.ListOptions{LabelSelector: "app=kong"})
		if err != nil {
			return false, err.Error()
		}
		pods = pods[:0]
		for _, p := range list.Items {
			if sc, _ := sidecarOf(&p); sc == nil {
				t.Fatalf("Kong pod %s stored without the sidecar: %s", p.Name, podSummary(&p))
			}
			if p.Status.PodIP != "" {
				pods = append(pods, p)
			}
		}
		return len(pods) == scaleKongPods, fmt.Sprintf("%d pods, %d with an address", len(list.Items), len(pods))
	})
	sc, _ := sidecarOf(&pods[0])
	var cmName, mountPath string
	for _, m := range sc.VolumeMounts {
		for _, v := range pods[0].Spec.Volumes {
			if v.Name == m.Name && v.ConfigMap != nil {
				cmName, mountPath = v.ConfigMap.Name, m.MountPath
			}
		}
	}
	if cmName == "" {
		t.Fatalf("the injected sidecar mounts no ConfigMap: %+v", sc.VolumeMounts)
	}
	volume := filepath.Join(dir, "volume")
	projected := make(chan string, 1)
	if err := fakekubelet.ProjectConfigMap(ctx, c.Client, "kong", cmName, volume, logger, func(rv string) {
		select {
		case projected <- rv:
		default:
		}
	}); err != nil {
		t.Fatal(err)
	}
	<-projected

	var fleet []*scalePod
	for _, pod := range pods {
		sc, _ := sidecarOf(&pod)
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
		// Kong's ports (kong.yaml) on the pod's own address: free, as in a
		// pod, however many pods run.
		proxyAddr, statusAddr := pod.Status.PodIP+":8000", pod.Status.PodIP+":8100"
		sim, err := harness.Start("kong-simulator-"+pod.Name, own["kong-simulator"], []string{"-proxy-listen", proxyAddr, "-listen", statusAddr, "-services", "fixture", "-routes", "100"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		w.started(sim)
		kp := &scalePod{name: pod.Name, ip: pod.Status.PodIP, proxyURL: "http://" + proxyAddr, statusURL: "http://" + statusAddr, sim: sim}
		kp.sidecarURL = "http://" + pod.Status.PodIP + ":" + sidecarPort
		env["SIDECAR_LISTEN_ADDR"] = pod.Status.PodIP + ":" + sidecarPort
		env["SIDECAR_UPSTREAM_URL"] = kp.statusURL + "/metrics"
		env["SIDECAR_CONFIG_FILE"] = filepath.Join(volume, strings.TrimPrefix(cfgFile, mountPath+"/"))
		env["SIDECAR_LOG_FORMAT"] = "text"
		var list []string
		for k, v := range env {
			list = append(list, k+"="+v)
		}
		kp.sidecar, err = harness.Start(sidecarName+"-"+pod.Name, own[sidecarName], nil, list)
		if err != nil {
			t.Fatal(err)
		}
		w.started(kp.sidecar)
		fleet = append(fleet, kp)
	}
	for _, kp := range fleet {
		if err := harness.WaitHTTP(kp.statusURL+"/status", kp.sim, 30*time.Second); err != nil {
			t.Fatal(err)
		}
		if err := harness.WaitHTTP(kp.sidecarURL+"/readyz", kp.sidecar, 30*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	w.step("%d Kong pods up: a simulator (kong/command, default/billing, default/echo) and the sidecar on each pod's address, reading ConfigMap kong/%s", len(fleet), cmName)
	return fleet
}

// fleetTraffic is request loops over every Kong pod.
type fleetTraffic struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// startFleetTraffic sends the tutorial's request to every pod, one loop
// per pod with a pause of 50ms between requests, at a delay that differs
// from pod to pod, from 0.6 to 1.4 times delay (about delay on average,
// weighted by the requests), so that an answer from some of the pods only
// is not the answer from all of them; and a request to default/billing
// (not selected) every 200ms per pod, so that the page carries series the
// extension drops.
func startFleetTraffic(ctx context.Context, fleet []*scalePod, delay float64) *fleetTraffic {
	ctx, cancel := context.WithCancel(ctx)
	tr := &fleetTraffic{cancel: cancel, done: make(chan struct{})}
	loops := make(chan struct{}, 2*len(fleet))
	loop := func(url string, pause time.Duration) {
		defer func() { loops <- struct{}{} }()
		for ctx.Err() == nil {
			_, _ = harness.Get(ctx, url) // the simulator records what it answers; the HPA checks the effect
			select {
			case <-ctx.Done():
			case <-time.After(pause):
			}
		}
	}
	for i, kp := range fleet {
		d := delay * (0.6 + 0.8*float64(i)/float64(max(len(fleet)-1, 1)))
		go loop(kp.proxyURL+"/command/shell?cmd=sleep%20"+strconv.FormatFloat(d, 'f', 3, 64), 50*time.Millisecond)
		go loop(kp.proxyURL+"/billing/invoices", 200*time.Millisecond)
	}
	go func() {
		for range 2 * len(fleet) {
			<-loops
		}
		close(tr.done)
	}()
	return tr
}

func (tr *fleetTraffic) stop() {
	tr.cancel()
	<-tr.done
}

// promInstance is one of the Prometheus processes the harness runs in a
// StatefulSet pod's place, with the Thanos sidecar beside it.
type promInstance struct {
	pod          string // the StatefulSet pod whose place it takes
	shard        int
	ip           string
	prom         *harness.Prometheus
	args         []string
	sidecar      *harness.Process
	sidecarGRPC  string
	bin, dataDir string
}

// monitoring is the sharded, HA Prometheus, Thanos Query over it and the
// single reference Prometheus that scrapes every pod.
type monitoring struct {
	instances []*promInstance
	started   time.Time           // when the first Prometheus started scraping
	query     *harness.Prometheus // Thanos Query's HTTP API
	reference *harness.Prometheus
}

// shardPod is the name of the StatefulSet pod Prometheus Operator creates
// for shard and replica: prometheus-<name>-<replica> for shard 0,
// prometheus-<name>-shard-<n>-<replica> for the others.
func shardPod(shard, replica int) string {
	if shard == 0 {
		return fmt.Sprintf("prometheus-%s-%d", promName, replica)
	}
	return fmt.Sprintf("prometheus-%s-shard-%d-%d", promName, shard, replica)
}

// startShardedMonitoring waits for the operator's configuration of the
// sharded resource and runs, for each shard and replica, Prometheus with
// it (the config-reloader's $(SHARD) and $(POD_NAME) expanded for that
// pod) on an address of its own, a Thanos sidecar beside it, Thanos Query
// over the sidecars, and a reference Prometheus with the same
// configuration for one shard (hashmod modulus 1), which scrapes every pod.
func startShardedMonitoring(ctx context.Context, t *testing.T, w *world, c *cluster.Cluster, promBin, thanosBin, dir string) *monitoring {
	t.Helper()
	kubeconfig, err := c.Kubeconfig("prometheus", "system:serviceaccount:"+promNamespace+":"+promName,
		[]string{"system:serviceaccounts", "system:serviceaccounts:" + promNamespace})
	if err != nil {
		t.Fatal(err)
	}
	var gz []byte
	w.waitFor(ctx, 90*time.Second, "Prometheus Operator writes the sharded configuration", func() (bool, string) {
		s, err := c.Client.CoreV1().Secrets(promNamespace).Get(ctx, promSecret, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		gz = s.Data[promConfigKey]
		raw, err := gunzip(gz)
		if err != nil {
			return false, err.Error()
		}
		mod := fmt.Sprintf("modulus: %d", scaleShards)
		return strings.Contains(string(raw), mod) && strings.Contains(string(raw), sidecarJob),
			fmt.Sprintf("%d bytes; %q: %v", len(raw), mod, strings.Contains(string(raw), mod))
	})
	raw, err := gunzip(gz)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), replicaLabel+": $(POD_NAME)") {
		t.Fatalf("the operator's configuration has no external label %s: $(POD_NAME):\n%s", replicaLabel, raw)
	}
	mon := &monitoring{started: time.Now()}
	var endpoints []string
	for shard := range scaleShards {
		for replica := range scaleReplicas {
			pi := &promInstance{
				pod:     shardPod(shard, replica),
				shard:   shard,
				ip:      fmt.Sprintf("10.244.1.%d", 10+shard*scaleReplicas+replica),
				bin:     promBin,
				dataDir: filepath.Join(dir, shardPod(shard, replica), "data"),
			}
			cfg, err := shardConfig(raw, pi.pod, shard, scaleShards, kubeconfig)
			if err != nil {
				t.Fatal(err)
			}
			cfgFile := filepath.Join(dir, pi.pod, "prometheus.yml")
			if err := os.MkdirAll(filepath.Dir(cfgFile), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(cfgFile, cfg, 0o644); err != nil {
				t.Fatal(err)
			}
			pi.args = []string{
				"--config.file=" + cfgFile,
				"--storage.tsdb.path=" + pi.dataDir,
				"--web.listen-address=" + pi.ip + ":9090",
				"--web.enable-lifecycle",
				// As the operator runs Prometheus beside a Thanos sidecar.
				"--storage.tsdb.min-block-duration=2h",
				"--storage.tsdb.max-block-duration=2h",
			}
			pi.start(t, w)
			pi.sidecarGRPC = pi.ip + ":10901"
			sc, err := harness.Start("thanos-sidecar-"+pi.pod, thanosBin, []string{
				"sidecar",
				"--prometheus.url=" + pi.prom.URL,
				"--tsdb.path=" + pi.dataDir,
				"--grpc-address=" + pi.sidecarGRPC,
				"--http-address=" + pi.ip + ":10902",
				"--log.level=warn",
			}, nil)
			if err != nil {
				t.Fatal(err)
			}
			w.started(sc)
			pi.sidecar = sc
			if err := harness.WaitHTTP("http://"+pi.ip+":10902/-/ready", sc, time.Minute); err != nil {
				t.Fatal(err)
			}
			mon.instances = append(mon.instances, pi)
			endpoints = append(endpoints, "--endpoint-strict="+pi.sidecarGRPC)
		}
	}
	w.step("%d Prometheus (shards × replicas) with the operator's configuration, a Thanos sidecar beside each", len(mon.instances))

	// Thanos Query: deduplication along the replica label; every sidecar a
	// strict endpoint (kept when its health check fails) and no partial
	// responses, so that a shard that cannot answer fails the query
	// instead of leaving its pods out of the sums (see stepShardOutage).
	qip := "10.244.1.100"
	q, err := harness.Start("thanos-query", thanosBin, append([]string{
		"query",
		"--http-address=" + qip + ":10904",
		"--grpc-address=" + qip + ":10903",
		"--query.replica-label=" + replicaLabel,
		"--no-query.partial-response",
		"--log.level=warn",
	}, endpoints...), nil)
	if err != nil {
		t.Fatal(err)
	}
	w.started(q)
	mon.query = &harness.Prometheus{Process: q, URL: "http://" + qip + ":10904"}
	if err := harness.WaitHTTP(mon.query.URL+"/-/ready", q, time.Minute); err != nil {
		t.Fatal(err)
	}

	// The reference: the same configuration with one shard.
	cfg, err := shardConfig(raw, "prometheus-reference-0", 0, 1, kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	refFile := filepath.Join(dir, "reference", "prometheus.yml")
	if err := os.MkdirAll(filepath.Dir(refFile), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(refFile, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	rp, err := harness.Start("prometheus-reference", promBin, []string{
		"--config.file=" + refFile,
		"--storage.tsdb.path=" + filepath.Join(dir, "reference", "data"),
		"--web.listen-address=10.244.1.200:9090",
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	w.started(rp)
	mon.reference = &harness.Prometheus{Process: rp, URL: "http://10.244.1.200:9090"}
	if err := harness.WaitHTTP(mon.reference.URL+"/-/ready", rp, time.Minute); err != nil {
		t.Fatal(err)
	}
	w.step("Thanos Query at %s over %d sidecars (replica label %s); reference Prometheus at %s", mon.query.URL, len(endpoints), replicaLabel, mon.reference.URL)
	return mon
}

// start runs the instance's Prometheus and waits for it to be ready.
func (pi *promInstance) start(t *testing.T, w *world) {
	t.Helper()
	p, err := harness.Start("prometheus-"+pi.pod, pi.bin, pi.args, nil)
	if err != nil {
		t.Fatal(err)
	}
	w.started(p)
	pi.prom = &harness.Prometheus{Process: p, URL: "http://" + pi.ip + ":9090"}
	if err := harness.WaitHTTP(pi.prom.URL+"/-/ready", p, time.Minute); err != nil {
		t.Fatal(err)
	}
}
