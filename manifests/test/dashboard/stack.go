package dashboard

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/testsupport/harness"
)

// Extension is the sidecar's extension file for the dashboard's data: the
// tutorial's Service kong/command and a second Service, kong/billing, with
// every family on, so that every panel has series.
const Extension = `kind: DataPlaneMetricsExtension
apiVersion: gateway-operator.konghq.com/v1alpha1
metadata:
  name: kong
  namespace: kong
spec:
  serviceSelector:
    matchNames:
    - name: command
    - name: billing
  config:
    latency: true
    statusCode: true
    bandwidth: true
    upstreamHealth: true
`

// Services are the Kong services the simulator serves (its -services
// flag): the Ingress rules of Services kong/command and kong/billing, as
// the Kong Ingress Controller names them.
const Services = "kong/command:80@api.example.com,kong/billing:80@billing.example.com"

// Job and the target labels are those the Prometheus Operator gives a
// ServiceMonitor endpoint of the shipped manifests/monitoring/servicemonitor.
const (
	Job       = "kong-metrics-sidecar"
	Namespace = "kong"
	Pod       = "kong-gateway-5d8f7c6b9-x2x7q"
)

// Stack is the Kong simulator, the sidecar in front of it and a Prometheus
// server scraping the sidecar, each a process on loopback.
type Stack struct {
	Prometheus     Prometheus
	ScrapeInterval time.Duration
	// ProxyURL is the simulator's proxy listener, where Traffic sends
	// requests.
	ProxyURL string

	simulator, sidecar *harness.Process
	prometheus         *harness.Prometheus
}

// StartStack builds the sidecar and the simulator (harness.Binaries) and
// starts them and Prometheus (harness.StartPrometheus: PROMETHEUS_BIN, else
// the one scripts/build-test-bins.sh builds), scraping the sidecar every
// scrape interval with a ServiceMonitor's target labels. dir holds the
// extension file and Prometheus' data. Stop ends them.
func StartStack(ctx context.Context, dir string, scrape time.Duration) (s *Stack, err error) {
	bins, err := harness.Binaries(ctx)
	if err != nil {
		return nil, err
	}
	s = &Stack{ScrapeInterval: scrape}
	defer func() {
		if err != nil {
			err = fmt.Errorf("%w\n%s", err, s.Output())
			s.Stop()
		}
	}()
	s.simulator, err = harness.Start("kong-simulator", bins["kong-simulator"],
		[]string{"-listen", harness.AnyPort, "-proxy-listen", harness.AnyPort, "-services", Services}, nil)
	if err != nil {
		return s, err
	}
	proxy, err := s.simulator.LoggedAddr(time.Minute, "msg", "Listening", "listener", "proxy")
	if err != nil {
		return s, err
	}
	status, err := s.simulator.LoggedAddr(time.Minute, "msg", "Listening", "listener", "status")
	if err != nil {
		return s, err
	}
	s.ProxyURL = "http://" + proxy
	statusURL := "http://" + status + "/metrics"
	if err := harness.WaitHTTP(statusURL, s.simulator, time.Minute); err != nil {
		return s, err
	}
	config := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(config, []byte(Extension), 0o644); err != nil {
		return s, fmt.Errorf("writing the extension file: %w", err)
	}
	s.sidecar, err = harness.Start("kong-metrics-sidecar", bins["kong-metrics-sidecar"], nil, []string{
		"SIDECAR_LISTEN_ADDR=" + harness.AnyPort,
		"SIDECAR_UPSTREAM_URL=" + statusURL,
		"SIDECAR_CONFIG_FILE=" + config,
		"SIDECAR_LOG_FORMAT=text",
	})
	if err != nil {
		return s, err
	}
	sidecar, err := s.sidecar.LoggedAddr(time.Minute, "msg", "serving")
	if err != nil {
		return s, err
	}
	if err := harness.WaitHTTP("http://"+sidecar+"/readyz", s.sidecar, time.Minute); err != nil {
		return s, err
	}
	promDir := filepath.Join(dir, "prometheus")
	if err := os.MkdirAll(promDir, 0o755); err != nil {
		return s, err
	}
	s.prometheus, err = harness.StartPrometheus(ctx, promDir, scrapeConfig(sidecar, scrape))
	if err != nil {
		return s, err
	}
	s.Prometheus = Prometheus{URL: s.prometheus.URL}
	return s, nil
}

// scrapeConfig scrapes the sidecar as the Prometheus Operator renders the
// shipped ServiceMonitor's endpoint: job the Service's name, target labels
// namespace, service, pod, container and endpoint.
func scrapeConfig(target string, scrape time.Duration) string {
	return fmt.Sprintf(`global:
  scrape_interval: %[1]s
  scrape_timeout: %[1]s
  evaluation_interval: %[1]s
scrape_configs:
- job_name: serviceMonitor/kong/kong-metrics-sidecar/0
  honor_labels: false
  metrics_path: /metrics
  static_configs:
  - targets: [%[2]q]
    labels:
      job: %[3]s
      namespace: %[4]s
      service: kong-metrics-sidecar
      pod: %[5]s
      container: kong-metrics-sidecar
      endpoint: sidecar-metrics
`, promDuration(scrape), target, Job, Namespace, Pod)
}

// Stop ends every process the stack started.
func (s *Stack) Stop() {
	for _, p := range []*harness.Process{s.prometheusProcess(), s.sidecar, s.simulator} {
		if p != nil {
			p.Stop(5 * time.Second)
		}
	}
}

func (s *Stack) prometheusProcess() *harness.Process {
	if s.prometheus == nil {
		return nil
	}
	return s.prometheus.Process
}

// Output is what the processes wrote, for a failure report.
func (s *Stack) Output() string {
	var b strings.Builder
	for _, p := range []*harness.Process{s.simulator, s.sidecar, s.prometheusProcess()} {
		if p != nil {
			fmt.Fprintf(&b, "--- %s output:\n%s\n", p.Name, p.Output())
		}
	}
	return b.String()
}

// Phase is a stretch of traffic: requests to one Service's command
// endpoint at one sleep, from several clients at once.
type Phase struct {
	Service  string        // the Kubernetes Service, such as "command" (path prefix /<Service>)
	Sleep    time.Duration // the upstream latency asked for (cmd=sleep <seconds>)
	Clients  int
	BadEvery int // every n-th request asks for an invalid command (HTTP 400); 0: none
}

// Traffic sends the phases' requests to the simulator's proxy, all phases
// at once, until ctx ends. It returns how many requests were answered and
// the first unexpected failure (an answer other than 200, or 400 for the
// invalid commands).
func (s *Stack) Traffic(ctx context.Context, phases ...Phase) (int, error) {
	var (
		mu     sync.Mutex
		served int
		first  error
		wg     sync.WaitGroup
	)
	for _, ph := range phases {
		for range ph.Clients {
			wg.Go(func() {
				for n := 1; ctx.Err() == nil; n++ {
					cmd, want := fmt.Sprintf("sleep%%20%g", ph.Sleep.Seconds()), http.StatusOK
					if ph.BadEvery > 0 && n%ph.BadEvery == 0 {
						cmd, want = "reboot", http.StatusBadRequest
					}
					err := get(ctx, s.ProxyURL+"/"+ph.Service+"/shell?cmd="+cmd, want)
					mu.Lock()
					switch {
					case err == nil:
						served++
					case first == nil && ctx.Err() == nil:
						first = err
					}
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	if errors.Is(first, context.Canceled) {
		first = nil
	}
	return served, first
}

// get requests url and checks the answer's status.
func get(ctx context.Context, url string, want int) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body) // for the connection's reuse; the status is the answer
	if resp.StatusCode != want {
		return fmt.Errorf("GET %s: HTTP %s, want %d", url, resp.Status, want)
	}
	return nil
}
