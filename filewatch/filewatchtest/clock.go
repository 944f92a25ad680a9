// Package filewatchtest provides a fake filewatch.Clock, so that tests of
// a filewatch user drive its debounce, settle check and poll by moving time
// rather than by waiting for it.
package filewatchtest

import (
	"sync"
	"time"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/filewatch"
)

// sendTimeout bounds how long Advance waits for a Watcher to take a timer's
// value; it only turns a hang into a test failure.
const sendTimeout = 10 * time.Second

// Clock is a filewatch.Clock whose time moves only with Advance. Its
// methods are safe for concurrent use.
type Clock struct {
	mu      sync.Mutex // Protects now and waiters.
	now     time.Time
	waiters []*waiter
	armed   chan time.Duration
}

// NewClock returns a Clock that starts at now.
func NewClock(now time.Time) *Clock {
	return &Clock{now: now, armed: make(chan time.Duration, 1024)}
}

// waiter is a Timer or a Ticker.
type waiter struct {
	c      *Clock
	ch     chan time.Time // unbuffered: Advance returns once the value is taken
	at     time.Time      // when it fires next; zero when stopped
	period time.Duration  // a Ticker's; 0 for a Timer
}

// Now is the Clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// NewTimer returns a stopped Timer.
func (c *Clock) NewTimer() filewatch.Timer {
	return c.add(&waiter{c: c, ch: make(chan time.Time)})
}

// NewTicker returns a Ticker that ticks every d.
func (c *Clock) NewTicker(d time.Duration) filewatch.Ticker {
	c.mu.Lock()
	at := c.now.Add(d)
	c.mu.Unlock()
	return c.add(&waiter{c: c, ch: make(chan time.Time), at: at, period: d})
}

func (c *Clock) add(w *waiter) *waiter {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.waiters = append(c.waiters, w)
	return w
}

// Armed delivers the duration of every Timer.Reset, in order, so that a
// test can wait for the Watcher to have armed its debounce or settle timer
// (and check for how long) before it moves time on.
func (c *Clock) Armed() <-chan time.Duration { return c.armed }

// Advance moves the time forward by d, firing in time order each timer and
// tick that falls due. Each value is sent unbuffered, so Advance returns
// only once the Watcher has taken the last one; since a Watcher takes a
// value only between two pieces of work, the next Advance (or a
// Watcher.Reload) returns only once that work is done. A timer the Watcher
// arms while Advance runs fires in the same Advance when it falls due by
// its end: tests that want to see each step advance to just before it.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	end := c.now.Add(d)
	c.mu.Unlock()
	for {
		c.mu.Lock()
		var next *waiter
		for _, w := range c.waiters {
			if !w.at.IsZero() && !w.at.After(end) && (next == nil || w.at.Before(next.at)) {
				next = w
			}
		}
		if next == nil {
			c.now = end
			c.mu.Unlock()
			return
		}
		c.now = next.at
		now := c.now
		if next.period > 0 {
			next.at = next.at.Add(next.period)
		} else {
			next.at = time.Time{}
		}
		c.mu.Unlock()
		select {
		case next.ch <- now:
		case <-time.After(sendTimeout):
		}
	}
}

func (w *waiter) C() <-chan time.Time { return w.ch }

// Reset arms a Timer to fire d from now.
func (w *waiter) Reset(d time.Duration) {
	w.c.mu.Lock()
	w.at = w.c.now.Add(d)
	w.c.mu.Unlock()
	select {
	case w.c.armed <- d:
	default:
	}
}

// Stop stops a Timer or a Ticker.
func (w *waiter) Stop() {
	w.c.mu.Lock()
	defer w.c.mu.Unlock()
	w.at = time.Time{}
}
