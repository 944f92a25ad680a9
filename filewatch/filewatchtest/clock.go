// Package filewatchtest provides a fake filewatch.Clock, so that tests of
// a filewatch user drive its debounce, settle check and poll by moving time
// rather than by waiting for it.
package filewatchtest

import (
	"sync"
	"time"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/filewatch"
)

// sendTimeout bounds how long Advance waits for a Watcher to take a value
// and to wait again; past it Advance goes on, and a hang shows as the
// test's failure to see what the Watcher did not do.
const sendTimeout = 10 * time.Second

// Clock is a filewatch.Clock whose time moves only with Advance. Its
// methods are safe for concurrent use.
//
// Advance relies on what Watcher.Run does: it waits on its timer and
// ticker in a select, calling C each time it waits. Each call of C returns
// a new channel, so a call after a value was taken is the sign that the
// work the value started is done.
type Clock struct {
	mu      sync.Mutex // Protects now, waiters and each waiter's at, cur and renewed.
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
	c       *Clock
	cur     chan time.Time // the channel the last C returned; unbuffered
	renewed chan struct{}  // closed when C replaces cur
	at      time.Time      // when it fires next; zero when stopped
	period  time.Duration  // a Ticker's; 0 for a Timer
}

// Now is the Clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// NewTimer returns a stopped Timer.
func (c *Clock) NewTimer() filewatch.Timer {
	return c.add(&waiter{c: c})
}

// NewTicker returns a Ticker that ticks every d.
func (c *Clock) NewTicker(d time.Duration) filewatch.Ticker {
	c.mu.Lock()
	at := c.now.Add(d)
	c.mu.Unlock()
	return c.add(&waiter{c: c, at: at, period: d})
}

func (c *Clock) add(w *waiter) *waiter {
	w.cur, w.renewed = make(chan time.Time), make(chan struct{})
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
// tick that falls due. After each value is taken, it waits for the Watcher
// to wait again, so the work a value starts is done before the next value
// and before Advance returns, and that work reads the time the value was
// sent at. A timer the Watcher arms while Advance runs thus fires in the
// same Advance when it falls due by its end: tests that want to see each
// step advance to just before it.
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
		next.fire(now)
	}
}

// fire sends now on the channel the Watcher waits on, and returns once it
// waits again, or after sendTimeout.
func (w *waiter) fire(now time.Time) {
	timeout := time.After(sendTimeout)
	for {
		w.c.mu.Lock()
		ch, renewed := w.cur, w.renewed
		w.c.mu.Unlock()
		select {
		case ch <- now:
		case <-renewed: // the Watcher waits on a new channel
			continue
		case <-timeout:
			return
		}
		// renewed is closed once the Watcher waits again, after the work.
		select {
		case <-renewed:
		case <-timeout:
		}
		return
	}
}

// C returns a new channel for the Timer's or Ticker's values; the Watcher
// calls it each time it waits.
func (w *waiter) C() <-chan time.Time {
	w.c.mu.Lock()
	defer w.c.mu.Unlock()
	close(w.renewed)
	w.cur, w.renewed = make(chan time.Time), make(chan struct{})
	return w.cur
}

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
