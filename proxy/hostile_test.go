package proxy_test

import (
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"time"
	"testing"

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
