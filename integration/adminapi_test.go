package integration

import (
	"context"
	"encoding/pem"
	"math"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/integration/harness"
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
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw})
	if err := harness.WritePair(caFile, filepath.Join(dir, "unused"), caPEM, nil); err != nil {
		t.Fatal(err)
	}
	adminAddr, err := harness.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	stack := startStackWith(t, harness.TutorialExtension,
		[]string{
			"-services", "httproute/kong/command/0",
			"-admin-listen", adminAddr,
			"-admin-cert", files["server"][0], "-admin-key", files["server"][1],
			"-admin-client-ca", caFile, "-admin-token", "integration-token",
		},
		[]string{
			"SIDECAR_KONG_ADMIN_URL=https://" + adminAddr,
			"SIDECAR_KONG_ADMIN_CA_FILE=" + caFile,
			"SIDECAR_KONG_ADMIN_CERT_FILE=" + files["client"][0],
			"SIDECAR_KONG_ADMIN_KEY_FILE=" + files["client"][1],
			"SIDECAR_KONG_ADMIN_TOKEN=integration-token",
		})

	trafficCtx, stopTraffic := context.WithCancel(ctx)
	var trafficWG sync.WaitGroup
	var served int
	var trafficErr error
	trafficWG.Go(func() { served, trafficErr = harness.Traffic(trafficCtx, stack.proxyURL, "0.1", 4) })
	defer func() {
		stopTraffic()
		trafficWG.Wait()
		if trafficErr != nil {
			t.Errorf("traffic: %v (%d requests served)", trafficErr, served)
		}
	}()

	prom, err := harness.StartPrometheus(t.TempDir(), serviceMonitorScrapeConfig(stack.sidecarAddr, false))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		prom.Stop(5 * time.Second)
		if t.Failed() {
			t.Logf("prometheus output:\n%s", prom.Output())
		}
	})

	// Two answers in a row within 100 ± 10 ms.
	var values []float64
	deadline := time.Now().Add(100 * time.Second)
	for len(values) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("no stable answer in time; got %v\nsidecar output:\n%s", values, stack.sidecar.Output())
		}
		time.Sleep(3 * time.Second)
		res, err := prom.Query(ctx, tutorialMetricsQuery)
		if err != nil {
			t.Fatal(err)
		}
		if len(res) == 0 {
			continue
		}
		if len(res) != 1 || res[0].Metric["exported_service"] != "command" {
			t.Fatalf("want one result for exported_service=command, got %+v", res)
		}
		if v := res[0].Value; math.Abs(v-100) > 10 {
			t.Fatalf("mean upstream latency %v ms, want 100 ± 10", v)
		} else {
			values = append(values, v)
		}
	}
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
			"kong_service": "httproute.kong.command.0",
		}
		for k, v := range want {
			if s[k] != v {
				t.Errorf("series %v: %s = %q, want %q", s, k, s[k], v)
			}
		}
	}
	// The sidecar's own metrics say the Admin API is up.
	up, err := prom.Query(ctx, `kong_metrics_sidecar_admin_api_up`)
	if err != nil {
		t.Fatal(err)
	}
	if len(up) != 1 || up[0].Value != 1 {
		t.Errorf("kong_metrics_sidecar_admin_api_up: %+v, want 1", up)
	}
}
