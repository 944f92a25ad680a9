// Package lastgood keeps the last good value loaded from content that
// changes (a file, a pair of files) and tells its caller which outcomes
// are news: a new value, or bad content not seen just before. The
// extension file's Store, the Admin API client's TLS files and the
// injector's serving certificate share it, so that each keeps its last
// good value and reports each bad content once, the same way.
package lastgood

import (
	"sync"
	"sync/atomic"
)

// Outcome is what Offer did with one content.
type Outcome int

// The outcomes of Offer.
const (
	// Kept: the content is the one in use; nothing was loaded.
	Kept Outcome = iota
	// Loaded: the content loaded and its value is in use now.
	Loaded
	// Rejected: the content did not load and differs from the content
	// offered just before; the caller reports it (logs, counts).
	Rejected
	// Repeated: the same bad content as the offer just before, not loaded
	// again; its error is returned again, and was reported already.
	Repeated
)

func (o Outcome) String() string {
	switch o {
	case Kept:
		return "kept"
	case Loaded:
		return "loaded"
	case Rejected:
		return "rejected"
	case Repeated:
		return "repeated"
	}
	return "unknown"
}

// Keeper holds the last good value of T and the key (such as a hash) of
// the content it came from. Get is safe for concurrent use with
// everything; Offer calls are serialized.
type Keeper[T any] struct {
	mu      sync.Mutex // serializes Offer
	current atomic.Pointer[state[T]]
	bad     string // key of the bad content offered last; "" after a good one
	badErr  error
}

type state[T any] struct {
	value T
	key   string
	ok    bool  // value is a good one
	err   error // while !ok: why the last content did not load
}

// Offer loads the content named key with load, unless key names the
// content in use (Kept) or the bad content offered just before (Repeated,
// with its error). A failed load keeps the value in use (Rejected, with
// load's error). An empty key is never taken for the content in use.
func (k *Keeper[T]) Offer(key string, load func() (T, error)) (Outcome, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	cur := k.current.Load()
	switch {
	case cur != nil && cur.ok && key != "" && key == cur.key:
		k.bad, k.badErr = "", nil // good again: the next bad content is news
		return Kept, nil
	case k.bad != "" && key == k.bad:
		return Repeated, k.badErr
	}
	v, err := load()
	if err != nil {
		k.bad, k.badErr = key, err
		if cur == nil || !cur.ok {
			k.current.Store(&state[T]{err: err})
		}
		return Rejected, err
	}
	k.bad, k.badErr = "", nil
	k.current.Store(&state[T]{value: v, key: key, ok: true})
	return Loaded, nil
}

// Get returns the value in use; until one loaded, the zero T and the
// error of the last content offered (nil before any offer).
func (k *Keeper[T]) Get() (T, error) {
	if cur := k.current.Load(); cur != nil {
		return cur.value, cur.err
	}
	var zero T
	return zero, nil
}

// Has reports whether a good value is in use.
func (k *Keeper[T]) Has() bool {
	cur := k.current.Load()
	return cur != nil && cur.ok
}
