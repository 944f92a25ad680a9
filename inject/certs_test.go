package inject

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/filewatch/filewatchtest"
)

// TestCertReloaderSettles drives the reloader's poll and settle check with
// a fake clock: a renewal caught half done (the new certificate beside the
// old key) is not loaded, nor counted as a failure, when the key follows
// before the pair has settled; the complete pair is then loaded once.
func TestCertReloaderSettles(t *testing.T) {
	const poll = time.Minute
	ca := newTestCA(t)
	dir := t.TempDir()
	c1, k1 := ca.issue(t, 1, time.Now().Add(time.Hour))
	c2, k2 := ca.issue(t, 2, time.Now().Add(time.Hour))
	writeInPlace(t, dir, c1, k1)
	metrics := NewMetrics(prometheus.NewRegistry())
	clock := filewatchtest.NewClock(time.Unix(1e9, 0))
	c, err := NewCertReloader(CertReloaderOptions{
		CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "tls.key"),
		PollInterval: poll, Logger: discardLogger(), Metrics: metrics, noWatch: true, clock: clock,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	armed := func() {
		t.Helper()
		select {
		case d := <-clock.Armed():
			if d != certDebounce {
				t.Fatalf("armed for %s, want %s", d, certDebounce)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the settle timer was not armed")
		}
	}
	serial := func() int64 {
		cert, _ := c.GetCertificate(nil)
		return cert.Leaf.SerialNumber.Int64()
	}
	count := func(result string) float64 { return testutil.ToFloat64(metrics.tlsReloads.WithLabelValues(result)) }

	armed() // Run's first read; the same pair as NewCertReloader's, not loaded again
	clock.Advance(certDebounce)
	// Reload is taken once that read is done; it too meets the same pair.
	if err := c.fw.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	writeInPlace(t, dir, c2, k1)       // renewal half done…
	clock.Advance(poll - certDebounce) // …when the poll reads it
	armed()                            // it waits to settle
	writeInPlace(t, dir, c2, k2)       // the key follows
	clock.Advance(certDebounce)        // changed: wait again
	armed()
	if serial() != 1 || count("failure") != 0 || count("success") != 1 {
		t.Fatalf("serial %d, %v failures, %v successes: the half-done pair was tried", serial(), count("failure"), count("success"))
	}
	clock.Advance(certDebounce)
	waitFor(t, "the new pair", func() bool { return serial() == 2 })
	if count("failure") != 0 || count("success") != 2 {
		t.Errorf("%v failures and %v successes, want 0 and 2", count("failure"), count("success"))
	}
}
