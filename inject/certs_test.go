package inject

import (
	"context"
	"path/filepath"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestCertReloaderSettles drives the reloader's poll and settle check in a
// synctest bubble, whose clock moves only when every goroutine in it
// waits: a renewal caught half done (the new certificate beside the old
// key) is not loaded, nor counted as a failure, when the key follows
// before the pair has settled; the complete pair is then loaded once.
func TestCertReloaderSettles(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const poll = time.Minute
		ca := newTestCA(t)
		dir := t.TempDir()
		c1, k1 := ca.issue(t, 1, time.Now().Add(time.Hour))
		c2, k2 := ca.issue(t, 2, time.Now().Add(time.Hour))
		writeInPlace(t, dir, c1, k1)
		metrics := NewMetrics(prometheus.NewRegistry())
		c, err := NewCertReloader(CertReloaderOptions{
			CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "tls.key"),
			PollInterval: poll, Logger: discardLogger(), Metrics: metrics, noWatch: true,
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
		// advance moves the bubble's time on by by, and returns once Run
		// waits again: the work due by then is done.
		advance := func(by time.Duration) {
			time.Sleep(by)
			synctest.Wait()
		}
		serial := func() int64 {
			cert, _ := c.GetCertificate(nil)
			return cert.Leaf.SerialNumber.Int64()
		}
		count := func(result string) float64 { return testutil.ToFloat64(metrics.tlsReloads.WithLabelValues(result)) }

		// Run's first read; the same pair as NewCertReloader's, not loaded again.
		advance(certDebounce)
		// Reload is taken once that read is done; it too meets the same pair.
		if err := c.fw.Reload(ctx); err != nil {
			t.Fatal(err)
		}
		writeInPlace(t, dir, c2, k1) // renewal half done…
		advance(poll - certDebounce) // …when the poll reads it: it waits to settle
		writeInPlace(t, dir, c2, k2) // the key follows
		advance(certDebounce)        // changed: wait again
		if serial() != 1 || count("failure") != 0 || count("success") != 1 {
			t.Fatalf("serial %d, %v failures, %v successes: the half-done pair was tried", serial(), count("failure"), count("success"))
		}
		advance(certDebounce - time.Nanosecond)
		if serial() != 1 {
			t.Fatalf("serial %d before the pair stayed unchanged a debounce, want 1", serial())
		}
		advance(time.Nanosecond)
		if serial() != 2 {
			t.Fatalf("serial %d once the pair settled, want 2", serial())
		}
		if count("failure") != 0 || count("success") != 2 {
			t.Errorf("%v failures and %v successes, want 0 and 2", count("failure"), count("success"))
		}
	})
}
