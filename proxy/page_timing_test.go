package proxy_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
	"time"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/proxy"
)

// getOnce runs one GET of path through h and checks the answer: 200, and
// at least minBytes (exactly, for a plain page) when not gzipped.
func getOnce(b *testing.B, h http.Handler, path, acceptEncoding string, minBytes int, exact bool) {
	req := httptest.NewRequest(http.MethodGet, path, nil)
	if acceptEncoding != "" {
		req.Header.Set("Accept-Encoding", acceptEncoding)
	}
	w := &discard{header: http.Header{}, code: http.StatusOK}
	h.ServeHTTP(w, req)
	gzipped := w.header.Get("Content-Encoding") == "gzip"
	switch {
	case w.code != http.StatusOK:
		b.Fatalf("GET %s: status %d", path, w.code)
	case gzipped != (acceptEncoding == "gzip"):
		b.Fatalf("GET %s: Content-Encoding %q for Accept-Encoding %q", path, w.header.Get("Content-Encoding"), acceptEncoding)
	case gzipped && string(w.head) != "\x1f\x8b":
		b.Fatalf("GET %s: gzip answer starts %x", path, w.head)
	case !gzipped && (w.n < minBytes || exact && w.n != minBytes):
		b.Fatalf("GET %s: %d-byte answer, want %d", path, w.n, minBytes)
	}
}

// bufferingProxy is the baseline: a proxy that reads Kong's page whole
// and then writes it, as a handler built on io.ReadAll does.
func bufferingProxy(client *http.Client, url string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		resp, err := client.Get(url)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		page, err := io.ReadAll(resp.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		w.Header().Set("Content-Type", resp.Header.Get("Content-Type"))
		_, _ = w.Write(page)
	})
}

// BenchmarkKongPageMemory serves the 10,000-route page (about 94 MB, the
// load test's) at /metrics/kong and reports alloc/page: the bytes
// allocated per request, everything in the process counted (the upstream
// and the HTTP client too), divided by the page's size. Under 1, the
// request cannot have held the page whole uncompressed. The baseline, in
// the same run, is a proxy that reads the page whole (io.ReadAll) and
// writes it; /metrics with the typical selection is beside them.
// "shared" answers from the last fetch (SIDECAR_MIN_FETCH_INTERVAL): the
// page held compressed, copied out as gzip.
func BenchmarkKongPageMemory(b *testing.B) {
	const routes = 10000
	page := simPage(b, routes)
	up := servePage(page)
	defer up.Close()
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	defer client.CloseIdleConnections()
	kongBytes := len(rewritten(b, routes, 5))

	run := func(b *testing.B, h http.Handler, path, enc string, minBytes int, exact bool) {
		getOnce(b, h, path, enc, minBytes, exact) // fills the rewriter's cache and, for the page, sets keepPage
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		b.SetBytes(int64(len(page)))
		b.ReportAllocs()
		for b.Loop() {
			getOnce(b, h, path, enc, minBytes, exact)
		}
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/float64(b.N)/float64(len(page)), "alloc/page")
	}
	b.Run("baseline=readall", func(b *testing.B) {
		run(b, bufferingProxy(client, up.URL), proxy.KongPagePath, "", len(page), true)
	})
	for _, enc := range []string{"", "gzip"} {
		b.Run("kong-page/enc="+enc, func(b *testing.B) {
			run(b, proxy.NewMux(benchHandler(up.URL, pageSelection(routes, 5), 0)), proxy.KongPagePath, enc, len(page), true)
		})
	}
	b.Run("kong-page-shared/enc=gzip", func(b *testing.B) {
		run(b, proxy.NewMux(benchHandler(up.URL, pageSelection(routes, 5), time.Hour)), proxy.KongPagePath, "gzip", 0, false)
	})
	b.Run("metrics/sel=typical", func(b *testing.B) {
		run(b, proxy.NewMux(benchHandler(up.URL, pageSelection(routes, 5), 0)), "/metrics", "", kongBytes, false)
	})
}
