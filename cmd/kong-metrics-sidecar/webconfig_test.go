package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/testsupport/harness"
)

// issue writes a serving certificate for 127.0.0.1 with the given serial.
func issue(t *testing.T, ca *harness.CA, certFile, keyFile string, serial int64) {
	t.Helper()
	certPEM, keyPEM, err := ca.Issue(serial, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := harness.WritePair(certFile, keyFile, certPEM, keyPEM); err != nil {
		t.Fatal(err)
	}
}

// TestWebConfig: SIDECAR_WEB_CONFIG_FILE turns on TLS and basic auth through
// exporter-toolkit; rotated certificates are served without a restart.
func TestWebConfig(t *testing.T) {
	dir := t.TempDir()
	ca, err := harness.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	issue(t, ca, certFile, keyFile, 100)
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	webConfig := filepath.Join(dir, "web.yml")
	if err := os.WriteFile(webConfig, fmt.Appendf(nil, "tls_server_config:\n  cert_file: %s\n  key_file: %s\nbasic_auth_users:\n  prometheus: %s\n", certFile, keyFile, hash), 0o600); err != nil {
		t.Fatal(err)
	}
	bin := buildSidecar(t)
	addr, p := startSidecar(t, bin,
		"SIDECAR_WEB_CONFIG_FILE="+webConfig,
		"SIDECAR_CONFIG_FILE="+filepath.Join(dir, "absent.yaml"), "SIDECAR_UPSTREAM_URL=http://127.0.0.1:1/metrics",
	)

	var served *x509.Certificate
	client := &http.Client{Timeout: hangTimeout, Transport: &http.Transport{
		DisableKeepAlives: true, // a new connection, and so a new handshake, per request
		TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12,
			VerifyConnection: func(cs tls.ConnectionState) error { served = cs.PeerCertificates[0]; return nil }},
	}}
	get := func(user, pass string) (int, string, error) {
		req, _ := http.NewRequest(http.MethodGet, "https://"+addr+"/metrics", nil)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body), nil
	}
	deadline := time.Now().Add(hangTimeout)
	for {
		code, body, err := get("prometheus", "s3cret")
		if err == nil && code == http.StatusOK {
			if !strings.Contains(body, "kong_metrics_sidecar_upstream_up 0") {
				t.Errorf("HTTPS scrape lacks the sidecar's metrics:\n%s", body)
			}
			break
		}
		if time.Now().After(deadline) || p.Exited() {
			t.Fatalf("no HTTPS answer: %d %v\n%s", code, err, p.Output())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if served.SerialNumber.Int64() != 100 {
		t.Errorf("served certificate serial %v, want 100", served.SerialNumber)
	}
	if code, _, err := get("prometheus", "wrong"); err != nil || code != http.StatusUnauthorized {
		t.Errorf("wrong password: %d %v, want 401", code, err)
	}
	if code, _, err := get("", ""); err != nil || code != http.StatusUnauthorized {
		t.Errorf("no credentials: %d %v, want 401", code, err)
	}
	// Plain HTTP is refused.
	if resp, err := http.Get("http://" + addr + "/metrics"); err == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Errorf("plain HTTP served metrics: %s", body)
		}
	}

	// Rotate the certificate on disk: new connections get the new one.
	issue(t, ca, certFile, keyFile, 200)
	if code, _, err := get("prometheus", "s3cret"); err != nil || code != http.StatusOK {
		t.Fatalf("after rotation: %d %v", code, err)
	}
	if served.SerialNumber.Int64() != 200 {
		t.Errorf("after rotation the served serial is %v, want 200", served.SerialNumber)
	}
}

func TestWebConfigInvalid(t *testing.T) {
	dir := t.TempDir()
	webConfig := filepath.Join(dir, "web.yml")
	if err := os.WriteFile(webConfig, []byte("tls_server_config:\n  cert_file: /nonexistent.crt\n  key_file: /nonexistent.key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	code := run(nil, []string{"SIDECAR_WEB_CONFIG_FILE=" + webConfig, "SIDECAR_LISTEN_ADDR=127.0.0.1:0", "SIDECAR_CONFIG_FILE=" + filepath.Join(dir, "c.yaml")}, &stdout, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "web configuration file") {
		t.Errorf("exit %d, stderr %s; want 1 and a message naming the web configuration file", code, &stderr)
	}
}
