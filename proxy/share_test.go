package proxy_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/proxy"
	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/relabel"
)

// TestMinFetchInterval: within the interval, scrapes are answered from the
// last fetch, for the configuration it was made for only.
func TestMinFetchInterval(t *testing.T) {
	up := newUpstream(t, serveKong(readFixture(t)))
	var current atomic.Pointer[relabel.Rewriter]
	current.Store(commandLatency())
	h := newHandler(t, proxy.Options{UpstreamURL: up.URL, Rewriter: current.Load, MinFetchInterval: time.Hour})

	var first []byte
	for i, header := range []http.Header{nil, {"Accept-Encoding": {"gzip"}}, nil} {
		s := scrape(t, h, header)
		if i == 0 {
			checkGolden(t, s.kong)
			first = s.kong
		} else {
			sameKong(t, fmt.Sprintf("scrape %d, answered from the first one's fetch", i), s.kong, first)
		}
		s.checkUp(t, 1, nil)
		if got := s.value(t, ownPrefix+"upstream_fetches_total"); got != 1 {
			t.Errorf("scrape %d: upstream_fetches_total = %v, want 1", i, got)
		}
	}
	if n := up.requests.Load(); n != 1 {
		t.Errorf("3 scrapes within the interval made %d upstream requests, want 1", n)
	}

	// A new configuration is never answered from the old one's fetch.
	current.Store(billingBandwidth())
	s := scrape(t, h, nil)
	if lines := kongLines(s.kong); len(lines) == 0 || !bytes.Contains([]byte(lines[len(lines)-1]), []byte("kong_bandwidth_bytes")) {
		t.Errorf("after a configuration change: Kong part\n%s\nwant billing's bandwidth", s.kong)
	}
	if n := up.requests.Load(); n != 2 {
		t.Errorf("upstream requests %d after a configuration change, want 2", n)
	}
}

// TestMinFetchIntervalExpires: a result is never older than the interval.
func TestMinFetchIntervalExpires(t *testing.T) {
	up := newUpstream(t, serveKong(readFixture(t)))
	const interval = 50 * time.Millisecond
	h := newHandler(t, proxy.Options{UpstreamURL: up.URL, MinFetchInterval: interval})
	scrape(t, h, nil)
	time.Sleep(2 * interval)
	s := scrape(t, h, nil)
	checkGolden(t, s.kong)
	if n := up.requests.Load(); n != 2 {
		t.Errorf("%d upstream requests for two scrapes an interval apart, want 2", n)
	}
}

// TestMinFetchIntervalFailure: a failed fetch is never reused, and the
// good result before it is not served after it.
func TestMinFetchIntervalFailure(t *testing.T) {
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

	failing.Store(true)
	for _, header := range []http.Header{nil, {"Accept-Encoding": {"gzip"}}} {
		s := scrape(t, h, header)
		s.checkNoKong(t)
	}
	if n := up.requests.Load(); n != 2 {
		t.Errorf("%d upstream requests for two scrapes after failures, want 2", n)
	}
	failing.Store(false)
	good := scrape(t, h, nil)
	checkGolden(t, good.kong)

	// A configuration change makes the next scrape fetch; when that fails,
	// the scrape after it fetches again rather than reuse anything.
	current.Store(commandLatency())
	failing.Store(true)
	scrape(t, h, nil).checkNoKong(t)
	scrape(t, h, nil).checkNoKong(t)
	if n := up.requests.Load(); n != 5 {
		t.Errorf("%d upstream requests, want 5", n)
	}
}

// TestConcurrentScrapesWithInterval: 50 concurrent scrapes, and more
// after them within the interval, cost Kong one fetch.
func TestConcurrentScrapesWithInterval(t *testing.T) {
	up := newUpstream(t, serveKong(readFixture(t)))
	h := newHandler(t, proxy.Options{UpstreamURL: up.URL, MinFetchInterval: time.Hour})
	const n = 50
	bodies := make([][]byte, 2*n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { bodies[i] = serve(h, http.MethodGet, "/metrics", nil).Body.Bytes() })
	}
	wg.Wait()
	for i := n; i < 2*n; i++ {
		bodies[i] = serve(h, http.MethodGet, "/metrics", nil).Body.Bytes()
	}
	if got := up.requests.Load(); got != 1 {
		t.Errorf("%d scrapes made %d upstream requests, want 1", 2*n, got)
	}
	for i, body := range bodies {
		if kong := splitKong(t, body); !bytes.Equal(kong, bodies[0][:len(kong)]) {
			t.Fatalf("scrape %d got a different Kong part", i)
		}
	}
}

// TestLargeResultHeldCompressed: a rewrite over the plain limit is held
// compressed, and answers byte for byte as a small one does, plain or
// gzip, as one gzip member.
func TestLargeResultHeldCompressed(t *testing.T) {
	up := newUpstream(t, serveKong(readFixture(t)))
	small := plainKong(t) // held plain: under the default limit
	for _, limit := range []int{0, 1 << 10} {
		t.Run(fmt.Sprintf("limit=%d", limit), func(t *testing.T) {
			h := newHandler(t, proxy.Options{UpstreamURL: up.URL})
			proxy.SetPlainLimit(h, limit)

			plain := scrape(t, h, nil)
			checkGolden(t, plain.kong)
			sameKong(t, "plain answer from a result held compressed", plain.kong, small)

			rec := serve(h, http.MethodGet, "/metrics", http.Header{"Accept-Encoding": {"gzip"}})
			zipped := checkAnswer(t, rec)
			sameKong(t, "gzip answer from a result held compressed", zipped.kong, small)
			checkOneMember(t, rec.Body.Bytes())
		})
	}
}

// checkOneMember checks that b is exactly one gzip member whose trailer
// matches its content.
func checkOneMember(t *testing.T, b []byte) {
	t.Helper()
	br := bufio.NewReader(bytes.NewReader(b))
	zr, err := gzip.NewReader(br)
	if err != nil {
		t.Fatal(err)
	}
	zr.Multistream(false)
	if _, err := io.Copy(io.Discard, zr); err != nil {
		t.Fatalf("reading the gzip member (checksum and size included): %v", err)
	}
	if rest, _ := io.ReadAll(br); len(rest) > 0 {
		t.Errorf("%d bytes after the first gzip member", len(rest))
	}
}
