package proxy

import (
	"context"
	"net/http"
	"sync"
)

// LimitConcurrency serves at most n requests of h at once; the others get
// 503 Service Unavailable with Retry-After at once instead of queueing, so
// a flood of scrapers cannot pile up goroutines and memory in a Kong pod.
// Scrapes share one upstream fetch anyway, so a small n loses nothing.
//
// A request holds its slot while its answer is made, not while it is
// written: the Handler gives the slot back once the answer is ready
// (releaseSlot), so clients that read slowly or not at all cannot keep
// every slot from a scraper; the server's write timeout ends them.
func LimitConcurrency(h http.Handler, n int) http.Handler {
	slots := make(chan struct{}, n)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case slots <- struct{}{}:
			var once sync.Once
			release := func() { once.Do(func() { <-slots }) }
			defer release()
			h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), slotKey{}, release)))
		default:
			w.Header().Set("Retry-After", "1")
			http.Error(w, "too many concurrent scrapes", http.StatusServiceUnavailable)
		}
	})
}

// slotKey is the context key of the function that gives back a request's
// LimitConcurrency slot.
type slotKey struct{}

// releaseSlot gives back r's LimitConcurrency slot, if it has one, once its
// answer is ready and only the writing remains.
func releaseSlot(r *http.Request) {
	if release, ok := r.Context().Value(slotKey{}).(func()); ok {
		release()
	}
}
