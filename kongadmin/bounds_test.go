package kongadmin

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

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

// TestRefreshBounded: an Admin API that answers one enormous page, or
// pages of new services without end, makes the refresh fail (kind decode)
// after a bounded read, not after holding all of it.
func TestRefreshBounded(t *testing.T) {
	service := func(page, i int) string {
		return fmt.Sprintf(`{"name":"route-%d-%d-%s","tags":["k8s-kind:Service","k8s-namespace:kong","k8s-name:svc"]}`, page, i, strings.Repeat("x", 40))
	}
	tests := map[string]http.HandlerFunc{
		"one 10 MB page": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"data":[`)
			for i := range 100000 {
				if i > 0 {
					fmt.Fprint(w, ",")
				}
				fmt.Fprint(w, service(0, i))
			}
			fmt.Fprint(w, `],"next":null}`)
		},
		"pages without end": func(w http.ResponseWriter, r *http.Request) {
			page, _ := strconv.Atoi(r.URL.Query().Get("offset"))
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"data":[`)
			for i := range 1000 {
				if i > 0 {
					fmt.Fprint(w, ",")
				}
				fmt.Fprint(w, service(page, i))
			}
			// The test's own end, so that a client without a bound
			// still returns: 100,000 services.
			if page == 99 {
				fmt.Fprint(w, `],"next":null}`)
				return
			}
			fmt.Fprintf(w, `],"next":"/services?offset=%d","offset":"%d"}`, page+1, page+1)
		},
	}
	for name, h := range tests {
		t.Run(name, func(t *testing.T) {
			srv := httptest.NewServer(h)
			defer srv.Close()
			c, err := NewClient(ClientOptions{URL: srv.URL})
			if err != nil {
				t.Fatal(err)
			}
			var tags map[string]any
			allocated := allocatedDuring(func() {
				var got map[string]any
				m, e := c.Services(t.Context())
				if m != nil {
					got = map[string]any{"n": len(m)}
				}
				tags, err = got, e
			})
			t.Logf("%d MiB allocated", allocated>>20)
			checkKind(t, err, KindDecode)
			if tags != nil {
				t.Errorf("a mapping of %v services", tags["n"])
			}
			if allocated > 96<<20 {
				t.Errorf("the refresh allocated %d MiB, want at most 96 MiB", allocated>>20)
			}
		})
	}
}
