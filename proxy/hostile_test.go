package proxy_test

import (
	"math"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/proxy"
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
