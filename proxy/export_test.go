package proxy

import "time"

// SetPlainLimit makes h hold rewrites over n bytes compressed, so that
// tests can take that path with a small page. Call it before h serves.
func SetPlainLimit(h *Handler, n int) { h.plainLimit = n }

// SetTimeout sets h's fetch timeout, so that one failing fetch can time out
// while good ones have a generous timeout. Call it while no fetch runs.
func SetTimeout(h *Handler, d time.Duration) { h.timeout = d }

// SetMaxHeld bounds the compressed bytes h holds per answer to n. Call it
// before h serves.
func SetMaxHeld(h *Handler, n int64) { h.maxHeld = n }
