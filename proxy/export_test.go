package proxy

// SetPlainLimit makes h hold rewrites over n bytes compressed, so that
// tests can take that path with a small page. Call it before h serves.
func SetPlainLimit(h *Handler, n int) { h.plainLimit = n }
