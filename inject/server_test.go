package inject

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/testsupport/harness"
)

var buildInfo = regexp.MustCompile(`(?m)^kong_metrics_injector_build_info\{[^}]*goversion="go`)

// testCA issues serving certificates for 127.0.0.1 and localhost.
type testCA struct{ *harness.CA }

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	ca, err := harness.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{ca}
}

func (ca *testCA) pool() *x509.CertPool { return ca.Pool() }

// issue returns a PEM certificate and key with the given serial number.
func (ca *testCA) issue(t *testing.T, serial int64, notAfter time.Time) (certPEM, keyPEM []byte) {
	t.Helper()
	certPEM, keyPEM, err := ca.Issue(serial, notAfter, "kong-metrics-injector.kong.svc")
	if err != nil {
		t.Fatal(err)
	}
	return certPEM, keyPEM
}

// writer writes a certificate pair the way one kind of tool does.
type writer func(t *testing.T, dir string, certPEM, keyPEM []byte)

// writeInPlace overwrites the files, the certificate first.
func writeInPlace(t *testing.T, dir string, certPEM, keyPEM []byte) {
	t.Helper()
	for name, data := range map[string][]byte{"tls.crt": certPEM, "tls.key": keyPEM} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// writeLikeKubelet does what the kubelet's AtomicWriter does for a Secret
// volume: the files live in a timestamped directory, "..data" points at
// it, tls.crt and tls.key point into "..data", and an update swaps
// "..data" with a rename.
func writeLikeKubelet(t *testing.T, dir string, certPEM, keyPEM []byte) {
	t.Helper()
	ts := filepath.Join(dir, fmt.Sprintf("..%d", time.Now().UnixNano()))
	if err := os.Mkdir(ts, 0o755); err != nil {
		t.Fatal(err)
	}
	writeInPlace(t, ts, certPEM, keyPEM)
	tmp := filepath.Join(dir, "..data_tmp")
	if err := os.Symlink(filepath.Base(ts), tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"tls.crt", "tls.key"} {
		if _, err := os.Lstat(filepath.Join(dir, name)); os.IsNotExist(err) {
			if err := os.Symlink(filepath.Join("..data", name), filepath.Join(dir, name)); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// testServer runs a Server and CertReloader until the test ends.
type testServer struct {
	srv     *Server
	metrics *Metrics
	client  *http.Client // verifies the CA; a new connection per request
	stop    func() error // cancels and returns what Run returned
}

func startTestServer(t *testing.T, ca *testCA, dir string, opts CertReloaderOptions) *testServer {
	t.Helper()
	reg := prometheus.NewRegistry()
	metrics := NewMetrics(reg)
	opts.CertFile, opts.KeyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	opts.Logger, opts.Metrics = discardLogger(), metrics
	certs, err := NewCertReloader(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := NewServer(ServerOptions{
		ListenAddr:     "127.0.0.1:0",
		MetricsAddr:    "127.0.0.1:0",
		Mutate:         NewHandler(testConfig, discardLogger(), metrics),
		GetCertificate: certs.GetCertificate,
		Gatherer:       reg,
		Logger:         discardLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	runDone := make(chan error, 1)
	certsDone := make(chan error, 1)
	go func() { runDone <- srv.Run(ctx) }()
	go func() { certsDone <- certs.Run(ctx) }()
	ts := &testServer{
		srv:     srv,
		metrics: metrics,
		client: &http.Client{
			Timeout: 5 * time.Second,
			Transport: &http.Transport{
				TLSClientConfig:   &tls.Config{RootCAs: ca.pool()},
				DisableKeepAlives: true,
			},
		},
	}
	stopped := false
	ts.stop = func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		select {
		case err := <-runDone:
			return errors.Join(err, <-certsDone)
		case <-time.After(10 * time.Second):
			return fmt.Errorf("Run did not return within 10s of cancellation")
		}
	}
	t.Cleanup(func() {
		if err := ts.stop(); err != nil {
			t.Error(err)
		}
	})
	waitFor(t, "the server to be ready", func() bool {
		res, err := ts.client.Get(ts.url("/readyz"))
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK
	})
	return ts
}

func (ts *testServer) url(path string) string { return "https://" + ts.srv.Addr().String() + path }

// mutate POSTs a fixture and returns the serial number of the certificate
// the server presented.
func (ts *testServer) mutate(t *testing.T) int64 {
	t.Helper()
	res, err := ts.client.Post(ts.url("/mutate"), "application/json", bytes.NewReader(readFixture(t, "helm-chart")))
	if err != nil {
		t.Fatalf("POST /mutate: %v", err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK || !bytes.Contains(body, []byte(`"patch"`)) {
		t.Fatalf("POST /mutate: %d %s", res.StatusCode, clipForLog(string(body)))
	}
	return res.TLS.PeerCertificates[0].SerialNumber.Int64()
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestCertificateRotation replaces the certificate on disk while the
// server runs: new connections get the new one, and a client that verifies
// the CA succeeds before and after, with no restart.
func TestCertificateRotation(t *testing.T) {
	cases := []struct {
		name  string
		write writer
		opts  CertReloaderOptions
	}{
		{"kubelet symlink swap, file events", writeLikeKubelet, CertReloaderOptions{PollInterval: time.Hour}},
		{"in-place overwrite, file events", writeInPlace, CertReloaderOptions{PollInterval: time.Hour}},
		{"kubelet symlink swap, polling only", writeLikeKubelet, CertReloaderOptions{PollInterval: 50 * time.Millisecond, noWatch: true}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ca := newTestCA(t)
			dir := t.TempDir()
			c1, k1 := ca.issue(t, 1, time.Now().Add(time.Hour))
			tc.write(t, dir, c1, k1)
			ts := startTestServer(t, ca, dir, tc.opts)
			if serial := ts.mutate(t); serial != 1 {
				t.Fatalf("serving serial %d, want 1", serial)
			}

			notAfter := time.Now().Add(90 * 24 * time.Hour).Truncate(time.Second)
			c2, k2 := ca.issue(t, 2, notAfter)
			tc.write(t, dir, c2, k2)
			waitFor(t, "the new certificate", func() bool { return ts.mutate(t) == 2 })

			if got := testutil.ToFloat64(ts.metrics.tlsReloads.WithLabelValues("success")); got != 2 {
				t.Errorf("tls_reloads_total{result=\"success\"} = %v, want 2", got)
			}
			if got := testutil.ToFloat64(ts.metrics.tlsNotAfter); got != float64(notAfter.Unix()) {
				t.Errorf("not_after %v, want %v", got, notAfter.Unix())
			}
			if err := ts.stop(); err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
}

// TestCertReloaderKeepsTheLastGoodPair feeds the reloader broken pairs: it
// keeps serving the last good one and reports each failure once.
func TestCertReloaderKeepsTheLastGoodPair(t *testing.T) {
	ca := newTestCA(t)
	dir := t.TempDir()
	c1, k1 := ca.issue(t, 1, time.Now().Add(time.Hour))
	c2, k2 := ca.issue(t, 2, time.Now().Add(time.Hour))
	writeInPlace(t, dir, c1, k1)
	metrics := NewMetrics(prometheus.NewRegistry())
	c, err := NewCertReloader(CertReloaderOptions{
		CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "tls.key"),
		Logger: discardLogger(), Metrics: metrics,
	})
	if err != nil {
		t.Fatal(err)
	}
	serial := func() int64 {
		cert, err := c.GetCertificate(nil)
		if err != nil {
			t.Fatal(err)
		}
		return cert.Leaf.SerialNumber.Int64()
	}
	failures := func() float64 { return testutil.ToFloat64(metrics.tlsReloads.WithLabelValues("failure")) }
	lastOK := func() float64 { return testutil.ToFloat64(metrics.tlsLastReloadOK) }

	steps := []struct {
		name         string
		cert, key    []byte
		err          string
		serial       int64
		failures, ok float64
	}{
		{"half written: new cert, old key", c2, k1, "private key does not match public key", 1, 1, 0},
		{"unchanged broken pair is not reported again", c2, k1, "", 1, 1, 0},
		{"garbage", []byte("not a certificate"), k1, "failed to find any PEM data", 1, 2, 0},
		{"empty key", c2, []byte{}, "failed to find any PEM data", 1, 3, 0},
		{"complete", c2, k2, "", 2, 3, 1},
	}
	for _, s := range steps {
		writeInPlace(t, dir, s.cert, s.key)
		err := c.reload()
		if (s.err == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), s.err) {
			t.Errorf("%s: reload() = %v, want %q", s.name, err, s.err)
		}
		if got := serial(); got != s.serial {
			t.Errorf("%s: serving serial %d, want %d", s.name, got, s.serial)
		}
		if failures() != s.failures || lastOK() != s.ok {
			t.Errorf("%s: failures %v, last_reload_successful %v; want %v, %v", s.name, failures(), lastOK(), s.failures, s.ok)
		}
	}

	if err := os.Remove(filepath.Join(dir, "tls.key")); err != nil {
		t.Fatal(err)
	}
	if err := c.reload(); err == nil || !strings.Contains(err.Error(), "tls.key") {
		t.Errorf("reload() without a key = %v, want an error naming tls.key", err)
	}
}

func TestNewCertReloaderFailsWithoutAPair(t *testing.T) {
	dir := t.TempDir()
	_, err := NewCertReloader(CertReloaderOptions{
		CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "tls.key"),
		Logger: discardLogger(), Metrics: NewMetrics(prometheus.NewRegistry()),
	})
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "tls.crt")) {
		t.Errorf("got %v, want an error naming the certificate file", err)
	}
}

func TestServerEndpoints(t *testing.T) {
	ca := newTestCA(t)
	dir := t.TempDir()
	c, k := ca.issue(t, 1, time.Now().Add(time.Hour))
	writeInPlace(t, dir, c, k)
	ts := startTestServer(t, ca, dir, CertReloaderOptions{})
	ts.mutate(t)

	get := func(client *http.Client, url string) (int, string) {
		t.Helper()
		res, err := client.Get(url)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	for _, tc := range []struct {
		url    string
		status int
		body   string
	}{
		{ts.url("/healthz"), 200, "ok"},
		{ts.url("/readyz"), 200, "ready"},
		{ts.url("/mutate"), 405, "use POST"},
		{ts.url("/metrics"), 404, ""}, // metrics are on their own port
		{"http://" + ts.srv.MetricsAddr().String() + "/metrics", 200, `kong_metrics_injector_admissions_total{result="injected"} 1`},
		{"http://" + ts.srv.MetricsAddr().String() + "/metrics", 200, "kong_metrics_injector_admission_duration_seconds_count 1"},
		{"http://" + ts.srv.MetricsAddr().String() + "/metrics", 200, "kong_metrics_injector_tls_last_reload_successful 1"},
	} {
		status, body := get(ts.client, tc.url)
		if status != tc.status || !strings.Contains(body, tc.body) {
			t.Errorf("GET %s: %d, want %d with %q", tc.url, status, tc.status, tc.body)
		}
	}
	// build_info has a goversion label, wherever its labels sort it.
	if _, body := get(ts.client, "http://"+ts.srv.MetricsAddr().String()+"/metrics"); !buildInfo.MatchString(body) {
		t.Errorf("GET /metrics: no kong_metrics_injector_build_info with a goversion label")
	}

	// TLS 1.2 at least.
	old := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: ca.pool(), MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11,
	}}}
	if err := getErr(old, ts.url("/healthz")); err == nil || !strings.Contains(err.Error(), "protocol version") {
		t.Errorf("a TLS 1.1 client got %v, want a protocol version error", err)
	}
	// A client that does not trust the CA fails.
	if err := getErr(http.DefaultClient, ts.url("/healthz")); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("a client without the CA got %v, want a certificate error", err)
	}

	if err := ts.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	rec := httptest.NewRecorder()
	ts.srv.readyz(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("readyz after shutdown: %d, want 503", rec.Code)
	}
	if err := getErr(ts.client, ts.url("/healthz")); err == nil {
		t.Error("the server still answers after shutdown")
	}
}

// getErr GETs url with a request that is expected to fail, and returns why;
// nil (with the body closed) when it unexpectedly succeeded.
func getErr(c *http.Client, url string) error {
	res, err := c.Get(url)
	if err == nil {
		res.Body.Close()
	}
	return err
}

func TestNewServerReportsABusyPort(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, err = NewServer(ServerOptions{
		ListenAddr: "127.0.0.1:0", MetricsAddr: ln.Addr().String(), Logger: discardLogger(),
		Mutate: http.NotFoundHandler(), Gatherer: prometheus.NewRegistry(),
	})
	if err == nil || !strings.Contains(err.Error(), "listening for metrics") {
		t.Errorf("got %v, want a listen error for metrics", err)
	}
}
