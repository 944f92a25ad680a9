//go:build integration

package integration

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/testsupport/harness"
)

// tutorialMetricsQuery is the metricsQuery of the prometheus-adapter rule in
// Kong's tutorial, verbatim, with <<.LabelMatchers>> as prometheus-adapter
// fills it in for the Service kong/command.
var tutorialMetricsQuery = strings.ReplaceAll(`sum by (exported_service) (rate(kong_upstream_latency_ms_sum{<<.LabelMatchers>>}[60s:10s]))
  /
sum by (exported_service) (rate(kong_upstream_latency_ms_count{<<.LabelMatchers>>}[60s:10s]))`,
	"<<.LabelMatchers>>", `exported_namespace="kong",exported_service="command"`)

// tutorialSeriesQuery is the rule's seriesQuery, verbatim.
const tutorialSeriesQuery = `{__name__=~"^kong_upstream_latency_ms_(sum|count)",kubernetes_namespace!="",kubernetes_name!="",kubernetes_kind!=""}`

// TestTutorialRuleWithPrometheus runs the Kong simulator, the sidecar and
// two real Prometheus servers (a ServiceMonitor's honorLabels false and
// true) while the tutorial's traffic runs at sleep 0.1, and evaluates the
// tutorial's prometheus-adapter query through Prometheus' HTTP API.
func TestTutorialRuleWithPrometheus(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	stack := startStack(t, harness.TutorialExtension)

	runTutorialTraffic(ctx, t, stack)

	proms := map[bool]*harness.Prometheus{}
	for _, honor := range []bool{false, true} {
		dir := t.TempDir()
		p, err := harness.StartPrometheus(ctx, dir, serviceMonitorScrapeConfig(stack.sidecarAddr, honor))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			p.Stop(5 * time.Second)
			if t.Failed() {
				t.Logf("prometheus (honor_labels %v) output:\n%s", honor, p.Output())
			}
		})
		proms[honor] = p
	}

	for _, honor := range []bool{false, true} {
		t.Run(fmt.Sprintf("honor_labels=%v", honor), func(t *testing.T) {
			prom := proms[honor]
			values := checkTutorialAverage(ctx, t, prom, stack, 3)
			t.Logf("kong_upstream_latency_ms_60s_average for kong/command: %v", values)
			checkTutorialSeries(ctx, t, prom, "kong.command.80")
		})
	}
}

// checkTutorialAverage evaluates the tutorial's metricsQuery every 3 s
// until it has given answers in a row, each 100 ms, and returns them.
func checkTutorialAverage(ctx context.Context, t *testing.T, prom *harness.Prometheus, stack *stack, answers int) []float64 {
	t.Helper()
	var values []float64
	deadline := time.Now().Add(100 * time.Second)
	for len(values) < answers {
		if time.Now().After(deadline) {
			t.Fatalf("no stable answer in time; got %v\nsidecar output:\n%s", values, stack.sidecar.Output())
		}
		time.Sleep(3 * time.Second)
		res, err := prom.Query(ctx, tutorialMetricsQuery)
		if err != nil {
			t.Fatal(err)
		}
		if len(res) == 0 {
			continue // not enough samples for the rate yet
		}
		if len(res) != 1 || res[0].Metric["exported_service"] != "command" {
			t.Fatalf("want one result for exported_service=command, got %+v", res)
		}
		// The simulator records the sleep asked for, not how long its
		// timer took, so the mean is 100 however loaded the machine is:
		// only floating-point rounding in the rates may move it.
		v := res[0].Value
		if math.Abs(v-100) > 1e-9 {
			t.Fatalf("mean upstream latency %v ms, want 100", v)
		}
		values = append(values, v)
	}
	return values
}

// checkTutorialSeries checks what prometheus-adapter discovers with the
// rule's seriesQuery: the _sum and _count of kong/command, carrying the
// labels its resources.overrides map, and the ServiceMonitor's target
// labels untouched.
func checkTutorialSeries(ctx context.Context, t *testing.T, prom *harness.Prometheus, kongService string) {
	t.Helper()
	series, err := prom.Series(ctx, tutorialSeriesQuery)
	if err != nil {
		t.Fatal(err)
	}
	if len(series) != 2 {
		t.Fatalf("seriesQuery found %d series, want _sum and _count of command: %v", len(series), series)
	}
	for _, s := range series {
		want := map[string]string{
			"exported_namespace": "kong", "exported_service": "command",
			"kubernetes_namespace": "kong", "kubernetes_name": "command", "kubernetes_kind": "Service",
			"kong_service": kongService,
			// The target labels a ServiceMonitor adds stay the target's.
			"namespace": "kong", "service": "kong-metrics-sidecar", "pod": "kong-gateway-5d8f7c6b9-x2x7q",
			"container": "kong-metrics-sidecar", "endpoint": "sidecar-metrics",
		}
		for k, v := range want {
			if s[k] != v {
				t.Errorf("series %v: %s = %q, want %q", s, k, s[k], v)
			}
		}
	}
}

// runTutorialTraffic runs the tutorial's request loop at sleep 0.1 against
// the stack's simulator until the test ends, and fails the test if the
// loop met an error.
func runTutorialTraffic(ctx context.Context, t *testing.T, stack *stack) {
	trafficCtx, stopTraffic := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var served int
	var err error
	wg.Go(func() { served, err = harness.Traffic(trafficCtx, stack.proxyURL, "0.1", 4) })
	t.Cleanup(func() {
		stopTraffic()
		wg.Wait()
		if err != nil {
			t.Errorf("traffic: %v (%d requests served)", err, served)
		}
	})
}

// serviceMonitorScrapeConfig scrapes the sidecar as the Prometheus
// Operator renders a ServiceMonitor endpoint: target labels namespace,
// service, pod, container and endpoint, honor_labels as given.
func serviceMonitorScrapeConfig(target string, honorLabels bool) string {
	return fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
- job_name: serviceMonitor/kong/kong-metrics-sidecar/0
  honor_labels: %v
  metrics_path: /metrics
  static_configs:
  - targets: [%q]
    labels:
      namespace: kong
      service: kong-metrics-sidecar
      pod: kong-gateway-5d8f7c6b9-x2x7q
      container: kong-metrics-sidecar
      endpoint: sidecar-metrics
`, honorLabels, target)
}

// stack is a Kong simulator with the sidecar in front of it.
type stack struct {
	proxyURL    string // the simulator's proxy side
	statusURL   string // the simulator's /metrics
	adminAddr   string // the simulator's Admin API, when -admin-listen asked for one
	sidecarAddr string
	configFile  string
	simulator   *harness.Process
	sidecar     *harness.Process
}

// startStack builds and starts the simulator and the sidecar with an
// extension file holding config; both stop when the test ends.
func startStack(t *testing.T, config string) *stack {
	t.Helper()
	return startStackWith(t, config, nil, nil)
}

// startStackWith is startStack with extra simulator flags and sidecar
// environment variables, made once the simulator listens. Every program
// listens on a port the kernel picks (harness.AnyPort) and says which in
// its log; simArgs may ask for an Admin API on harness.AnyPort.
func startStackWith(t *testing.T, config string, simArgs []string, sidecarEnv func(*stack) []string) *stack {
	t.Helper()
	bins, err := harness.Binaries(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	s := &stack{}
	s.simulator, err = harness.Start("kong-simulator", bins["kong-simulator"], append([]string{"-proxy-listen", harness.AnyPort, "-listen", harness.AnyPort}, simArgs...), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopAndReport(t, s.simulator) })
	simAddr := func(listener string) string {
		t.Helper()
		addr, err := s.simulator.LoggedAddr(time.Minute, "msg", "Listening", "listener", listener)
		if err != nil {
			t.Fatal(err)
		}
		return addr
	}
	s.proxyURL, s.statusURL = "http://"+simAddr("proxy"), "http://"+simAddr("status")+"/metrics"
	if slices.Contains(simArgs, "-admin-listen") {
		s.adminAddr = simAddr("admin")
	}
	if err := harness.WaitHTTP(s.statusURL, s.simulator, time.Minute); err != nil {
		t.Fatal(err)
	}
	s.configFile = filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(s.configFile, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	env := []string{
		"SIDECAR_LISTEN_ADDR=" + harness.AnyPort,
		"SIDECAR_UPSTREAM_URL=" + s.statusURL,
		"SIDECAR_CONFIG_FILE=" + s.configFile,
		"SIDECAR_LOG_FORMAT=text",
	}
	if sidecarEnv != nil {
		env = append(env, sidecarEnv(s)...)
	}
	s.sidecar, err = harness.Start("kong-metrics-sidecar", bins["kong-metrics-sidecar"], nil, env)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopAndReport(t, s.sidecar) })
	if s.sidecarAddr, err = s.sidecar.LoggedAddr(time.Minute, "msg", "serving"); err != nil {
		t.Fatal(err)
	}
	if err := harness.WaitHTTP("http://"+s.sidecarAddr+"/readyz", s.sidecar, time.Minute); err != nil {
		t.Fatal(err)
	}
	return s
}

func stopAndReport(t *testing.T, p *harness.Process) {
	p.Stop(5 * time.Second)
	if t.Failed() {
		t.Logf("%s output:\n%s", p.Name, p.Output())
	}
}
