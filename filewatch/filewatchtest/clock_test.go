package filewatchtest_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/filewatch/filewatchtest"
)

// TestAdvanceWaitsForWork runs a loop shaped as Watcher.Run's: each tick
// reads the time and re-arms a timer, each timer value does the same. One
// Advance must fire every value that falls due by its end, timers armed
// during it included, and return only once the work of the last is done;
// the work must read the time its value was sent at.
func TestAdvanceWaitsForWork(t *testing.T) {
	t0 := time.Unix(1e9, 0)
	clock := filewatchtest.NewClock(t0)
	timer, ticker := clock.NewTimer(), clock.NewTicker(5*time.Second)
	var (
		mu   sync.Mutex
		work []string // "timer" or "tick", with the time read, per value
	)
	record := func(what string, sent time.Time) {
		mu.Lock()
		defer mu.Unlock()
		work = append(work, what+" sent "+sent.Sub(t0).String()+" read "+clock.Now().Sub(t0).String())
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	timer.Reset(time.Second)
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case at := <-timer.C():
				record("timer", at)
				if at.Sub(t0) < 3*time.Second {
					timer.Reset(time.Second)
				}
			case at := <-ticker.C():
				record("tick", at)
				timer.Reset(time.Second)
			}
		}
	}()
	defer func() { cancel(); <-done }()

	clock.Advance(6 * time.Second)
	mu.Lock()
	got := work
	mu.Unlock()
	want := []string{
		"timer sent 1s read 1s", "timer sent 2s read 2s", "timer sent 3s read 3s",
		"tick sent 5s read 5s", "timer sent 6s read 6s",
	}
	if len(got) != len(want) {
		t.Fatalf("work done when Advance returned:\n%q\nwant\n%q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("value %d: %s, want %s", i, got[i], want[i])
		}
	}
	if now := clock.Now().Sub(t0); now != 6*time.Second {
		t.Errorf("Now() = %s after Advance, want 6s", now)
	}
}
