package filewatch

import "time"

// Clock is the time as a Watcher sees it. The real clock is the default;
// tests pass a fake one (see package filewatchtest) to drive the debounce,
// the settle check and the poll without waiting.
type Clock interface {
	// Now is the current time.
	Now() time.Time
	// NewTimer returns a stopped Timer.
	NewTimer() Timer
	// NewTicker returns a Ticker that ticks every d.
	NewTicker(d time.Duration) Ticker
}

// Timer is a one-shot timer, as time.Timer with Go 1.23's semantics: after
// Reset or Stop, no value from before it is received.
type Timer interface {
	C() <-chan time.Time
	Reset(d time.Duration)
	Stop()
}

// Ticker is a periodic timer, as time.Ticker.
type Ticker interface {
	C() <-chan time.Time
	Stop()
}

// realClock is the time package's clock.
type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) NewTimer() Timer {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return realTimer{t}
}

func (realClock) NewTicker(d time.Duration) Ticker { return realTicker{time.NewTicker(d)} }

type realTimer struct{ t *time.Timer }

func (t realTimer) C() <-chan time.Time   { return t.t.C }
func (t realTimer) Reset(d time.Duration) { t.t.Reset(d) }
func (t realTimer) Stop()                 { t.t.Stop() }

type realTicker struct{ t *time.Ticker }

func (t realTicker) C() <-chan time.Time { return t.t.C }
func (t realTicker) Stop()               { t.t.Stop() }
