package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/integration/e2e/cluster"
	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/integration/e2e/fakekubelet"
	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/testsupport/harness"
)

// routesVolume is the injected route mapping's volume (inject.RoutesVolumeName).
const routesVolume = "kong-metrics-sidecar-routes"

// kongPod is one Kong data plane pod's containers as the kubelet would run
// them: the Kong simulator in place of the proxy container and the
// injected sidecar, both listening on the pod's own address.
type kongPod struct {
	name, ip   string
	proxyURL   string // the simulator's proxy listener, the pod's proxy port
	sidecarURL string // the sidecar, on the pod's address and the Service's port
	statsURL   string // the simulator's own counters (kong-simulator -stats-listen)
	simArgs    []string
	injected   map[string]string // the injected sidecar's environment, as stored
	volume     string            // the sidecar's ConfigMap volume
	projected  chan string       // ConfigMap resourceVersions written into volume

	mu      sync.Mutex // Protects sim.
	sim     *harness.Process
	sidecar *harness.Process
	stop    context.CancelFunc // ends the ConfigMap projection
}

// simulator is the pod's Kong simulator process now.
func (k *kongPod) simulator() *harness.Process {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.sim
}

// metricsFetches is the simulator's own count of the GET /metrics it served.
func (k *kongPod) metricsFetches(ctx context.Context) (uint64, error) {
	body, err := harness.Get(ctx, k.statsURL+"/stats")
	if err != nil {
		return 0, err
	}
	var s struct {
		MetricsFetches uint64 `json:"metrics_fetches"`
	}
	if err := json.Unmarshal(body, &s); err != nil {
		return 0, fmt.Errorf("decoding %s/stats: %w", k.statsURL, err)
	}
	return s.MetricsFetches, nil
}

// dataPlanes does the kubelet's part for the Kong Deployment's pods: for
// every pod the kubelet stand-in has made Running with an address, it runs
// the pod's containers as processes; when a pod is deleted it stops them
// and removes the pod, as the kubelet does once its containers have ended.
type dataPlanes struct {
	w           *world
	c           *cluster.Cluster
	own         map[string]string
	sidecarPort string
	dir         string
	logger      *slog.Logger
	mu          sync.Mutex // Protects pods, err and kongServices.
	pods        map[string]*kongPod
	err         error // the last failure to run or stop a pod
	// kongServices is the simulators' -services: the Kong service the
	// Kong Ingress Controller would make of the stored route; empty: the
	// simulator's default (the Ingress form, kong.command.80).
	kongServices string
}

// setKongServices makes pods started from now on serve services (a
// kong-simulator -services value).
func (dp *dataPlanes) setKongServices(services string) {
	dp.mu.Lock()
	dp.kongServices = services
	dp.mu.Unlock()
}

// simServices is the simulators' -services now.
func (dp *dataPlanes) simServices() string {
	dp.mu.Lock()
	defer dp.mu.Unlock()
	return dp.kongServices
}

// restartKongServing restarts the pod's Kong simulator serving services
// (a kong-simulator -services value), as a Kong whose control plane now
// names the route's service otherwise.
func (dp *dataPlanes) restartKongServing(k *kongPod, services string) error {
	k.simulator().Stop(10 * time.Second)
	k.simArgs = withServices(k.simArgs, services)
	return k.startSimulator(dp)
}

// withServices is args with -services set to services ("" leaves it out).
func withServices(args []string, services string) []string {
	if i := slices.Index(args, "-services"); i >= 0 {
		args = slices.Delete(slices.Clone(args), i, i+2)
	}
	if services == "" {
		return args
	}
	return append(args, "-services", services)
}

// runDataPlanes starts following the Kong Deployment's pods until the test
// ends; the processes of every pod still running are stopped then.
func runDataPlanes(ctx context.Context, t *testing.T, dp *dataPlanes) {
	t.Helper()
	dp.pods = map[string]*kongPod{}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			dp.sync(ctx)
			select {
			case <-ctx.Done():
			case <-time.After(300 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		dp.mu.Lock()
		defer dp.mu.Unlock()
		for _, k := range dp.pods {
			k.halt()
		}
	})
}

// sync starts the pods that run and have no processes yet, and stops
// those deleted.
func (dp *dataPlanes) sync(ctx context.Context) {
	pods := dp.c.Client.CoreV1().Pods("kong")
	list, err := pods.List(ctx, metav1.ListOptions{LabelSelector: "app=kong"})
	if err != nil {
		if ctx.Err() == nil {
			dp.fail(fmt.Errorf("listing Kong pods: %w", err))
		}
		return
	}
	present := map[string]bool{}
	for i := range list.Items {
		p := &list.Items[i]
		present[p.Name] = true
		dp.mu.Lock()
		k := dp.pods[p.Name]
		dp.mu.Unlock()
		switch {
		case p.DeletionTimestamp != nil:
			if k != nil {
				k.halt()
				dp.forget(p.Name)
				dp.w.step("kubelet stand-in: pod %s deleted: its simulator and sidecar stopped", p.Name)
			}
			// The kubelet removes the pod once its containers have ended.
			zero := int64(0)
			err := pods.Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero, Preconditions: &metav1.Preconditions{UID: &p.UID}})
			if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) && ctx.Err() == nil {
				dp.fail(fmt.Errorf("removing deleted pod %s: %w", p.Name, err))
			}
		case k == nil && p.Status.PodIP != "" && p.Spec.NodeName != "":
			k, err := dp.start(ctx, p)
			if err != nil {
				if ctx.Err() == nil {
					dp.fail(fmt.Errorf("running pod %s: %w", p.Name, err))
				}
				continue
			}
			dp.mu.Lock()
			dp.pods[p.Name] = k
			dp.mu.Unlock()
			dp.w.step("kubelet stand-in: pod %s runs: simulator %s (status %s), sidecar %s", p.Name, k.proxyURL, k.simArgs[3], k.sidecarURL)
		}
	}
	dp.mu.Lock()
	var gone []*kongPod
	for name, k := range dp.pods {
		if !present[name] {
			gone = append(gone, k)
			delete(dp.pods, name)
		}
	}
	dp.mu.Unlock()
	for _, k := range gone {
		k.halt()
	}
}

func (dp *dataPlanes) fail(err error) {
	dp.mu.Lock()
	defer dp.mu.Unlock()
	dp.err = err
	dp.logger.Warn("Data plane", "err", err)
}

func (dp *dataPlanes) forget(name string) {
	dp.mu.Lock()
	defer dp.mu.Unlock()
	delete(dp.pods, name)
}

// running returns the pods whose processes run, by name.
func (dp *dataPlanes) running() []*kongPod {
	dp.mu.Lock()
	defer dp.mu.Unlock()
	var out []*kongPod
	for _, k := range dp.pods {
		out = append(out, k)
	}
	slices.SortFunc(out, func(a, b *kongPod) int { return strings.Compare(a.name, b.name) })
	return out
}

// lastErr is the last failure to run or stop a pod.
func (dp *dataPlanes) lastErr() error {
	dp.mu.Lock()
	defer dp.mu.Unlock()
	return dp.err
}

// waitRunning waits until exactly n Kong pods run and returns them.
func (dp *dataPlanes) waitRunning(ctx context.Context, n int, timeout time.Duration) []*kongPod {
	var pods []*kongPod
	dp.w.waitFor(ctx, timeout, fmt.Sprintf("%d Kong pods running, each with its simulator and sidecar", n), func() (bool, string) {
		pods = dp.running()
		names := make([]string, len(pods))
		for i, k := range pods {
			names[i] = k.name + "@" + k.ip
		}
		return len(pods) == n, fmt.Sprintf("running %v; last error %v", names, dp.lastErr())
	})
	return pods
}

// start runs pod's containers: the Kong simulator on the pod's proxy and
// status ports, the sidecar with the environment the injector gave it,
// listening on the pod's address and the Service's port, reading its
// ConfigMap from a volume the kubelet stand-in projects.
func (dp *dataPlanes) start(ctx context.Context, pod *corev1.Pod) (*kongPod, error) {
	sc, _ := sidecarOf(pod)
	if sc == nil {
		return nil, fmt.Errorf("pod %s of the opted-in Deployment has no sidecar: %s", pod.Name, podSummary(pod))
	}
	var proxy *corev1.Container
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == "proxy" {
			proxy = &pod.Spec.Containers[i]
		}
	}
	if proxy == nil {
		return nil, fmt.Errorf("pod %s has no proxy container", pod.Name)
	}
	proxyPort, statusPort := "", ""
	for _, p := range proxy.Ports {
		if p.Name == "proxy" {
			proxyPort = strconv.Itoa(int(p.ContainerPort))
		}
	}
	for _, e := range proxy.Env {
		if e.Name == "KONG_STATUS_LISTEN" {
			_, statusPort, _ = net.SplitHostPort(strings.Fields(e.Value)[0])
		}
	}
	if proxyPort == "" || statusPort == "" {
		return nil, fmt.Errorf("pod %s: proxy container without a proxy port or KONG_STATUS_LISTEN", pod.Name)
	}
	ip := pod.Status.PodIP
	stats, err := harness.FreeAddr()
	if err != nil {
		return nil, err
	}
	k := &kongPod{
		name:       pod.Name,
		ip:         ip,
		proxyURL:   "http://" + net.JoinHostPort(ip, proxyPort),
		sidecarURL: "http://" + net.JoinHostPort(ip, dp.sidecarPort),
		statsURL:   "http://" + stats,
		simArgs:    withServices([]string{"-proxy-listen", net.JoinHostPort(ip, proxyPort), "-listen", net.JoinHostPort(ip, statusPort), "-stats-listen", stats}, dp.simServices()),
		volume:     filepath.Join(dp.dir, pod.Name, "volume"),
		projected:  make(chan string, 16),
	}
	ok := false
	defer func() {
		if !ok {
			k.halt()
		}
	}()
	if err := k.startSimulator(dp); err != nil {
		return nil, err
	}

	// The ConfigMap volume the sidecar mounts, and the file it reads; and
	// the route mapping's, which may not exist yet.
	var cmName, mountPath, routesCM, routesMount string
	for _, m := range sc.VolumeMounts {
		for _, v := range pod.Spec.Volumes {
			switch {
			case v.Name != m.Name || v.ConfigMap == nil:
			case v.Name == routesVolume:
				routesCM, routesMount = v.ConfigMap.Name, m.MountPath
			default:
				cmName, mountPath = v.ConfigMap.Name, m.MountPath
			}
		}
	}
	if cmName == "" {
		return nil, fmt.Errorf("the injected sidecar mounts no ConfigMap: %+v", sc.VolumeMounts)
	}
	env := map[string]string{}
	for _, e := range sc.Env {
		if e.ValueFrom == nil {
			env[e.Name] = e.Value
		}
	}
	k.injected = maps.Clone(env)
	cfgFile := env["SIDECAR_CONFIG_FILE"]
	if !strings.HasPrefix(cfgFile, mountPath+"/") {
		return nil, fmt.Errorf("SIDECAR_CONFIG_FILE %q is not in the ConfigMap mount %s", cfgFile, mountPath)
	}
	// The injected upstream is Kong's status port on the pod's loopback,
	// which the pod's containers share; here the pod's address is it.
	up, err := url.Parse(env["SIDECAR_UPSTREAM_URL"])
	if err != nil {
		return nil, fmt.Errorf("injected SIDECAR_UPSTREAM_URL: %w", err)
	}
	if up.Port() != statusPort {
		return nil, fmt.Errorf("injected SIDECAR_UPSTREAM_URL %q is not Kong's status port %s", env["SIDECAR_UPSTREAM_URL"], statusPort)
	}
	up.Host = net.JoinHostPort(ip, statusPort)
	pctx, stop := context.WithCancel(ctx)
	k.stop = stop
	if err := fakekubelet.ProjectConfigMap(pctx, dp.c.Client, "kong", cmName, k.volume, dp.logger, func(rv string) {
		select {
		case k.projected <- rv:
		default:
		}
	}); err != nil {
		return nil, err
	}
	<-k.projected
	if routesCM != "" {
		// The kubelet makes an optional ConfigMap's volume empty while the
		// ConfigMap is missing, and fills it once it appears.
		routesDir := k.volume + "-routes"
		if err := os.MkdirAll(routesDir, 0o755); err != nil {
			return nil, err
		}
		go func() {
			_ = fakekubelet.ProjectConfigMap(pctx, dp.c.Client, "kong", routesCM, routesDir, dp.logger, nil)
		}()
		if f := env["SIDECAR_ROUTE_MAPPING_FILE"]; strings.HasPrefix(f, routesMount+"/") {
			env["SIDECAR_ROUTE_MAPPING_FILE"] = filepath.Join(routesDir, strings.TrimPrefix(f, routesMount+"/"))
		} else {
			return nil, fmt.Errorf("SIDECAR_ROUTE_MAPPING_FILE %q is not in the route mapping's mount %s", f, routesMount)
		}
	}
	// File events, not the poll, must carry the reload of step 6.
	env["SIDECAR_LISTEN_ADDR"] = net.JoinHostPort(ip, dp.sidecarPort)
	env["SIDECAR_UPSTREAM_URL"] = up.String()
	env["SIDECAR_CONFIG_FILE"] = filepath.Join(k.volume, strings.TrimPrefix(cfgFile, mountPath+"/"))
	env["SIDECAR_CONFIG_POLL_INTERVAL"] = "10m"
	env["SIDECAR_LOG_FORMAT"] = "text"
	var list []string
	for name, v := range env {
		list = append(list, name+"="+v)
	}
	slices.Sort(list)
	k.sidecar, err = harness.Start(sidecarName+"-"+pod.Name, dp.own[sidecarName], nil, list)
	if err != nil {
		return nil, err
	}
	dp.w.track(k.sidecar)
	if err := harness.WaitHTTP(k.sidecarURL+"/readyz", k.sidecar, 30*time.Second); err != nil {
		return nil, err
	}
	ok = true
	return k, nil
}

// startSimulator runs the pod's Kong simulator and waits for its status
// listener.
func (k *kongPod) startSimulator(dp *dataPlanes) error {
	sim, err := harness.Start("kong-simulator-"+k.name, dp.own["kong-simulator"], k.simArgs, nil)
	if err != nil {
		return err
	}
	dp.w.track(sim)
	k.mu.Lock()
	k.sim = sim
	k.mu.Unlock()
	return harness.WaitHTTP("http://"+k.simArgs[3]+"/status", sim, 30*time.Second)
}

// restartKong stops the pod's Kong simulator and starts it again, as the
// kubelet restarts a container: the same addresses, counters from zero.
func (dp *dataPlanes) restartKong(k *kongPod) error {
	k.simulator().Stop(10 * time.Second)
	return k.startSimulator(dp)
}

// halt stops the pod's processes: Kong first, then the sidecar, as the
// kubelet ends a native sidecar after the main containers.
func (k *kongPod) halt() {
	if s := k.simulator(); s != nil {
		s.Stop(10 * time.Second)
	}
	if k.sidecar != nil {
		k.sidecar.Stop(10 * time.Second)
	}
	if k.stop != nil {
		k.stop()
	}
}

// serviceProxy stands in for kube-proxy in front of a Service: it sends
// each request to the next ready endpoint of the Service's EndpointSlices,
// round robin, as clients of Kong's proxy Service are spread over its pods.
type serviceProxy struct {
	URL string

	mu       sync.Mutex // Protects backends and next.
	backends []string   // host:port of the ready endpoints
	next     int
}

// startServiceProxy serves namespace/service's port portName on a loopback
// address until the test ends.
func startServiceProxy(ctx context.Context, t *testing.T, c *cluster.Cluster, namespace, service, portName string) *serviceProxy {
	t.Helper()
	sp := &serviceProxy{}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.Out.URL.Scheme = "http"
			r.Out.URL.Host = r.In.Context().Value(backendKey{}).(string)
		},
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, ok := sp.pick()
		if !ok {
			http.Error(w, "no ready endpoints", http.StatusServiceUnavailable)
			return
		}
		rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), backendKey{}, b)))
	})}
	sp.URL = "http://" + ln.Addr().String()
	go func() { _ = srv.Serve(ln) }() // ends with Close
	rctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for rctx.Err() == nil {
			sp.refresh(rctx, c, namespace, service, portName)
			select {
			case <-rctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() {
		stop()
		<-done
		_ = srv.Close() // the test is over; in-flight requests do not matter
	})
	return sp
}

type backendKey struct{}

func (sp *serviceProxy) pick() (string, bool) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if len(sp.backends) == 0 {
		return "", false
	}
	b := sp.backends[sp.next%len(sp.backends)]
	sp.next++
	return b, true
}

// endpoints returns the ready endpoints requests go to now.
func (sp *serviceProxy) endpoints() []string {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	return slices.Clone(sp.backends)
}

func (sp *serviceProxy) refresh(ctx context.Context, c *cluster.Cluster, namespace, service, portName string) {
	list, err := c.Client.DiscoveryV1().EndpointSlices(namespace).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + service})
	if err != nil {
		return // the previous endpoints stay, as kube-proxy keeps its rules
	}
	var backends []string
	for _, s := range list.Items {
		var port int32
		for _, p := range s.Ports {
			if p.Name != nil && *p.Name == portName && p.Port != nil {
				port = *p.Port
			}
		}
		if port == 0 {
			continue
		}
		for _, e := range s.Endpoints {
			if e.Conditions.Ready != nil && !*e.Conditions.Ready {
				continue
			}
			for _, a := range e.Addresses {
				backends = append(backends, net.JoinHostPort(a, strconv.Itoa(int(port))))
			}
		}
	}
	slices.Sort(backends)
	sp.mu.Lock()
	sp.backends = backends
	sp.mu.Unlock()
}
