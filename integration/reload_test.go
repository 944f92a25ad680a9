//go:build integration

// Package integration runs the real sidecar binary against a fake Kong.
package integration

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/testsupport/harness"
	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/testsupport/kongsim"
	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/testsupport/kubelet"
)

// hangTimeout bounds every wait for the sidecar to serve a change. It only
// turns a hang into a failure: the sidecar polls its file once an hour
// (startReloadSidecar), so a change served before that came through a
// file event or SIGHUP, however long the machine took.
const hangTimeout = time.Minute

// Extension files selecting kong/command or default/billing.
const (
	extCommandLatency = harness.TutorialExtension
	extBillingStatus  = `kind: DataPlaneMetricsExtension
apiVersion: gateway-operator.konghq.com/v1alpha1
metadata:
  name: billing
  namespace: default
spec:
  serviceSelector:
    matchNames:
    - name: billing
  config:
    statusCode: true
`
)

// extInvalid is extBillingStatus with a misspelt field, which the strict
// decoder refuses.
var extInvalid = strings.Replace(extBillingStatus, "statusCode:", "statusCodes:", 1)

// Series that tell which file is in use.
const (
	seriesCommand = `kong_upstream_latency_ms_count{kong_service="kong.command.80",route="kong.command.command.api.example.com.80",workspace="default",kubernetes_namespace="kong",kubernetes_name="command",kubernetes_kind="Service",exported_namespace="kong",exported_service="command"}`
	seriesBilling = `kong_http_requests_total{kong_service="default.billing.8080",route="default.billing.billing..8080",code="200",source="service",workspace="default",consumer="",kubernetes_namespace="default",kubernetes_name="billing",kubernetes_kind="Service",exported_namespace="default",exported_service="billing"}`
)

// reloadSidecar is a running sidecar binary with its ConfigMap volume.
type reloadSidecar struct {
	*harness.Process
	url    string // its /metrics
	volume *kubelet.AtomicWriter
	path   string // SIDECAR_CONFIG_FILE
}

// startReloadSidecar builds and starts the sidecar against a fake Kong serving
// the fixture, with its extension file in a ConfigMap volume holding
// payload (none: the volume directory does not exist yet).
func startReloadSidecar(t *testing.T, payload map[string][]byte) *reloadSidecar {
	t.Helper()
	page := kongsim.Sample()
	kong := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=UTF-8")
		w.Write(page)
	}))
	t.Cleanup(kong.Close)

	volume := &kubelet.AtomicWriter{Dir: filepath.Join(t.TempDir(), "extension")}
	if payload != nil {
		if err := volume.Write(payload); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bins, err := harness.Build(ctx, t.TempDir(), "./cmd/kong-metrics-sidecar")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(volume.Dir, "config.yaml")
	p, err := harness.Start("sidecar", bins["kong-metrics-sidecar"], nil, []string{
		"SIDECAR_LISTEN_ADDR=" + harness.AnyPort,
		"SIDECAR_UPSTREAM_URL=" + kong.URL + "/metrics",
		"SIDECAR_CONFIG_FILE=" + path,
		"SIDECAR_CONFIG_POLL_INTERVAL=1h", // changes must come through file events or SIGHUP
		"SIDECAR_LOG_FORMAT=text",
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Stop(5 * time.Second)
		if t.Failed() {
			t.Logf("sidecar output:\n%s", p.Output())
		}
	})
	addr, err := p.LoggedAddr(hangTimeout, "msg", "serving")
	if err != nil {
		t.Fatal(err)
	}
	if err := harness.WaitHTTP("http://"+addr+"/readyz", p, hangTimeout); err != nil {
		t.Fatal(err)
	}
	return &reloadSidecar{Process: p, url: "http://" + addr + "/metrics", volume: volume, path: path}
}

// scrape returns the sidecar's /metrics.
func (s *reloadSidecar) scrape(t *testing.T) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hangTimeout)
	defer cancel()
	body, err := harness.Get(ctx, s.url)
	if err != nil {
		t.Fatalf("scraping the sidecar: %v", err)
	}
	return body
}

// write updates the volume as the kubelet does.
func (s *reloadSidecar) write(t *testing.T, content string) {
	t.Helper()
	if err := s.volume.Write(map[string][]byte{"config.yaml": []byte(content)}); err != nil {
		t.Fatal(err)
	}
}

// waitScrape scrapes until cond holds for an answer; it fails the test
// when the sidecar exits or after hangTimeout.
func (s *reloadSidecar) waitScrape(t *testing.T, what string, cond func(body []byte) bool) {
	t.Helper()
	deadline := time.Now().Add(hangTimeout)
	for {
		body := s.scrape(t)
		if cond(body) {
			return
		}
		if s.Exited() {
			t.Fatalf("%s: the sidecar exited", what)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still not the case after %s; the last answer:\n%s", what, hangTimeout, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// seriesValue returns the value of the series written exactly as series.
func seriesValue(body []byte, series string) (float64, bool) {
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			v, err := strconv.ParseFloat(rest, 64)
			return v, err == nil
		}
	}
	return 0, false
}

func hasSeries(body []byte, series string) bool {
	_, ok := seriesValue(body, series)
	return ok
}

func servesOnly(want, notWant string) func([]byte) bool {
	return func(body []byte) bool { return hasSeries(body, want) && !hasSeries(body, notWant) }
}

// loaded is servesOnly for an answer that also says the last reload
// succeeded (the Store sets its metrics just after the swap).
func loaded(want, notWant string) func([]byte) bool {
	return func(body []byte) bool {
		v, _ := seriesValue(body, "kong_metrics_sidecar_config_last_reload_successful")
		return servesOnly(want, notWant)(body) && v == 1
	}
}

func mustSeriesValue(t *testing.T, body []byte, series string) float64 {
	t.Helper()
	v, ok := seriesValue(body, series)
	if !ok {
		t.Fatalf("no %s in the answer:\n%s", series, body)
	}
	return v
}

// TestReloadConfigMap changes the ConfigMap volume as the kubelet does while
// the sidecar runs: the answers follow each change, through file events
// (the poll is an hour away), from the same process; an invalid file keeps the last good one; SIGHUP
// takes a change that no file event announced.
func TestReloadConfigMap(t *testing.T) {
	s := startReloadSidecar(t, map[string][]byte{"config.yaml": []byte(extCommandLatency)})
	body := s.scrape(t)
	if !servesOnly(seriesCommand, seriesBilling)(body) {
		t.Fatalf("the file at start is not in use:\n%s", body)
	}
	pid := s.Pid()
	started := mustSeriesValue(t, body, "process_start_time_seconds")

	for i, step := range []struct {
		content      string
		want, absent string
	}{
		{extBillingStatus, seriesBilling, seriesCommand},
		{extCommandLatency, seriesCommand, seriesBilling},
		{extBillingStatus, seriesBilling, seriesCommand},
	} {
		s.write(t, step.content)
		s.waitScrape(t, fmt.Sprintf("change %d is served", i+1), loaded(step.want, step.absent))
	}

	// An invalid file keeps the last good one.
	s.write(t, extInvalid)
	s.waitScrape(t, "the invalid file is rejected", func(body []byte) bool {
		v, ok := seriesValue(body, "kong_metrics_sidecar_config_last_reload_successful")
		return ok && v == 0
	})
	body = s.scrape(t)
	if !servesOnly(seriesBilling, seriesCommand)(body) {
		t.Errorf("the last good file is not in use after an invalid one:\n%s", body)
	}
	if !strings.Contains(s.Output(), "statusCodes: unknown field") || !strings.Contains(s.Output(), s.path) {
		t.Errorf("the rejection does not name the path and the reason")
	}
	s.write(t, extCommandLatency)
	s.waitScrape(t, "the next valid file is served", loaded(seriesCommand, seriesBilling))

	// A write no watched directory sees (inside the kubelet's current
	// ..<timestamp> directory, which the kubelet itself never does) waits
	// for the poll, an hour away; SIGHUP takes it at once.
	if err := os.WriteFile(filepath.Join(s.volume.Dir, kubelet.DataDir, "config.yaml"), []byte(extBillingStatus), 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // several debounces: time to take it, were it seen
	if body := s.scrape(t); !servesOnly(seriesCommand, seriesBilling)(body) {
		t.Fatalf("a change without a file event was taken before SIGHUP:\n%s", body)
	}
	if err := s.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	s.waitScrape(t, "SIGHUP reloads", loaded(seriesBilling, seriesCommand))
	body = s.scrape(t)

	if s.Exited() || s.Pid() != pid {
		t.Fatal("the sidecar restarted")
	}
	if got := mustSeriesValue(t, body, "process_start_time_seconds"); got != started {
		t.Errorf("process_start_time_seconds went from %v to %v: the sidecar restarted", started, got)
	}
}

// TestStartWithoutFile: with its ConfigMap volume not there yet the sidecar
// serves its own metrics, saying the load failed, and takes the file as
// soon as the kubelet writes it.
func TestStartWithoutFile(t *testing.T) {
	s := startReloadSidecar(t, nil)
	const failures = `kong_metrics_sidecar_config_reloads_total{result="failure"}`
	s.waitScrape(t, "the missing file is reported", func(body []byte) bool {
		v, _ := seriesValue(body, failures)
		return v >= 1
	})
	body := s.scrape(t)
	if got := mustSeriesValue(t, body, "kong_metrics_sidecar_config_last_reload_successful"); got != 0 {
		t.Errorf("config_last_reload_successful = %v without a file, want 0", got)
	}
	if hasSeries(body, seriesCommand) || hasSeries(body, seriesBilling) || bytes.Contains(body, []byte("kubernetes_name=")) {
		t.Errorf("Kong series served without a file:\n%s", body)
	}
	if !hasSeries(body, "kong_metrics_sidecar_upstream_up") {
		t.Errorf("the sidecar's own metrics are missing:\n%s", body)
	}

	s.write(t, extCommandLatency)
	s.waitScrape(t, "the file is served once written", loaded(seriesCommand, seriesBilling))
}
