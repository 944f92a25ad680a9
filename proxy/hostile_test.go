package proxy_test

import (
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/proxy"
	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/relabel"
)

// TestRedirectNotFollowed: a redirect from Kong's status endpoint is a
// failed fetch (status): the page it points at, on another host, is never
// fetched, neither for /metrics nor for /metrics/kong.
func TestRedirectNotFollowed(t *testing.T) {
	elsewhere := newUpstream(t, serveKong(readFixture(t)))
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, elsewhere.URL+"/metrics", http.StatusFound)
	})
	h := newHandler(t, proxy.Options{UpstreamURL: up.URL})
	s := scrape(t, h, nil)
	s.checkNoKong(t)
	s.checkUp(t, 0, map[string]float64{"status": 1})
	if rec, body := getKongPage(t, h, nil); rec.code != http.StatusBadGateway {
		t.Errorf("/metrics/kong after a redirect: status %d, want 502; body:\n%.300s", rec.code, body)
	}
	if n := elsewhere.requests.Load(); n != 0 {
		t.Errorf("the redirect's target got %d requests, want none", n)
	}
}

// TestLargestLimit: the largest limit reads the page; it used to overflow
// the reader's count and serve nothing with upstream_up 1.
func TestLargestLimit(t *testing.T) {
	up := newUpstream(t, serveKong(readFixture(t)))
	s := scrape(t, newHandler(t, proxy.Options{UpstreamURL: up.URL, MaxUpstreamBytes: math.MaxInt64}), nil)
	s.checkUp(t, 1, nil)
	sameKong(t, "the largest limit", s.kong, plainKong(t))
}

// TestShortDeadlineEndsOnlyItsOwnWait: a scraper with a short
// X-Prometheus-Scrape-Timeout-Seconds starts the fetch; another joins it.
// The short one's timeout ends its own wait only: the fetch goes on under
// the sidecar's timeout and the other scraper gets Kong's series.
func TestShortDeadlineEndsOnlyItsOwnWait(t *testing.T) {
	arrived, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		once.Do(func() { close(arrived) })
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		serveKong(readFixture(t))(w, r)
	})
	h := newHandler(t, proxy.Options{UpstreamURL: up.URL})
	short := make(chan *httptest.ResponseRecorder, 1)
	go func() {
		short <- serve(h, http.MethodGet, "/metrics", http.Header{"X-Prometheus-Scrape-Timeout-Seconds": {"0.1"}})
	}()
	<-arrived
	long := make(chan *httptest.ResponseRecorder, 1)
	go func() { long <- serve(h, http.MethodGet, "/metrics", nil) }()
	waitForScrapes(2) // both wait for the one fetch
	s := checkAnswer(t, <-short)
	s.checkNoKong(t)
	close(release)
	l := checkAnswer(t, <-long)
	sameKong(t, "the scrape that joined", l.kong, plainKong(t))
	l.checkUp(t, 1, nil)
	if n := up.requests.Load(); n != 1 {
		t.Errorf("%d upstream requests, want 1", n)
	}
}

// TestStalledClientsLeaveSlots: clients that ask for a large answer and
// stop reading it once it starts do not keep the slots of LimitConcurrency:
// a scraper after them is served, not turned away with 503.
func TestStalledClientsLeaveSlots(t *testing.T) {
	const slots = 2
	const routes = 1000 // a rewrite of about 13 MB: more than the socket buffers hold
	up := newUpstream(t, serveKong(simPage(t, routes)))
	rw := relabel.New(pageSelection(routes, 0))
	h := newHandler(t, proxy.Options{UpstreamURL: up.URL, MaxUpstreamBytes: 1 << 30, MinFetchInterval: time.Hour,
		Rewriter: func() *relabel.Rewriter { return rw }})
	srv := httptest.NewServer(proxy.NewMux(proxy.LimitConcurrency(h, slots)))
	defer srv.Close()
	for range slots {
		c, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.(*net.TCPConn).SetReadBuffer(4096); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(c, "GET /metrics HTTP/1.1\r\nHost: sidecar\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		// The answer has started: the handler writes it. Read no more.
		status := make([]byte, len("HTTP/1.1 200"))
		if _, err := io.ReadFull(c, status); err != nil || string(status) != "HTTP/1.1 200" {
			t.Fatalf("stalled client: %q, %v", status, err)
		}
	}
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	n, _ := io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Errorf("a scraper after %d stalled clients: status %d, want 200", slots, resp.StatusCode)
	}
	if n < 4<<20 {
		t.Errorf("the answer has %d bytes; the test needs one larger than the socket buffers", n)
	}
}

// endlessKeptPage answers with a page that never ends, of lines the
// selection keeps whose route values are random: DEFLATE gains little on
// them, so what the handler holds grows with what it reads.
func endlessKeptPage(w http.ResponseWriter, r *http.Request) {
	rng := rand.New(rand.NewPCG(1, 2))
	var block []byte
	for len(block) < 1<<20 {
		block = fmt.Appendf(block, "kong_http_requests_total{service=\"kong.command.80\",route=\"%016x%016x\",code=\"200\",source=\"service\",workspace=\"default\",consumer=\"\"} 1\n", rng.Uint64(), rng.Uint64())
	}
	w.Header().Set("Content-Type", kongContentType)
	for r.Context().Err() == nil {
		if _, err := w.Write(block); err != nil {
			return
		}
	}
}

// TestHeldAnswersBounded: an endless page of kept, barely compressible
// lines fails as too_large once an answer's compressed bytes pass the
// handler's bound, for /metrics and with Kong's page kept too; what the
// fetch allocated (an upper bound of its peak heap) stays near that bound,
// not near SIDECAR_MAX_UPSTREAM_BYTES.
func TestHeldAnswersBounded(t *testing.T) {
	const held = 1 << 20
	rw := relabel.New(relabel.Selection{Services: map[relabel.Service]relabel.Metrics{command: relabel.StatusCode}})
	for _, keepPage := range []bool{false, true} {
		t.Run(fmt.Sprintf("page kept %v", keepPage), func(t *testing.T) {
			var endless atomic.Bool
			up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
				if endless.Load() {
					endlessKeptPage(w, r)
					return
				}
				serveKong(readFixture(t))(w, r)
			})
			h := newHandler(t, proxy.Options{UpstreamURL: up.URL, MaxUpstreamBytes: 512 << 20,
				Rewriter: func() *relabel.Rewriter { return rw }})
			proxy.SetMaxHeld(h, held)
			proxy.SetPlainLimit(h, 256<<10) // compress early: less to read before the bound
			if keepPage {
				if rec, _ := getKongPage(t, h, nil); rec.code != http.StatusOK {
					t.Fatalf("/metrics/kong: %d", rec.code)
				}
			}
			endless.Store(true)
			var s scraped
			allocated := allocatedDuring(func() { s = scrape(t, h, nil) })
			t.Logf("%d MiB allocated", allocated>>20)
			s.checkNoKong(t)
			s.checkUp(t, 0, map[string]float64{"too_large": 1})
			// The read buffers, the plain part before compression and
			// both answers' bounds, with room: not the 512 MiB limit.
			if limit := uint64(64 << 20); allocated > limit {
				t.Errorf("the fetch allocated %d MiB, want at most %d MiB", allocated>>20, limit>>20)
			}
		})
	}
}

// allocatedDuring returns what f allocates: an upper bound of the heap
// it can have held at its peak.
func allocatedDuring(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}
