package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/testsupport/harness"
)

// binary is the injector, built once by TestMain.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "kong-metrics-injector-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "kong-metrics-injector")
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// hangTimeout bounds the waits of these tests for the binary. It only
// turns a hang into a failure; nothing here asserts how fast it is.
const hangTimeout = time.Minute

// runBinary runs the injector to completion with exactly env.
func runBinary(t *testing.T, env []string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), hangTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = env
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		code = exit.ExitCode()
	default:
		t.Fatal(err)
	}
	return code, out.String(), errOut.String()
}

func TestExitCodes(t *testing.T) {
	const image = "INJECTOR_SIDECAR_IMAGE=ghcr.io/kong-metrics-sidecar/kong-metrics-sidecar:v1.0.0"
	cases := []struct {
		name   string
		env    []string
		args   []string
		code   int
		stdout string
		stderr []string
	}{
		{"unknown variable", []string{image, "INJECTOR_FOO=bar"}, nil, 2, "", []string{"INJECTOR_FOO: unknown variable"}},
		{"missing image", nil, nil, 2, "", []string{"INJECTOR_SIDECAR_IMAGE: required"}},
		{"invalid mode", []string{image, "INJECTOR_SIDECAR_MODE=sidecar"}, nil, 2, "", []string{`INJECTOR_SIDECAR_MODE="sidecar"`}},
		{"invalid status port", []string{image, "INJECTOR_DEFAULT_STATUS_PORT=0"}, nil, 2, "", []string{`INJECTOR_DEFAULT_STATUS_PORT="0"`}},
		{"memory request over limit", []string{image, "INJECTOR_SIDECAR_MEMORY_REQUEST=1Gi"}, nil, 2, "", []string{`INJECTOR_SIDECAR_MEMORY_REQUEST="1Gi" is more than`}},
		{"every problem", []string{"INJECTOR_FOO=bar", "INJECTOR_LOG_LEVEL=loud"}, nil, 2, "", []string{"INJECTOR_FOO", "INJECTOR_LOG_LEVEL", "INJECTOR_SIDECAR_IMAGE"}},
		{"unknown flag", nil, []string{"-verbose"}, 2, "", []string{"flag provided but not defined: -verbose"}},
		{"arguments", []string{image}, []string{"serve"}, 2, "", []string{`unexpected arguments ["serve"]`}},
		{"version", nil, []string{"-version"}, 0, "kong-metrics-injector, version dev (branch: , revision: ", nil},
		{"help", []string{"INJECTOR_FOO=ignored"}, []string{"-help"}, 0, "", []string{
			"-version",
			"INJECTOR_LISTEN_ADDR (default :9443)", "INJECTOR_TLS_CERT_FILE (default /etc/kong-metrics-injector/tls/tls.crt)",
			"INJECTOR_TLS_KEY_FILE (default /etc/kong-metrics-injector/tls/tls.key)", "INJECTOR_METRICS_ADDR (default :9090)",
			"INJECTOR_SIDECAR_IMAGE (default none)", "INJECTOR_SIDECAR_MODE (default native)",
			"INJECTOR_DEFAULT_CONFIGMAP (default kong-metrics-sidecar)",
			"INJECTOR_SIDECAR_CPU_REQUEST (default 10m)", "INJECTOR_SIDECAR_MEMORY_REQUEST (default 32Mi)",
			"INJECTOR_SIDECAR_MEMORY_LIMIT (default 128Mi)", "INJECTOR_DEFAULT_STATUS_PORT (default 8100)",
			"INJECTOR_LOG_LEVEL (default info)", "INJECTOR_LOG_FORMAT (default json)",
		}},
		{"no certificate", []string{image, "INJECTOR_TLS_CERT_FILE=/nonexistent/tls.crt", "INJECTOR_LOG_FORMAT=text"}, nil, 1, "", []string{"/nonexistent/tls.crt"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runBinary(t, tc.env, tc.args...)
			if code != tc.code {
				t.Errorf("exit code %d, want %d; stderr:\n%s", code, tc.code, stderr)
			}
			if !strings.Contains(stdout, tc.stdout) {
				t.Errorf("stdout %q, want %q", stdout, tc.stdout)
			}
			for _, want := range tc.stderr {
				if !strings.Contains(stderr, want) {
					t.Errorf("stderr does not contain %q:\n%s", want, stderr)
				}
			}
		})
	}
}

// TestServes starts the binary with a generated certificate, injects a
// pod over HTTPS, reads its metrics and stops it with SIGTERM.
func TestServes(t *testing.T) {
	dir := t.TempDir()
	caPool := writeCertificate(t, dir)
	env := []string{
		"INJECTOR_SIDECAR_IMAGE=ghcr.io/kong-metrics-sidecar/kong-metrics-sidecar:v1.0.0",
		"INJECTOR_LISTEN_ADDR=" + harness.AnyPort,
		"INJECTOR_METRICS_ADDR=" + harness.AnyPort,
		"INJECTOR_TLS_CERT_FILE=" + filepath.Join(dir, "tls.crt"),
		"INJECTOR_TLS_KEY_FILE=" + filepath.Join(dir, "tls.key"),
		// Non-default settings, which must reach the patch below.
		"INJECTOR_DEFAULT_STATUS_PORT=8200",
		"INJECTOR_SIDECAR_MEMORY_LIMIT=256Mi",
		"INJECTOR_SERVICE_HOST=10.0.0.1", // a Service named injector
		"INJECTOR_SERVICE_PORT=443",
	}
	p, err := harness.Start("injector", binary, nil, env)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop(hangTimeout) })
	// The kernel picks both ports; the injector logs them.
	webhookAddr, err := p.LoggedValue(hangTimeout, "webhook", "msg", "serving")
	if err != nil {
		t.Fatal(err)
	}
	metricsAddr, err := p.LoggedValue(hangTimeout, "metrics", "msg", "serving")
	if err != nil {
		t.Fatal(err)
	}
	if err := harness.WaitHTTPS("https://"+webhookAddr+"/readyz", caPool, p, hangTimeout); err != nil {
		t.Fatalf("%v\n%s", err, p.Output())
	}
	client := &http.Client{Timeout: hangTimeout, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: caPool}}}

	fixture, err := os.ReadFile("../../inject/testdata/admission/minimal-opted-in.json")
	if err != nil {
		t.Fatal(err)
	}
	res, err := client.Post("https://"+webhookAddr+"/mutate", "application/json", bytes.NewReader(fixture))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	var review struct {
		Response struct {
			Allowed bool   `json:"allowed"`
			Patch   string `json:"patch"`
		} `json:"response"`
	}
	if err := json.Unmarshal(body, &review); err != nil || res.StatusCode != 200 || !review.Response.Allowed {
		t.Fatalf("POST /mutate: %d %s (%v)", res.StatusCode, body, err)
	}
	patch, err := base64.StdEncoding.DecodeString(review.Response.Patch)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`"path":"/metadata/annotations/kong-metrics-sidecar.io~1injected","value":"dev"`,
		`"image":"ghcr.io/kong-metrics-sidecar/kong-metrics-sidecar:v1.0.0"`,
		// The pod says nothing of its status port: INJECTOR_DEFAULT_STATUS_PORT.
		`"value":"http://127.0.0.1:8200/metrics"`,
		`"limits":{"memory":"256Mi"}`,
	} {
		if !strings.Contains(string(patch), want) {
			t.Errorf("patch does not contain %s:\n%s", want, patch)
		}
	}

	res, err = http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(res.Body)
	res.Body.Close()
	for _, want := range []string{
		`kong_metrics_injector_admissions_total{result="injected"} 1`,
		`kong_metrics_injector_build_info{branch=`,
		"go_goroutines ",
		"process_resident_memory_bytes ",
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics does not contain %q", want)
		}
	}

	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(hangTimeout); err != nil {
		t.Fatalf("after SIGTERM: %v\n%s", err, p.Output())
	}
	for _, want := range []string{`"msg":"loaded the serving certificate"`, `"msg":"injected the sidecar"`, `"msg":"shutting down"`} {
		if !strings.Contains(p.Output(), want) {
			t.Errorf("logs do not contain %s:\n%s", want, p.Output())
		}
	}
}

// writeCertificate writes tls.crt and tls.key for 127.0.0.1 into dir and
// returns a pool with their CA.
func writeCertificate(t *testing.T, dir string) *x509.CertPool {
	t.Helper()
	ca, err := harness.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.Issue(2, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := harness.WritePair(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), certPEM, keyPEM); err != nil {
		t.Fatal(err)
	}
	return ca.Pool()
}

// TestSIGHUPDoesNotKill: SIGHUP, whose default action ends a process, is
// caught: the injector keeps serving and still drains on SIGTERM.
func TestSIGHUPDoesNotKill(t *testing.T) {
	dir := t.TempDir()
	caPool := writeCertificate(t, dir)
	p, err := harness.Start("injector", binary, nil, []string{
		"INJECTOR_SIDECAR_IMAGE=ghcr.io/kong-metrics-sidecar/kong-metrics-sidecar:v1.0.0",
		"INJECTOR_LISTEN_ADDR=" + harness.AnyPort,
		"INJECTOR_METRICS_ADDR=" + harness.AnyPort,
		"INJECTOR_TLS_CERT_FILE=" + filepath.Join(dir, "tls.crt"),
		"INJECTOR_TLS_KEY_FILE=" + filepath.Join(dir, "tls.key"),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop(hangTimeout) })
	webhookAddr, err := p.LoggedValue(hangTimeout, "webhook", "msg", "serving")
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	// The signal is handled once it is logged; a killed process never logs it.
	deadline := time.Now().Add(hangTimeout)
	for !strings.Contains(p.Output(), "SIGHUP ignored") && !p.Exited() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if err := harness.WaitHTTPS("https://"+webhookAddr+"/readyz", caPool, p, hangTimeout); err != nil {
		t.Fatalf("after SIGHUP: %v\n%s", err, p.Output())
	}
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(hangTimeout); err != nil {
		t.Fatalf("after SIGTERM: %v\n%s", err, p.Output())
	}
}
