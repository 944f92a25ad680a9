//go:build integration

package integration

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/testsupport/harness"
)

// TestHTTPRouteThroughAdminAPIWithPrometheus routes the tutorial's
// /command through an HTTPRoute rule, so Kong names the service
// httproute.kong.command.0, which no naming rule resolves. The sidecar
// reads the Kong Ingress Controller's tags from the simulated Admin API
// (over mutual TLS, with a token) and the tutorial's query still answers
// for kong/command through a real Prometheus.
func TestHTTPRouteThroughAdminAPIWithPrometheus(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	dir := t.TempDir()
	ca, err := harness.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "ca.pem")
	files := map[string][2]string{
		"server": {filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")},
		"client": {filepath.Join(dir, "client.crt"), filepath.Join(dir, "client.key")},
	}
	for i, name := range []string{"server", "client"} {
		cert, key, err := ca.Issue(int64(10+i), time.Now().Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if err := harness.WritePair(files[name][0], files[name][1], cert, key); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(caFile, ca.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	stack := startStackWith(t, harness.TutorialExtension,
		[]string{
			"-services", "httproute/kong/command/0",
			"-admin-listen", harness.AnyPort,
			"-admin-cert", files["server"][0], "-admin-key", files["server"][1],
			"-admin-client-ca", caFile, "-admin-token", "integration-token",
		},
		func(s *stack) []string {
			return []string{
				"SIDECAR_KONG_ADMIN_URL=https://" + s.adminAddr,
				"SIDECAR_KONG_ADMIN_CA_FILE=" + caFile,
				"SIDECAR_KONG_ADMIN_CERT_FILE=" + files["client"][0],
				"SIDECAR_KONG_ADMIN_KEY_FILE=" + files["client"][1],
				"SIDECAR_KONG_ADMIN_TOKEN=integration-token",
			}
		})

	runTutorialTraffic(ctx, t, stack)

	prom, err := harness.StartPrometheus(ctx, t.TempDir(), serviceMonitorScrapeConfig(stack.sidecarAddr, false))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		prom.Stop(5 * time.Second)
		if t.Failed() {
			t.Logf("prometheus output:\n%s", prom.Output())
		}
	})

	checkTutorialAverage(ctx, t, prom, stack, 2)
	checkTutorialSeries(ctx, t, prom, "httproute.kong.command.0")
	// The sidecar's own metrics say the Admin API is up.
	up, err := prom.Query(ctx, `kong_metrics_sidecar_admin_api_up`)
	if err != nil {
		t.Fatal(err)
	}
	if len(up) != 1 || up[0].Value != 1 {
		t.Errorf("kong_metrics_sidecar_admin_api_up: %+v, want 1", up)
	}
}
