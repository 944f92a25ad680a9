package relabel

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
)

// TestNameCacheBoundedUnderChurn: Kong names that change from page to page
// (route churn), long ones, do not grow what a Rewriter holds past its
// cache's bound: the live heap with the Rewriter kept, after a GC, stays
// near it however many pages pass (the generations before are garbage).
func TestNameCacheBoundedUnderChurn(t *testing.T) {
	rw := New(Selection{Services: map[Service]Metrics{command: ^Metrics(0)}})
	var base runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&base)
	filler := strings.Repeat("x", 4000)
	for page := range 6 {
		var b strings.Builder
		for i := range 1000 {
			fmt.Fprintf(&b, "kong_http_requests_total{service=\"default.svc-%d-%d-%s.80\",route=\"r\",code=\"200\"} 1\n", page, i, filler)
		}
		rewriteAll(rw, []byte(b.String()))
	}
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	held := int64(after.HeapAlloc) - int64(base.HeapAlloc)
	t.Logf("6,000 names of 4 KB over 6 pages: %d MiB held", held>>20)
	if limit := int64(maxCachedBytes + 4<<20); held > limit {
		t.Errorf("the Rewriter holds %d MiB after the churn, want at most %d MiB", held>>20, limit>>20)
	}
	runtime.KeepAlive(rw)
}

// TestNameCacheBoundedOnOnePage: one page with more distinct names than the
// cache takes leaves no more held than the bound, neither in the cache nor
// through the targets' next links.
func TestNameCacheBoundedOnOnePage(t *testing.T) {
	rw := New(Selection{Services: map[Service]Metrics{command: ^Metrics(0)}})
	var b strings.Builder
	for i := range 2 * maxCachedTargets {
		fmt.Fprintf(&b, "kong_http_requests_total{service=\"default.svc-%d-%s.80\",route=\"r\",code=\"200\"} 1\n", i, strings.Repeat("y", 100))
	}
	page := []byte(b.String())
	var base runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&base)
	rewriteAll(rw, page)
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	held := int64(after.HeapAlloc) - int64(base.HeapAlloc)
	t.Logf("%d names on one page: %d MiB held", 2*maxCachedTargets, held>>20)
	// Once the page is done only the last generation is reachable.
	if limit := int64(maxCachedBytes + 4<<20); held > limit {
		t.Errorf("the Rewriter holds %d MiB after the page, want at most %d MiB", held>>20, limit>>20)
	}
	runtime.KeepAlive(rw)
	runtime.KeepAlive(page)
}
