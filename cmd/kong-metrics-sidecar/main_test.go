package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/golden"
	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/testsupport/harness"
	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/testsupport/kongsim"
)

// hangTimeout bounds the waits of these tests for the binary: for it to be
// ready, to answer, to exit. It only turns a hang into a failure; nothing
// here asserts how fast the binary is.
const hangTimeout = time.Minute

func TestFlags(t *testing.T) {
	tests := []struct {
		name      string
		args, env []string
		code      int
		out, errs string // substrings of stdout and stderr
	}{
		{"version", []string{"-version"}, nil, 0, "kong-metrics-sidecar, version dev", ""},
		{"help lists every variable", []string{"-help"}, nil, 0, "", "SIDECAR_MAX_UPSTREAM_BYTES (default \"1GiB\")"},
		{"bad flag", []string{"-nope"}, nil, 2, "", "flag provided but not defined"},
		{"check-config valid", []string{"-check-config", "../../config/testdata/good-multi.yaml"}, nil, 0,
			"selects Service kong/command: latency,statusCode → kong_http_requests_total, kong_kong_latency_ms, kong_request_latency_ms, kong_upstream_latency_ms", ""},
		{"check-config mapping", []string{"-check-config", "../../config/testdata/good-multi.yaml"}, nil, 0,
			`maps Kong service "httproute.default.echo.0" to Service default/echo`, ""},
		{"check-config empty", []string{"-check-config", "../../config/testdata/good-empty.yaml"}, nil, 0, "selects nothing", ""},
		{"check-config invalid", []string{"-check-config", "../../config/testdata/invalid-names.yaml"}, nil, 1, "",
			`4 problems:`},
		{"check-config missing", []string{"-check-config", "/nonexistent/config.yaml"}, nil, 1, "", "no such file"},
		{"unknown variable", nil, []string{"SIDECAR_LISTEN_ADRESS=:1"}, 2, "", "SIDECAR_LISTEN_ADRESS: unknown variable"},
		{"invalid value", nil, []string{"SIDECAR_SCRAPE_TIMEOUT=soon"}, 2, "", `SIDECAR_SCRAPE_TIMEOUT="soon"`},
		{"listen fails", nil, []string{"SIDECAR_LISTEN_ADDR=256.0.0.1:1", "SIDECAR_CONFIG_FILE=/nonexistent"}, 1, "", "listening on 256.0.0.1:1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(tc.args, tc.env, &stdout, &stderr)
			if code != tc.code {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, &stdout, &stderr)
			}
			if !strings.Contains(stdout.String(), tc.out) {
				t.Errorf("stdout %q does not contain %q", &stdout, tc.out)
			}
			if !strings.Contains(stderr.String(), tc.errs) {
				t.Errorf("stderr %q does not contain %q", &stderr, tc.errs)
			}
		})
	}
}

// TestServiceNamedSidecar: a Service called "sidecar" in Kong's namespace
// gives the pod SIDECAR_SERVICE_HOST and friends, which must not stop it.
func TestServiceNamedSidecar(t *testing.T) {
	bin := buildSidecar(t)
	addr, p := startSidecar(t, bin,
		"SIDECAR_CONFIG_FILE="+filepath.Join(t.TempDir(), "absent.yaml"),
		"SIDECAR_SERVICE_HOST=10.96.0.10", "SIDECAR_SERVICE_PORT=9542", "SIDECAR_PORT=tcp://10.96.0.10:9542",
		"SIDECAR_PORT_9542_TCP=tcp://10.96.0.10:9542", "SIDECAR_PORT_9542_TCP_PROTO=tcp",
		"SIDECAR_PORT_9542_TCP_PORT=9542", "SIDECAR_PORT_9542_TCP_ADDR=10.96.0.10",
	)
	if err := harness.WaitHTTP("http://"+addr+"/readyz", p, hangTimeout); err != nil {
		t.Fatal(err)
	}
}

// TestGracefulShutdown: SIGTERM lets an in-flight scrape finish, then the
// sidecar exits 0.
func TestGracefulShutdown(t *testing.T) {
	page := kongsim.Sample()
	arrived, release := make(chan struct{}), make(chan struct{})
	kong := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		<-release
		w.Header().Set("Content-Type", "text/plain; charset=UTF-8")
		w.Write(page)
	}))
	defer kong.Close()
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(cfg, must(os.ReadFile("../../config/testdata/good-tutorial.yaml")), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := buildSidecar(t)
	addr, p := startSidecar(t, bin,
		"SIDECAR_UPSTREAM_URL="+kong.URL+"/metrics", "SIDECAR_CONFIG_FILE="+cfg,
	)
	if err := harness.WaitHTTP("http://"+addr+"/healthz", p, hangTimeout); err != nil {
		t.Fatal(err)
	}
	type result struct {
		body []byte
		err  error
	}
	done := make(chan result, 1)
	go func() {
		b, err := harness.Get(context.Background(), "http://"+addr+"/metrics")
		done <- result{b, err}
	}()
	<-arrived
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// New connections are refused once the listener is closed.
	deadline := time.Now().Add(hangTimeout)
	for {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err != nil {
			break
		}
		_, _ = io.Copy(io.Discard, resp.Body) // drained so the connection is reused
		resp.Body.Close()
		if time.Now().After(deadline) {
			t.Fatal("still accepting connections after SIGTERM")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if p.Exited() {
		t.Fatal("exited before the in-flight scrape finished")
	}
	close(release)
	res := <-done
	if res.err != nil {
		t.Fatalf("in-flight scrape failed: %v", res.err)
	}
	if !bytes.Contains(res.body, []byte(`exported_service="command"`)) {
		t.Errorf("in-flight scrape lacks Kong's series:\n%s", res.body)
	}
	if err := p.Wait(hangTimeout); err != nil {
		t.Fatalf("exit: %v\n%s", err, p.Output())
	}
}

func buildSidecar(t *testing.T) string {
	t.Helper()
	bins, err := harness.Build(context.Background(), t.TempDir(), "./cmd/kong-metrics-sidecar")
	if err != nil {
		t.Fatal(err)
	}
	return bins["kong-metrics-sidecar"]
}

// startSidecar starts bin on a loopback port the kernel picks, with env
// added to SIDECAR_LISTEN_ADDR, returns the address it logged, and stops
// it when the test ends.
func startSidecar(t *testing.T, bin string, env ...string) (addr string, p *harness.Process) {
	t.Helper()
	p, err := harness.Start("sidecar", bin, nil, append([]string{"SIDECAR_LISTEN_ADDR=" + harness.AnyPort}, env...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop(5 * time.Second) })
	if addr, err = p.LoggedAddr(hangTimeout, "msg", "serving"); err != nil {
		t.Fatal(err)
	}
	return addr, p
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestServerSurface: a slowloris client is cut off by the header timeout
// without holding up others, a huge header is refused, and a request body
// is ignored.
func TestServerSurface(t *testing.T) {
	bin := buildSidecar(t)
	addr, p := startSidecar(t, bin,
		"SIDECAR_CONFIG_FILE="+filepath.Join(t.TempDir(), "absent.yaml"),
		"SIDECAR_UPSTREAM_URL=http://127.0.0.1:1/metrics",
	)
	if err := harness.WaitHTTP("http://"+addr+"/healthz", p, hangTimeout); err != nil {
		t.Fatal(err)
	}

	// Slowloris: a request line and one header byte at a time, never finished.
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: "); err != nil {
		t.Fatal(err)
	}
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		for {
			if _, err := conn.Write([]byte("a")); err != nil {
				return
			}
			buf := make([]byte, 1)
			if err := conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond)); err != nil { // the pace of the trickle
				return
			}
			if _, err := conn.Read(buf); err != nil && !isTimeout(err) {
				return
			}
		}
	}()
	// Others are served meanwhile.
	if _, err := harness.Get(context.Background(), "http://"+addr+"/metrics"); err != nil {
		t.Errorf("a scrape during the slowloris: %v", err)
	}
	// The server's header timeout ends it; how soon is the server's
	// configuration, not something to time here. The wait only turns a
	// connection held for good into a failure.
	select {
	case <-closed:
	case <-time.After(time.Minute):
		t.Fatal("the slowloris connection is still open after a minute")
	}

	// A header over the limit is refused.
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/metrics", nil)
	req.Header.Set("X-Big", strings.Repeat("b", 256<<10))
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("a 256 KiB header: %s, want 431", resp.Status)
		}
	}

	// A GET with a body is answered as any GET; the body is not read.
	resp, err := http.Post("http://"+addr+"/metrics", "text/plain", strings.NewReader("ignored"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /metrics: %s, want 405", resp.Status)
	}
	req, _ = http.NewRequest(http.MethodGet, "http://"+addr+"/metrics", strings.NewReader(strings.Repeat("x", 64<<10)))
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte("kong_metrics_sidecar_upstream_up 0")) {
		t.Errorf("GET with a body: %s\n%s", resp.Status, body)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestCheckConfigKongPage: -check-config with -kong-page prints how each
// Kong service and upstream name resolves, with the route mapping when
// -routes names one; testdata/check/<case>.golden holds each output.
func TestCheckConfigKongPage(t *testing.T) {
	const ext = "../../manifests/examples/dataplanemetricsextension.yaml"
	page := filepath.Join("testdata", "check", "kong-page.prom")
	tests := []struct {
		name string
		args []string
	}{
		{"names", []string{"-check-config", ext, "-kong-page", page}},
		{"names-with-routes", []string{"-check-config", ext, "-routes", filepath.Join("testdata", "check", "routes.json"), "-kong-page", page}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(tc.args, nil, &stdout, &stderr); code != 0 {
				t.Fatalf("exit %d\nstderr: %s", code, &stderr)
			}
			golden.Check(t, filepath.Join("testdata", "check", tc.name+".golden"), stdout.Bytes())
		})
	}
	// From a URL, as from a running Kong's status listener.
	body, err := os.ReadFile(page)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(body) }))
	defer srv.Close()
	var stdout, stderr bytes.Buffer
	if code := run([]string{"-check-config", ext, "-kong-page", srv.URL + "/metrics"}, nil, &stdout, &stderr); code != 0 ||
		!strings.Contains(stdout.String(), `Kong service "httproute.kong.svc.kong.command.80.1" (5 series): Service kong/command, keeps latency`) {
		t.Errorf("from a URL: exit %d\nstdout: %s\nstderr: %s", code, &stdout, &stderr)
	}
	if code := run([]string{"-kong-page", page}, nil, &stdout, &stderr); code != 2 {
		t.Errorf("-kong-page without -check-config: exit %d, want 2", code)
	}
}
