//go:build integration

package integration

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/testsupport/harness"
	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/testsupport/kongsim"
	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/testsupport/kubelet"
)

// soakDuration is how long TestSoak runs: 60 s in make test, longer with
// SOAK_DURATION (make soak).
func soakDuration(t *testing.T) time.Duration {
	if v := os.Getenv("SOAK_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("SOAK_DURATION=%q: %v", v, err)
		}
		return d
	}
	return 60 * time.Second
}

// TestSoak scrapes the real sidecar up to 20 times a second while its
// ConfigMap is swapped every 2 s and Kong fails every 25th fetch: no scrape
// fails beyond the injected failures, every answer is one configuration's,
// and the sidecar's goroutines, heap and open files stay flat. How fast
// the scrapes are answered is the load test's to report
// (integration/loadtest), not this test's to assert: on a busy machine
// there are fewer of them, and the checks hold all the same.
func TestSoak(t *testing.T) {
	duration := soakDuration(t)
	page := kongsim.Sample()
	var fetches, injected atomic.Int64
	kong := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if fetches.Add(1)%25 == 0 {
			injected.Add(1)
			http.Error(w, "injected failure", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=UTF-8")
		w.Write(page)
	}))
	defer kong.Close()

	volume := &kubelet.AtomicWriter{Dir: filepath.Join(t.TempDir(), "extension")}
	configs := []string{extCommandLatency, extBillingStatus}
	if err := volume.Write(map[string][]byte{"config.yaml": []byte(configs[0])}); err != nil {
		t.Fatal(err)
	}
	bins, err := harness.Binaries(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	p, err := harness.Start("sidecar", bins["kong-metrics-sidecar"], nil, []string{
		"SIDECAR_LISTEN_ADDR=" + harness.AnyPort,
		"SIDECAR_UPSTREAM_URL=" + kong.URL + "/metrics",
		"SIDECAR_CONFIG_FILE=" + filepath.Join(volume.Dir, "config.yaml"),
		"SIDECAR_LOG_LEVEL=info", // the address it listens on; then a line or two per swap
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		p.Stop(5 * time.Second)
		if t.Failed() {
			t.Logf("sidecar output:\n%s", p.Output())
		}
	}()
	addr, err := p.LoggedAddr(hangTimeout, "msg", "serving")
	if err != nil {
		t.Fatal(err)
	}
	if err := harness.WaitHTTP("http://"+addr+"/readyz", p, hangTimeout); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), duration)
	defer cancel()
	swaps := 0
	swapperDone := make(chan struct{})
	go func() {
		defer close(swapperDone)
		tick := time.NewTicker(2 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				swaps++
				if err := volume.Write(map[string][]byte{"config.yaml": []byte(configs[swaps%2])}); err != nil {
					t.Errorf("swapping the ConfigMap: %v", err)
				}
			}
		}
	}()

	var scrapes, failed, commandOnly, billingOnly int
	var warm, last map[string]float64
	start := time.Now()
	tick := time.NewTicker(50 * time.Millisecond) // at most 20 scrapes a second
	defer tick.Stop()
	for ctx.Err() == nil {
		<-tick.C
		scrapeCtx, cancelScrape := context.WithTimeout(context.Background(), hangTimeout)
		body, err := harness.Get(scrapeCtx, "http://"+addr+"/metrics")
		cancelScrape()
		if err != nil {
			t.Fatalf("scrape %d failed: %v", scrapes, err)
		}
		scrapes++
		parser := expfmt.NewTextParser(model.UTF8Validation)
		families, err := parser.TextToMetricFamilies(bytes.NewReader(body))
		if err != nil {
			t.Fatalf("scrape %d does not parse: %v", scrapes, err)
		}
		own := func(name string) float64 {
			mf := families[name]
			if mf == nil || len(mf.Metric) == 0 {
				t.Fatalf("scrape %d lacks %s", scrapes, name)
			}
			m := mf.Metric[0]
			switch {
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			case m.Counter != nil:
				return m.Counter.GetValue()
			}
			return m.Untyped.GetValue()
		}
		command, billing := hasSeries(body, seriesCommand), hasSeries(body, seriesBilling)
		switch up := own("kong_metrics_sidecar_upstream_up"); {
		case up == 0:
			failed++
			if command || billing {
				t.Fatalf("scrape %d: upstream_up 0 with Kong series", scrapes)
			}
		case command && !billing:
			commandOnly++
		case billing && !command:
			billingOnly++
		default:
			t.Fatalf("scrape %d: command %v, billing %v: want exactly one configuration's series", scrapes, command, billing)
		}
		sample := map[string]float64{
			"goroutines": own("go_goroutines"),
			"heap":       own("go_memstats_heap_inuse_bytes"),
			"fds":        own("process_open_fds"),
		}
		// Warm once a sixth of the run, a swap and a failed fetch are
		// behind it: when it is sampled, not a bound on anything.
		if warm == nil && time.Since(start) > duration/6 && commandOnly > 0 && billingOnly > 0 && failed > 0 {
			warm = sample
		}
		last = sample
	}
	<-swapperDone
	if failed > int(injected.Load()) {
		t.Errorf("%d scrapes without Kong, but only %d failures were injected", failed, injected.Load())
	}
	if injected.Load() == 0 || failed == 0 {
		t.Errorf("no injected failure was seen (%d injected, %d seen)", injected.Load(), failed)
	}
	if commandOnly == 0 || billingOnly == 0 {
		t.Errorf("configurations served: command %d, billing %d; want both", commandOnly, billingOnly)
	}
	if warm == nil {
		t.Fatalf("%d scrapes never saw both configurations and a failed fetch: nothing to compare the last sample with", scrapes)
	}
	t.Logf("%d scrapes, %d config swaps, %d injected failures, %d answers without Kong; warm %v, last %v",
		scrapes, swaps, injected.Load(), failed, warm, last)
	if last["goroutines"] > warm["goroutines"]+5 {
		t.Errorf("goroutines grew from %v to %v", warm["goroutines"], last["goroutines"])
	}
	if last["fds"] > warm["fds"]+5 {
		t.Errorf("open files grew from %v to %v", warm["fds"], last["fds"])
	}
	if last["heap"] > 2*warm["heap"]+4<<20 {
		t.Errorf("heap grew from %v to %v", warm["heap"], last["heap"])
	}
}
