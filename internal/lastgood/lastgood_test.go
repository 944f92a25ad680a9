package lastgood

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
)

// TestOffer runs sequences of contents through one Keeper: "gN" is good
// content with value N, "bN" bad content; each step lists the outcome and
// what Get returns after it.
func TestOffer(t *testing.T) {
	tests := []struct {
		name  string
		steps []string // "key outcome value-or-error"
	}{
		{"good, then the same", []string{"g1 loaded 1", "g1 kept 1"}},
		{"good, bad, bad, good again, bad", []string{"g1 loaded 1", "b1 rejected 1", "b1 repeated 1", "g1 kept 1", "b1 rejected 1"}},
		{"bad before any good", []string{"b1 rejected err:b1", "b1 repeated err:b1", "b2 rejected err:b2", "g3 loaded 3"}},
		{"two bad in turn are news each time", []string{"g1 loaded 1", "b1 rejected 1", "b2 rejected 1", "b1 rejected 1"}},
		{"a new good replaces", []string{"g1 loaded 1", "g2 loaded 2", "g1 loaded 1"}},
		{"empty keys are always loaded", []string{" loaded 0", " loaded 0"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var k Keeper[int]
			if v, err := k.Get(); v != 0 || err != nil || k.Has() {
				t.Fatalf("empty Keeper: Get() = %v, %v; Has() = %v", v, err, k.Has())
			}
			loads := 0
			for i, step := range tc.steps {
				f := strings.Split(step, " ")
				key, want, wantGet := f[0], f[1], f[2]
				out, err := k.Offer(key, func() (int, error) {
					loads++
					if strings.HasPrefix(key, "b") {
						return 0, errors.New(key)
					}
					var n int
					_, _ = fmt.Sscan(strings.TrimPrefix(key, "g"), &n)
					return n, nil
				})
				if out.String() != want {
					t.Errorf("step %d (%s): outcome %v, want %s", i, key, out, want)
				}
				if (err != nil) != strings.HasPrefix(key, "b") || err != nil && err.Error() != key {
					t.Errorf("step %d (%s): error %v", i, key, err)
				}
				v, err := k.Get()
				got := fmt.Sprint(v)
				if err != nil {
					got = "err:" + err.Error()
				}
				if got != wantGet {
					t.Errorf("step %d (%s): Get() = %s, want %s", i, key, got, wantGet)
				}
				if k.Has() != !strings.HasPrefix(wantGet, "err:") {
					t.Errorf("step %d (%s): Has() = %v", i, key, k.Has())
				}
			}
			// Kept and Repeated never load.
			wantLoads := 0
			for _, step := range tc.steps {
				if o := strings.Split(step, " ")[1]; o == "loaded" || o == "rejected" {
					wantLoads++
				}
			}
			if loads != wantLoads {
				t.Errorf("%d loads, want %d", loads, wantLoads)
			}
		})
	}
}

// TestConcurrentGet: Get runs beside Offer (go test -race checks it).
func TestConcurrentGet(t *testing.T) {
	var k Keeper[*int]
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range 1000 {
			_, _ = k.Offer(fmt.Sprint(i), func() (*int, error) { return &i, nil })
		}
	})
	for range 1000 {
		if v, _ := k.Get(); v != nil && *v < 0 {
			t.Error("impossible")
		}
	}
	wg.Wait()
	if v, _ := k.Get(); v == nil || *v != 999 {
		t.Errorf("Get() = %v, want 999", v)
	}
}
