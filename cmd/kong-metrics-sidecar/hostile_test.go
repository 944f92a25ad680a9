package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/testsupport/harness"
)

// TestLogsHidePasswords: the passwords in the upstream's and the Admin
// API's URLs appear in no log line: not at start, not in a failed fetch's,
// not in a failed refresh's.
func TestLogsHidePasswords(t *testing.T) {
	closed, err := harness.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	bin := buildSidecar(t)
	addr, p := startSidecar(t, bin,
		"SIDECAR_UPSTREAM_URL=http://kong:upstreampw@"+closed+"/metrics",
		"SIDECAR_KONG_ADMIN_URL=http://admin:adminpw@"+closed,
		"SIDECAR_KONG_ADMIN_REFRESH_INTERVAL=1h",
		"SIDECAR_CONFIG_FILE="+t.TempDir()+"/missing.yaml",
	)
	if _, err := harness.Get(context.Background(), "http://"+addr+"/metrics"); err != nil {
		t.Fatal(err)
	}
	// The failed fetch is logged before the answer goes out; the failed
	// refresh may come later: wait for it (bounded; only a hang waits long).
	deadline := time.Now().Add(hangTimeout)
	for !strings.Contains(p.Output(), "Admin API failed") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	out := p.Output()
	for _, pw := range []string{"upstreampw", "adminpw"} {
		if strings.Contains(out, pw) {
			t.Errorf("the log shows the password %s:\n%s", pw, out)
		}
	}
	if !strings.Contains(out, "kong:xxxxx@") || !strings.Contains(out, "admin:xxxxx@") {
		t.Errorf("the log does not name the URLs, redacted:\n%s", out)
	}
}

// TestSIGHUPDuringStartUp: a SIGHUP while start-up is held up (here in
// reading the web configuration file, a FIFO that answers only when the
// test writes to it) neither kills the sidecar nor is lost: once it runs,
// it reloads the extension file.
func TestSIGHUPDuringStartUp(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "web.yml")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	bin := buildSidecar(t)
	p, err := harness.Start("sidecar", bin, nil, []string{
		"SIDECAR_LISTEN_ADDR=" + harness.AnyPort,
		"SIDECAR_WEB_CONFIG_FILE=" + fifo,
		"SIDECAR_CONFIG_FILE=" + filepath.Join(t.TempDir(), "missing.yaml"),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop(5 * time.Second) })
	// Opening the FIFO for writing returns once the sidecar opened it to
	// read: it is in the middle of its start-up.
	w, err := os.OpenFile(fifo, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	_ = w.Close() // an empty web configuration: plain HTTP
	// From now on every read of the file (each request reads it) gets it empty.
	var done atomic.Bool
	feeder := make(chan struct{})
	go func() {
		defer close(feeder)
		for !done.Load() {
			if f, err := os.OpenFile(fifo, os.O_WRONLY, 0); err == nil {
				_ = f.Close()
			}
		}
	}()
	t.Cleanup(func() {
		done.Store(true)
		if r, err := os.OpenFile(fifo, os.O_RDONLY|syscall.O_NONBLOCK, 0); err == nil {
			<-feeder
			_ = r.Close()
		}
	})
	addr, err := p.LoggedAddr(hangTimeout, "msg", "serving")
	if err != nil {
		t.Fatalf("%v\n%s", err, p.Output())
	}
	if err := harness.WaitHTTP("http://"+addr+"/healthz", p, hangTimeout); err != nil {
		t.Fatalf("%v\n%s", err, p.Output())
	}
	deadline := time.Now().Add(hangTimeout)
	for !strings.Contains(p.Output(), "SIGHUP: reloading") && time.Now().Before(deadline) && !p.Exited() {
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(p.Output(), "SIGHUP: reloading") {
		t.Errorf("the SIGHUP of the start-up was not handled as a reload:\n%s", p.Output())
	}
}

// TestOverflowingSizeRefused: a SIDECAR_MAX_UPSTREAM_BYTES that counts
// could overflow is refused at start with exit 2, not served as nothing.
func TestOverflowingSizeRefused(t *testing.T) {
	for _, v := range []string{"9223372036854775807", "8388607TiB", "1125899906842625"} {
		var stdout, stderr strings.Builder
		if code := run(nil, []string{"SIDECAR_MAX_UPSTREAM_BYTES=" + v, "SIDECAR_LISTEN_ADDR=no-such-address"}, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "SIDECAR_MAX_UPSTREAM_BYTES") {
			t.Errorf("SIDECAR_MAX_UPSTREAM_BYTES=%s: exit %d, want 2 with a message naming it; stderr:\n%s", v, code, stderr.String())
		}
	}
	if _, err := LoadSettings([]string{"SIDECAR_MAX_UPSTREAM_BYTES=1024TiB"}); err != nil {
		t.Errorf("the ceiling itself is refused: %v", err)
	}
}

// TestTornCertificateKeepsLastGood: with TLS from SIDECAR_WEB_CONFIG_FILE,
// a certificate file replaced by garbage (a rotation caught half way)
// leaves the last good certificate in use, so handshakes (and the HTTPS
// liveness probe) go on; a good one is taken at once again. Basic auth
// still applies.
func TestTornCertificateKeepsLastGood(t *testing.T) {
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
	// Relative paths, resolved against the file's directory.
	if err := os.WriteFile(webConfig, fmt.Appendf(nil, "tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\nbasic_auth_users:\n  prometheus: %s\n", hash), 0o600); err != nil {
		t.Fatal(err)
	}
	addr, p := startSidecar(t, buildSidecar(t),
		"SIDECAR_WEB_CONFIG_FILE="+webConfig,
		"SIDECAR_CONFIG_FILE="+filepath.Join(dir, "absent.yaml"), "SIDECAR_UPSTREAM_URL=http://127.0.0.1:1/metrics",
	)
	var served *x509.Certificate
	client := &http.Client{Timeout: hangTimeout, Transport: &http.Transport{
		DisableKeepAlives: true, // a handshake per request
		TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12,
			VerifyConnection: func(cs tls.ConnectionState) error { served = cs.PeerCertificates[0]; return nil }},
	}}
	get := func(pass string) (int, error) {
		req, _ := http.NewRequest(http.MethodGet, "https://"+addr+"/metrics", nil)
		req.SetBasicAuth("prometheus", pass)
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, nil
	}
	deadline := time.Now().Add(hangTimeout)
	for {
		code, err := get("s3cret")
		if err == nil && code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) || p.Exited() {
			t.Fatalf("no HTTPS answer: %d %v\n%s", code, err, p.Output())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if served.SerialNumber.Int64() != 100 {
		t.Fatalf("serial %v, want 100", served.SerialNumber)
	}
	if err := os.WriteFile(certFile, []byte("-----BEGIN CERTIFICATE-----\ngarbage\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, err := get("s3cret"); err != nil || code != http.StatusOK {
		t.Fatalf("with a torn certificate file: %d %v\n%s", code, err, p.Output())
	}
	if served.SerialNumber.Int64() != 100 {
		t.Errorf("with a torn certificate file the serial is %v, want the last good 100", served.SerialNumber)
	}
	if code, err := get("wrong"); err != nil || code != http.StatusUnauthorized {
		t.Errorf("wrong password: %d %v, want 401", code, err)
	}
	issue(t, ca, certFile, keyFile, 300)
	if code, err := get("s3cret"); err != nil || code != http.StatusOK || served.SerialNumber.Int64() != 300 {
		t.Errorf("after a good rotation: %d %v, serial %v; want 200 with 300", code, err, served.SerialNumber)
	}
	if !strings.Contains(p.Output(), "serving the last good one") {
		t.Errorf("the torn certificate was not logged:\n%s", p.Output())
	}
}
