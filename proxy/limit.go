package proxy

import "net/http"

// LimitConcurrency serves at most n requests of h at once; the others get
// 503 Service Unavailable with Retry-After at once instead of queueing, so
// a flood of scrapers cannot pile up goroutines and memory in a Kong pod.
// Scrapes share one upstream fetch anyway, so a small n loses nothing.
func LimitConcurrency(h http.Handler, n int) http.Handler {
	slots := make(chan struct{}, n)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case slots <- struct{}{}:
			defer func() { <-slots }()
			h.ServeHTTP(w, r)
		default:
			w.Header().Set("Retry-After", "1")
			http.Error(w, "too many concurrent scrapes", http.StatusServiceUnavailable)
		}
	})
}
