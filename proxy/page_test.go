package proxy_test

import (
	"bytes"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/golden"
	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/proxy"
	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/relabel"
)

// getKongPage GETs Kong's page from h (through the sidecar's mux, as a
// scraper would) and returns the answer, decompressed when it came gzipped.
func getKongPage(t *testing.T, h *proxy.Handler, header http.Header) (rec *responseOf, body []byte) {
	t.Helper()
	r := serve(proxy.NewMux(h), http.MethodGet, proxy.KongPagePath, header)
	body = r.Body.Bytes()
	if r.Header().Get("Content-Encoding") == "gzip" {
		checkOneMember(t, body)
		body = gunzip(t, body)
	}
	return &responseOf{code: r.Code, header: r.Header()}, body
}

// responseOf is an answer's status and header.
type responseOf struct {
	code   int
	header http.Header
}

// checkPage fails t unless the answer is 200 with Kong's page, want, byte
// for byte, and the Content-Type wantType.
func checkPage(t *testing.T, what string, rec *responseOf, body, want []byte, wantType string) {
	t.Helper()
	if rec.code != http.StatusOK {
		t.Fatalf("%s: status %d, want 200; body:\n%.500s", what, rec.code, body)
	}
	if ct := rec.header.Get("Content-Type"); ct != wantType {
		t.Errorf("%s: Content-Type %q, want %q", what, ct, wantType)
	}
	if !slices.Contains(rec.header.Values("Vary"), "Accept-Encoding") {
		t.Errorf("%s: Vary %q lacks Accept-Encoding", what, rec.header.Values("Vary"))
	}
	if !bytes.Equal(body, want) {
		t.Errorf("%s: not Kong's page byte for byte (%d bytes, Kong's %d):\n%s", what, len(body), len(want), golden.FirstDiff(want, body))
	}
}

// TestKongPage: /metrics/kong serves Kong's page byte for byte, with
// Kong's Content-Type, plain or gzip, whatever the page looks like; the
// configuration does not touch it.
func TestKongPage(t *testing.T) {
	fixture := readFixture(t)
	crlf := bytes.ReplaceAll(fixture, []byte("\n"), []byte("\r\n"))
	// A line over the rewriter's 1 MiB limit and no final newline: /metrics
	// drops the line, the page keeps it as Kong wrote it.
	long := append(bytes.Clone(fixture), []byte(`kong_nginx_metric_errors_total{x="`+strings.Repeat("x", maxLineBytes+1)+`"} 0`)...)
	large := simPage(t, 200) // about 1.9 MB: many DEFLATE chunks
	tests := []struct {
		name     string
		serve    http.HandlerFunc
		page     []byte // what Kong sent, uncompressed
		wantType string
		maxBytes int64
	}{
		{name: "Kong's page", serve: serveKong(fixture), page: fixture, wantType: kongContentType},
		{name: "200-route page", serve: serveKong(large), page: large, wantType: kongContentType, maxBytes: int64(len(large))},
		{name: "page exactly MaxUpstreamBytes long", serve: serveKong(fixture), page: fixture, wantType: kongContentType, maxBytes: int64(len(fixture))},
		{name: "CRLF line ends", serve: serveKong(crlf), page: crlf, wantType: kongContentType},
		{name: "a line over 1 MiB, no final newline", serve: serveKong(long), page: long, wantType: kongContentType},
		{
			name: "another text/plain Content-Type",
			serve: func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "text/plain; version=0.0.4")
				writeChunked(w, fixture)
			},
			page: fixture, wantType: "text/plain; version=0.0.4",
		},
		{
			name: "no Content-Type",
			serve: func(w http.ResponseWriter, _ *http.Request) {
				w.Header()["Content-Type"] = nil // or Go's server would sniff one
				w.Write(fixture)
			},
			page: fixture, wantType: proxy.ContentType,
		},
		{
			name: "gzip from a proxy in between",
			serve: func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", kongContentType)
				w.Header().Set("Content-Encoding", "gzip")
				writeChunked(w, gzipBytes(t, fixture))
			},
			page: fixture, wantType: kongContentType,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			up := newUpstream(t, tc.serve)
			var current atomic.Pointer[relabel.Rewriter]
			current.Store(commandLatency())
			h := newHandler(t, proxy.Options{UpstreamURL: up.URL, MaxUpstreamBytes: tc.maxBytes, Rewriter: current.Load})
			for i, header := range []http.Header{nil, {"Accept-Encoding": {"gzip"}}, {"Accept-Encoding": {"gzip;q=0"}}} {
				if i == 2 {
					current.Store(billingBandwidth()) // the page is Kong's, whatever the configuration
				}
				rec, body := getKongPage(t, h, header)
				checkPage(t, fmt.Sprintf("answer %d (Accept-Encoding %q)", i, header.Get("Accept-Encoding")), rec, body, tc.page, tc.wantType)
				if gz := rec.header.Get("Content-Encoding") == "gzip"; gz != (i == 1) {
					t.Errorf("answer %d: Content-Encoding %q", i, rec.header.Get("Content-Encoding"))
				}
			}
			// /metrics is unchanged beside it.
			s := scrape(t, h, nil)
			s.checkUp(t, 1, nil)
			if got := s.value(t, ownPrefix+"upstream_fetches_total"); got != 4 {
				t.Errorf("upstream_fetches_total = %v after 4 requests without MinFetchInterval, want 4", got)
			}
		})
	}
}

// TestKongPageFailures: every failure of /metrics' fetch is an error
// status for Kong's page, with a one-line reason and nothing of the page;
// the next good fetch serves the page whole, never the one before.
func TestKongPageFailures(t *testing.T) {
	fixture := readFixture(t)
	for _, tc := range failures(t, fixture) {
		t.Run(tc.name, func(t *testing.T) {
			var failing atomic.Bool
			var served atomic.Int64
			// Each good page differs from the one before, so a stale one
			// shows, and is as long as Kong's, so the limits still hold.
			page := func() []byte {
				return bytes.Replace(fixture, []byte("} 7569\n"), fmt.Appendf(nil, "} %04d\n", served.Load()), 1)
			}
			url := closedURL(t)
			if tc.serve != nil {
				url = newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
					if failing.Load() {
						tc.serve(w, r)
						return
					}
					served.Add(1)
					serveKong(page())(w, r)
				}).URL
			}
			h := newHandler(t, proxy.Options{UpstreamURL: url, MaxUpstreamBytes: tc.maxBytes})
			if tc.serve != nil {
				rec, body := getKongPage(t, h, nil)
				checkPage(t, "before the failure", rec, body, page(), kongContentType)
				failing.Store(true)
			}
			if tc.timeout != 0 {
				proxy.SetTimeout(h, tc.timeout)
			}
			for _, enc := range []string{"", "gzip"} {
				header := http.Header{}
				if enc != "" {
					header.Set("Accept-Encoding", enc)
				}
				rec := serve(proxy.NewMux(h), http.MethodGet, proxy.KongPagePath, header)
				want := http.StatusBadGateway
				if tc.reason == "timeout" {
					want = http.StatusGatewayTimeout
				}
				if rec.Code != want {
					t.Errorf("Accept-Encoding %q: status %d, want %d", enc, rec.Code, want)
				}
				if body := rec.Body.String(); body != "Kong's metrics could not be read: "+tc.reason+"\n" {
					t.Errorf("Accept-Encoding %q: body %.300q, want the reason %s alone", enc, body, tc.reason)
				}
				if ce := rec.Header().Get("Content-Encoding"); ce != "" {
					t.Errorf("Accept-Encoding %q: an error answer with Content-Encoding %q", enc, ce)
				}
			}
			s := scrape(t, h, nil)
			proxy.SetTimeout(h, time.Minute)
			s.checkNoKong(t)
			s.checkUp(t, 0, map[string]float64{tc.reason: 3})
			if tc.serve == nil {
				return
			}
			failing.Store(false)
			rec, body := getKongPage(t, h, nil)
			checkPage(t, "the good fetch after the failure", rec, body, page(), kongContentType)
		})
	}
}

// TestKongPageMinFetchInterval: within the interval both endpoints are
// answered from one fetch. Kong's page is kept from the first request for
// it on, so that request costs one fetch when the last one did not keep
// it, and none when it did.
func TestKongPageMinFetchInterval(t *testing.T) {
	fixture := readFixture(t)
	gzipped := http.Header{"Accept-Encoding": {"gzip"}}
	for _, tc := range []struct {
		name  string
		first string // the path of the first request
		want  int64  // upstream requests for all of them
	}{
		{"page first", proxy.KongPagePath, 1},
		{"metrics first", "/metrics", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := newUpstream(t, serveKong(fixture))
			h := newHandler(t, proxy.Options{UpstreamURL: up.URL, MinFetchInterval: time.Hour})
			serve(proxy.NewMux(h), http.MethodGet, tc.first, nil)
			for _, header := range []http.Header{nil, gzipped, nil} {
				rec, body := getKongPage(t, h, header)
				checkPage(t, "Kong's page", rec, body, fixture, kongContentType)
				s := scrape(t, h, header)
				sameKong(t, "/metrics from the same fetch", s.kong, plainKong(t))
				s.checkUp(t, 1, nil)
			}
			if n := up.requests.Load(); n != tc.want {
				t.Errorf("%d upstream requests, want %d", n, tc.want)
			}
		})
	}
}

// TestKongPageMinFetchIntervalFailure: a failed fetch is never reused for
// the page, and the good page before it is not served after it.
func TestKongPageMinFetchIntervalFailure(t *testing.T) {
	fixture := readFixture(t)
	var failing atomic.Bool
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if failing.Load() {
			http.Error(w, "boom", http.StatusInternalServerError)
			return
		}
		serveKong(fixture)(w, r)
	})
	var current atomic.Pointer[relabel.Rewriter]
	current.Store(commandLatency())
	h := newHandler(t, proxy.Options{UpstreamURL: up.URL, Rewriter: current.Load, MinFetchInterval: time.Hour})
	rec, body := getKongPage(t, h, nil)
	checkPage(t, "first", rec, body, fixture, kongContentType)

	// A configuration change makes /metrics fetch again; it fails, and the
	// page of the fetch before is not served after it.
	current.Store(billingBandwidth())
	failing.Store(true)
	scrape(t, h, nil).checkNoKong(t)
	for i := range 2 {
		if rec, _ := getKongPage(t, h, nil); rec.code != http.StatusBadGateway {
			t.Errorf("request %d after the failure: status %d, want 502", i, rec.code)
		}
	}
	failing.Store(false)
	rec, body = getKongPage(t, h, nil)
	checkPage(t, "after Kong is back", rec, body, fixture, kongContentType)
	if n := up.requests.Load(); n != 5 {
		t.Errorf("%d upstream requests, want 5: one per request", n)
	}
}

// TestKongPageAndMetricsShareOneFetch: concurrent scrapes of both
// endpoints wait for one fetch, which answers them all.
func TestKongPageAndMetricsShareOneFetch(t *testing.T) {
	const n = 40
	fixture := readFixture(t)
	allArrived := make(chan struct{})
	var requests atomic.Int32
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if requests.Add(1) > 1 { // the first is the warm-up
			select {
			case <-allArrived:
			case <-r.Context().Done():
				return
			}
			waitForScrapes(n)
		}
		serveKong(fixture)(w, r)
	})
	rw := commandLatency()
	var arrived atomic.Int32
	h := newHandler(t, proxy.Options{UpstreamURL: up.URL, Rewriter: func() *relabel.Rewriter {
		// Each scrape calls this once, just before it joins the fetch; the
		// warm-up is the first.
		if arrived.Add(1) == n+1 {
			close(allArrived)
		}
		return rw
	}})
	mux := proxy.NewMux(h)
	// The warm-up asks for the page once, so that fetches keep it.
	if rec, body := getKongPage(t, h, nil); rec.code != http.StatusOK || !bytes.Equal(body, fixture) {
		t.Fatalf("warm-up: status %d, %d bytes", rec.code, len(body))
	}

	answers := make([]*responseOf, n)
	bodies := make([][]byte, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			path := "/metrics"
			if i%2 == 0 {
				path = proxy.KongPagePath
			}
			var header http.Header
			if i%4 < 2 {
				header = http.Header{"Accept-Encoding": {"gzip"}}
			}
			rec := serve(mux, http.MethodGet, path, header)
			answers[i], bodies[i] = &responseOf{code: rec.Code, header: rec.Header()}, rec.Body.Bytes()
		})
	}
	wg.Wait()

	if got := up.requests.Load(); got != 2 {
		t.Errorf("%d concurrent scrapes of both endpoints made %d upstream requests after the warm-up's, want 1", n, got-1)
	}
	want := plainKong(t)
	for i := range n {
		body := bodies[i]
		if answers[i].header.Get("Content-Encoding") == "gzip" {
			body = gunzip(t, body)
		}
		if i%2 == 0 {
			checkPage(t, fmt.Sprintf("scrape %d of the page", i), answers[i], body, fixture, kongContentType)
			continue
		}
		sameKong(t, fmt.Sprintf("scrape %d of /metrics", i), splitKong(t, body), want)
	}
}

// TestKongPageMethods: the page takes GET and HEAD only; HEAD fetches and
// answers with the page's headers and no body.
func TestKongPageMethods(t *testing.T) {
	up := newUpstream(t, serveKong(readFixture(t)))
	mux := proxy.NewMux(newHandler(t, proxy.Options{UpstreamURL: up.URL}))
	for _, method := range []string{http.MethodPost, http.MethodPut, http.MethodDelete} {
		if rec := serve(mux, method, proxy.KongPagePath, nil); rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != "GET, HEAD" {
			t.Errorf("%s: status %d, Allow %q; want 405 with GET, HEAD", method, rec.Code, rec.Header().Get("Allow"))
		}
	}
	if n := up.requests.Load(); n != 0 {
		t.Errorf("refused methods made %d upstream requests", n)
	}
	rec := serve(mux, http.MethodHead, proxy.KongPagePath, http.Header{"Accept-Encoding": {"gzip"}})
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != kongContentType || rec.Header().Get("Content-Encoding") != "gzip" || rec.Body.Len() != 0 {
		t.Errorf("HEAD: %d, Content-Type %q, Content-Encoding %q, %d-byte body; want 200, Kong's type, gzip, none",
			rec.Code, rec.Header().Get("Content-Type"), rec.Header().Get("Content-Encoding"), rec.Body.Len())
	}
	if rec := serve(mux, http.MethodGet, proxy.KongPagePath+"/", nil); rec.Code != http.StatusNotFound {
		t.Errorf("GET %s/: status %d, want 404", proxy.KongPagePath, rec.Code)
	}
}
