//go:build integration

package loadtest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/testsupport/harness"
)

// TestLoadTestSmall runs every measurement once on a small page, so that
// the program keeps working; it checks counts and answers, never speed.
func TestLoadTestSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	// The build (slow on a cold cache, beside the other packages' tests)
	// is not part of the run's deadline.
	if _, err := harness.Binaries(t.Context()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const routes = 50
	stack, err := StartSimulator(ctx, routes, t.TempDir(), t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	defer stack.Stop()

	r, err := stack.MeasureScrapes(ctx, "all", AllSelection(routes), 1)
	if err != nil {
		t.Fatal(err)
	}
	if r.PageBytes == 0 || r.IdentityBytes <= r.GzipBytes || r.IdleRSS == 0 || r.PeakRSS < r.IdleRSS {
		t.Errorf("implausible report %+v", r)
	}

	kp, err := stack.MeasureKongPage(ctx, TypicalSelection(routes), 2)
	if err != nil {
		t.Fatal(err)
	}
	// Two rounds of a plain and a gzip request, one fetch each (the first
	// request is for the page, so it is kept from the first fetch on), and
	// the scrape of /metrics that reads the count.
	if kp.IdentityBytes != kp.PageBytes || kp.GzipBytes == 0 || kp.GzipBytes >= kp.PageBytes || kp.Fetches != 5 {
		t.Errorf("implausible Kong page report %+v", kp)
	}

	f, err := stack.MeasureFanIn(ctx, TypicalSelection(routes), "1h", 10)
	if err != nil {
		t.Fatal(err)
	}
	if f.Fetches != 1 {
		t.Errorf("%d concurrent and %d sequential scrapes within the interval made %v fetches, want 1", f.Concurrent, f.Sequential, f.Fetches)
	}

	a, err := MeasureAdmission(ctx, 50, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if a.Errors != 0 || a.Requests != 50 {
		t.Errorf("admission: %d errors in %d requests, want none in 50", a.Errors, a.Requests)
	}
}

func TestExtensionFile(t *testing.T) {
	file := AllSelection(8)
	// 8 Services in 8 namespaces; the two HTTPRoute rules need a mapping.
	if n := strings.Count(file, "kind: DataPlaneMetricsExtension"); n != 8 {
		t.Errorf("%d extensions, want 8:\n%s", n, file)
	}
	if n := strings.Count(file, "- kongService: httproute."); n != 2 {
		t.Errorf("%d mappings, want 2:\n%s", n, file)
	}
}
