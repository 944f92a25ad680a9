package proxy_test

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/proxy"
)

func TestLimitConcurrency(t *testing.T) {
	const limit = 3
	entered, release := make(chan struct{}), make(chan struct{})
	h := proxy.LimitConcurrency(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-release
	}), limit)
	var wg sync.WaitGroup
	codes := make(chan int, limit)
	for range limit {
		wg.Go(func() {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
			codes <- rec.Code
		})
		<-entered
	}
	// All slots are taken: the next request is turned away at once.
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
		t.Errorf("over the limit: %d %v, want 503 with Retry-After", rec.Code, rec.Header())
	}
	close(release)
	wg.Wait()
	close(codes)
	for code := range codes {
		if code != http.StatusOK {
			t.Errorf("a request within the limit got %d", code)
		}
	}
	// A freed slot is taken again.
	release = make(chan struct{})
	close(release)
	go func() { <-entered }()
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Errorf("after the others finished: %d, want 200", rec.Code)
	}
}
