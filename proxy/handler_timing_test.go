package proxy_test

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/proxy"
	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/relabel"
)

// discard is a ResponseWriter that counts the body and keeps its start.
type discard struct {
	header http.Header
	code   int
	n      int
	head   []byte
}

func (d *discard) Header() http.Header  { return d.header }
func (d *discard) WriteHeader(code int) { d.code = code }
func (d *discard) Write(p []byte) (int, error) {
	if len(d.head) < 2 {
		d.head = append(d.head, p[:min(len(p), 2-len(d.head))]...)
	}
	d.n += len(p)
	return len(p), nil
}

// servePage answers as Kong does, from memory: 64 KiB pieces, chunked.
func servePage(page []byte) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", kongContentType)
		rc := http.NewResponseController(w)
		for piece := range slices.Chunk(page, 64<<10) {
			if _, err := w.Write(piece); err != nil {
				return
			}
			_ = rc.Flush()
		}
	}))
}

// getPage is the baseline: a plain GET of the upstream, discarding the body.
func getPage(b *testing.B, client *http.Client, url string, want int) {
	resp, err := client.Get(url)
	if err != nil {
		b.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || int(n) != want {
		b.Fatalf("GET read %d bytes (%v), want %d", n, err, want)
	}
}

// scrapeOnce runs one scrape through h and checks the answer.
func scrapeOnce(b *testing.B, h http.Handler, acceptEncoding string, minBytes int) {
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	if acceptEncoding != "" {
		req.Header.Set("Accept-Encoding", acceptEncoding)
	}
	w := &discard{header: http.Header{}, code: http.StatusOK}
	h.ServeHTTP(w, req)
	gzipped := w.header.Get("Content-Encoding") == "gzip"
	switch {
	case w.code != http.StatusOK:
		b.Fatalf("status %d", w.code)
	case gzipped != (acceptEncoding == "gzip"):
		b.Fatalf("Content-Encoding %q for Accept-Encoding %q", w.header.Get("Content-Encoding"), acceptEncoding)
	case gzipped && !bytes.Equal(w.head, []byte{0x1f, 0x8b}):
		b.Fatalf("gzip answer starts %x", w.head)
	case !gzipped && w.n < minBytes:
		b.Fatalf("%d-byte answer, the Kong part alone is %d", w.n, minBytes)
	}
}

func benchHandler(url string, sel relabel.Selection, minFetch time.Duration) http.Handler {
	rw := relabel.New(sel)
	return proxy.NewHandler(proxy.Options{
		UpstreamURL:      url,
		Timeout:          time.Minute,
		MaxUpstreamBytes: 1 << 30,
		Rewriter:         func() *relabel.Rewriter { return rw },
		MinFetchInterval: minFetch,
		Registry:         prometheus.NewRegistry(),
		Logger:           slog.New(slog.DiscardHandler),
	})
}

// BenchmarkScrape is a scrape through the handler from an upstream on
// loopback that serves the simulator's page from memory, beside a plain
// GET of the same page (get) in the same run. MB/s is of Kong's page.
// shared-gzip answers from the last fetch (SIDECAR_MIN_FETCH_INTERVAL),
// compressed once for all scrapes.
func BenchmarkScrape(b *testing.B) {
	for _, routes := range []int{1000, 10000} {
		page := simPage(b, routes)
		up := servePage(page)
		client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
		for _, sel := range []struct {
			name string
			n    int
		}{{"typical", 5}, {"all", 0}} {
			selection := pageSelection(routes, sel.n)
			kongBytes := len(rewritten(b, routes, sel.n))
			prefix := fmt.Sprintf("routes=%d/sel=%s/", routes, sel.name)
			b.Run(prefix+"get", func(b *testing.B) {
				b.SetBytes(int64(len(page)))
				b.ReportAllocs()
				for b.Loop() {
					getPage(b, client, up.URL, len(page))
				}
			})
			for _, enc := range []string{"", "gzip"} {
				name := "sidecar"
				if enc != "" {
					name += "-" + enc
				}
				b.Run(prefix+name, func(b *testing.B) {
					h := benchHandler(up.URL, selection, 0)
					scrapeOnce(b, h, enc, kongBytes) // fills the rewriter's cache, as the first scrape does
					b.SetBytes(int64(len(page)))
					b.ReportAllocs()
					for b.Loop() {
						scrapeOnce(b, h, enc, kongBytes)
					}
				})
			}
			b.Run(prefix+"shared-gzip", func(b *testing.B) {
				h := benchHandler(up.URL, selection, time.Hour)
				scrapeOnce(b, h, "gzip", kongBytes)
				b.SetBytes(int64(len(page)))
				b.ReportAllocs()
				for b.Loop() {
					scrapeOnce(b, h, "gzip", kongBytes)
				}
			})
		}
		up.Close()
	}
}

// BenchmarkScrapeVersusGet times a plain GET and a scrape through the
// handler in turn in every iteration and reports x-get: how many times
// as long the scrape takes.
func BenchmarkScrapeVersusGet(b *testing.B) {
	for _, routes := range []int{1000, 10000} {
		page := simPage(b, routes)
		up := servePage(page)
		client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
		for _, enc := range []string{"", "gzip"} {
			b.Run(fmt.Sprintf("routes=%d/sel=typical/enc=%s", routes, enc), func(b *testing.B) {
				kongBytes := len(rewritten(b, routes, 5))
				h := benchHandler(up.URL, pageSelection(routes, 5), 0)
				scrapeOnce(b, h, enc, kongBytes)
				var get, scrape time.Duration
				for b.Loop() {
					start := time.Now()
					getPage(b, client, up.URL, len(page))
					get += time.Since(start)
					start = time.Now()
					scrapeOnce(b, h, enc, kongBytes)
					scrape += time.Since(start)
				}
				b.ReportMetric(0, "ns/op")
				b.ReportMetric(float64(len(page))*float64(b.N)/scrape.Seconds()/1e6, "MB/s")
				b.ReportMetric(scrape.Seconds()/get.Seconds(), "x-get")
			})
		}
		up.Close()
	}
}
