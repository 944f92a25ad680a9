// Package loadtest measures the sidecar as a process, on loopback: a scrape
// through it against a plain GET of the same page from the same Kong
// simulator, its peak and idle memory from /proc/<pid>/status, the number
// of upstream fetches that concurrent scrapes cost, and the injector's
// admission latency over TLS. The program in ./cmd/loadtest runs it and
// prints a report; docs/performance.md quotes one.
//
// Every request goes to 127.0.0.1, every loop is bounded in count and time.
package loadtest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/testsupport/harness"
	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/testsupport/kongsim"
)

// Options say what to measure.
type Options struct {
	// Routes is the size of the simulator's page (10,000: about 94 MB).
	Routes int
	// Rounds is how many times each scrape is timed; the median counts.
	Rounds int
	// Concurrent is the number of simultaneous scrapes of the fan-in check.
	Concurrent int
	// Dir holds the extension files; empty means a temporary directory.
	Dir string
	// Logf reports progress; nil is silent.
	Logf func(format string, args ...any)
}

// Stack is a Kong simulator serving the N-route page.
type Stack struct {
	bins      map[string]string
	simulator *harness.Process
	StatusURL string // the simulator's /metrics
	dir       string
	logf      func(string, ...any)
}

// StartSimulator builds the programs and starts the simulator.
func StartSimulator(ctx context.Context, routes int, dir string, logf func(string, ...any)) (*Stack, error) {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	bins, err := harness.Binaries(ctx)
	if err != nil {
		return nil, err
	}
	sim, err := harness.Start("kong-simulator", bins["kong-simulator"],
		[]string{"-listen", harness.AnyPort, "-proxy-listen", "", "-routes", strconv.Itoa(routes)}, nil)
	if err != nil {
		return nil, err
	}
	addr, err := sim.LoggedAddr(time.Minute, "msg", "Listening", "listener", "status")
	if err != nil {
		sim.Stop(5 * time.Second)
		return nil, err
	}
	s := &Stack{bins: bins, simulator: sim, StatusURL: "http://" + addr + "/metrics", dir: dir, logf: logf}
	if err := harness.WaitHTTP("http://"+addr+"/status", sim, 60*time.Second); err != nil {
		sim.Stop(5 * time.Second)
		return nil, err
	}
	return s, nil
}

// Stop stops the simulator.
func (s *Stack) Stop() { s.simulator.Stop(5 * time.Second) }

// Sidecar is a running sidecar process.
type Sidecar struct {
	*harness.Process
	URL string // its /metrics
}

// StartSidecar starts a sidecar for the Stack's simulator with an
// extension file for sel (see TypicalSelection, AllSelection) and extra
// SIDECAR_* variables.
func (s *Stack) StartSidecar(name, extension string, env ...string) (*Sidecar, error) {
	file := filepath.Join(s.dir, name+".yaml")
	if err := os.WriteFile(file, []byte(extension), 0o644); err != nil {
		return nil, err
	}
	p, err := harness.Start("kong-metrics-sidecar", s.bins["kong-metrics-sidecar"], nil, append([]string{
		"SIDECAR_LISTEN_ADDR=" + harness.AnyPort,
		"SIDECAR_UPSTREAM_URL=" + s.StatusURL,
		"SIDECAR_CONFIG_FILE=" + file,
		"SIDECAR_SCRAPE_TIMEOUT=60s",
		"SIDECAR_LOG_FORMAT=text",
	}, env...))
	if err != nil {
		return nil, err
	}
	addr, err := p.LoggedAddr(time.Minute, "msg", "serving")
	if err != nil {
		p.Stop(5 * time.Second)
		return nil, err
	}
	if err := harness.WaitHTTP("http://"+addr+"/readyz", p, time.Minute); err != nil {
		p.Stop(5 * time.Second)
		return nil, err
	}
	return &Sidecar{Process: p, URL: "http://" + addr + "/metrics"}, nil
}

// Memory reads a process's resident memory from /proc/<pid>/status:
// VmRSS now and VmHWM, its peak.
func Memory(pid int) (rss, peak int64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		key, value, ok := strings.Cut(sc.Text(), ":")
		if !ok || key != "VmRSS" && key != "VmHWM" {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/%d/status: %s: %w", pid, key, err)
		}
		if key == "VmRSS" {
			rss = kb << 10
		} else {
			peak = kb << 10
		}
	}
	return rss, peak, sc.Err()
}

// Get fetches url, discarding the body, and returns the time it took and
// the body's length on the wire.
func Get(ctx context.Context, client *http.Client, url string, acceptEncoding string) (time.Duration, int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, 0, err
	}
	// Set explicitly (or to identity) so that the transport neither asks
	// for gzip nor decompresses on its own: both clients discard bytes
	// as they come.
	if acceptEncoding == "" {
		acceptEncoding = "identity"
	}
	req.Header.Set("Accept-Encoding", acceptEncoding)
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	elapsed := time.Since(start)
	if err != nil {
		return 0, n, err
	}
	if resp.StatusCode == http.StatusServiceUnavailable {
		return 0, n, fmt.Errorf("GET %s: %w", url, errUnavailable)
	}
	if resp.StatusCode != http.StatusOK {
		return 0, n, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return elapsed, n, nil
}

// errUnavailable is a 503 answer.
var errUnavailable = errors.New("503 Service Unavailable")

// median returns the middle of ds.
func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// ownMetric reads one of the sidecar's own metrics (a line starting with
// name) from a /metrics answer.
func ownMetric(ctx context.Context, url, name string) (float64, error) {
	body, err := harness.Get(ctx, url)
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(body)) {
		if rest, ok := strings.CutPrefix(line, name+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(rest), 64)
		}
	}
	return 0, fmt.Errorf("no %s in the answer", name)
}

// TypicalSelection is an extension file selecting five of the N-route
// page's Services for latency and status codes, as the benchmarks do.
func TypicalSelection(routes int) string {
	svcs := kongsim.PageServices(routes)
	var pick []kongsim.Service
	for i := range 5 {
		pick = append(pick, svcs[(2*i+1)*len(svcs)/10])
	}
	return extensionFile(pick)
}

// AllSelection is an extension file selecting every Service of the
// N-route page for latency and status codes.
func AllSelection(routes int) string { return extensionFile(kongsim.PageServices(routes)) }

// extensionFile writes one DataPlaneMetricsExtension per namespace and a
// KongServiceMapping for the HTTPRoute rules, which Kong's names do not
// resolve.
func extensionFile(svcs []kongsim.Service) string {
	byNamespace := map[string][]string{}
	var namespaces []string
	var mappings strings.Builder
	for _, s := range svcs {
		if _, ok := byNamespace[s.Namespace]; !ok {
			namespaces = append(namespaces, s.Namespace)
		}
		byNamespace[s.Namespace] = append(byNamespace[s.Namespace], s.ServiceName)
		if strings.HasPrefix(s.Name, "httproute.") {
			fmt.Fprintf(&mappings, "  - kongService: %s\n    namespace: %s\n    name: %s\n", s.Name, s.Namespace, s.ServiceName)
		}
	}
	var b strings.Builder
	for _, ns := range namespaces {
		fmt.Fprintf(&b, "kind: DataPlaneMetricsExtension\napiVersion: gateway-operator.konghq.com/v1alpha1\nmetadata:\n  name: %s\n  namespace: %s\nspec:\n  serviceSelector:\n    matchNames:\n", ns, ns)
		for _, name := range byNamespace[ns] {
			fmt.Fprintf(&b, "    - name: %s\n", name)
		}
		b.WriteString("  config:\n    latency: true\n    statusCode: true\n---\n")
	}
	if mappings.Len() > 0 {
		b.WriteString("apiVersion: kong-metrics-sidecar.io/v1alpha1\nkind: KongServiceMapping\nmetadata:\n  name: routes\nspec:\n  services:\n")
		b.WriteString(mappings.String())
	}
	return b.String()
}
