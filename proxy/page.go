package proxy

import (
	"errors"
	"io"
	"net/http"

	"github.com/klauspost/compress/flate"
)

// Kong's page as Kong wrote it, at KongPagePath: for Kong's own
// ServiceMonitor and dashboards that key on Kong's families and its
// service label, without a second scrape of Kong. It comes from the same
// fetches as /metrics: concurrent requests of both endpoints share one, and
// MinFetchInterval answers both from the last one.
//
// The page is kept only once it has been asked for: the first request for
// it sets keepPage, and from then on every fetch, whoever starts it, also
// DEFLATE-compresses the body as it is read, so the page is never held
// whole uncompressed. That first request may cost one extra fetch (the
// fetch under way, or the last one, did not keep the page); a sidecar
// nobody asks for the page pays nothing for it.

// pageSpool keeps Kong's body, compressed as it is read.
type pageSpool struct {
	h   *Handler
	zw  *flate.Writer
	out *deflated
}

func (h *Handler) newPageSpool() *pageSpool {
	out := &deflated{}
	return &pageSpool{h: h, zw: h.getFlate(out), out: out}
}

// Write compresses p, a piece of the body as read. It fails once the
// compressed page passes the handler's bound (the fetch then fails).
func (p *pageSpool) Write(b []byte) (int, error) {
	if p.out.held > p.h.maxHeld {
		return 0, errHeldTooLarge
	}
	p.out.write(p.zw, b, false)
	return len(b), nil
}

// finish ends the stream with a sync flush and returns it.
func (p *pageSpool) finish() *deflated {
	p.out.write(p.zw, nil, true)
	p.h.putFlate(p.zw)
	p.zw = nil
	return p.out
}

// abort returns the compressor of a failed fetch to its pool; what was
// compressed is dropped with the spool.
func (p *pageSpool) abort() {
	if p.zw != nil {
		p.h.putFlate(p.zw)
		p.zw = nil
	}
}

// servePage answers a request for KongPagePath: Kong's body byte for byte
// with Kong's Content-Type, gzip-compressed when the client accepts it. A
// failed fetch is 502 Bad Gateway (504 Gateway Timeout when it timed out)
// with a one-line reason, never part of a page nor an older one.
func (h *Handler) servePage(w http.ResponseWriter, r *http.Request) {
	res, err := h.page(r)
	releaseSlot(r) // the answer is ready: writing it needs no slot
	if errors.Is(err, errGone) {
		return
	}
	if err != nil {
		status, reason := http.StatusBadGateway, reasonRead
		var fe *fetchError
		if errors.As(err, &fe) {
			reason = fe.reason
		}
		if reason == reasonTimeout {
			status = http.StatusGatewayTimeout
		}
		http.Error(w, "Kong's metrics could not be read: "+reason, status)
		return
	}
	ct := res.pageType
	if ct == "" {
		ct = ContentType // Kong sent none; Prometheus 3 refuses an answer without one
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Add("Vary", "Accept-Encoding")
	gzipped := acceptsGzip(r.Header.Get("Accept-Encoding"))
	if gzipped {
		w.Header().Set("Content-Encoding", "gzip")
	}
	if r.Method == http.MethodHead {
		return
	}
	if gzipped {
		h.writeGzip(w, res.page, nil)
		return
	}
	// Inflated on the way: the page is never whole in memory.
	_, _ = io.CopyN(w, flate.NewReader(res.page.reader()), res.page.size) // a scraper that left needs no answer
}

// page returns a fetch's result that holds Kong's page, for the request
// r, or the fetch's error, or errGone.
func (h *Handler) page(r *http.Request) (*result, error) {
	h.keepPage.Store(true)
	// Fast path - the last fetch is recent enough and kept the page. The
	// page does not depend on the configuration.
	if last := h.recent(); last != nil && last.page != nil {
		return last, nil
	}
	rw := h.rewriter()
	// A fetch that began before keepPage was set has no page; the one
	// after it began after, and has.
	for range 2 {
		res, err := h.join(r, rw)
		if err != nil {
			return nil, err
		}
		if res.page != nil {
			return res, nil
		}
	}
	return nil, errors.New("BUG: a fetch begun after Kong's page was asked for did not keep it")
}
