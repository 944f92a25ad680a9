package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"mime"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/klauspost/compress/flate"
	"github.com/klauspost/compress/gzip"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/relabel"
)

// maxLineBytes bounds one line of Kong's page. Kong's longest lines are a
// few hundred bytes; a longer line is dropped as malformed.
const maxLineBytes = 1 << 20

// plainLimit is the largest rewrite held as it is. A larger one (Kong's
// page with every Service selected, which grows in the rewrite) is held
// DEFLATE-compressed from then on, about 28 times smaller, so that it
// never sits in memory whole.
const plainLimit = 4 << 20

// compressEvery is how much rewritten text waits before it is compressed,
// once a rewrite is past plainLimit.
const compressEvery = 256 << 10

// maxHeldBytes bounds the compressed bytes one fetch holds for each of its
// answers: the rewrite, and Kong's page when it is kept. Kong's pages
// compress 10 to 30 times, so this holds pages of hundreds of megabytes;
// a body that compresses badly (hostile, or endless) fails as too_large
// once past it instead of growing toward SIDECAR_MAX_UPSTREAM_BYTES.
const maxHeldBytes = 24 << 20

// errHeldTooLarge is a fetch's error when an answer's compressed bytes
// pass maxHeldBytes.
var errHeldTooLarge = errors.New("the compressed answer would pass its bound")

// compressLevel is the DEFLATE level of every compressed answer.
// github.com/klauspost/compress at level 1 compresses the rewritten page
// about three times as fast as the standard library's fastest level, and
// better (BenchmarkCompress, docs/performance.md).
const compressLevel = flate.BestSpeed

// fetchError is a failed fetch with the reason counted in upstream_errors_total.
type fetchError struct {
	reason string
	err    error
}

func (e *fetchError) Error() string {
	return fmt.Sprintf("fetching Kong's metrics (%s): %v", e.reason, e.err)
}
func (e *fetchError) Unwrap() error { return e.err }

// result is the Kong part of the answers that one successful fetch gives.
// It is immutable, but for the compressed form of a small result, which
// the first scrape that wants it makes once for all.
type result struct {
	rw    *relabel.Rewriter // the configuration it was rewritten for
	start time.Time         // when the fetch began: the result's age counts from here

	plain []byte // the rewritten series, when held as they are

	deflateOnce sync.Once
	deflated    *deflated // the same compressed; set from the start when plain is nil

	page     *deflated // Kong's body as it came, when keepPage was set at the fetch's start
	pageType string    // Kong's Content-Type
}

// deflated is a raw DEFLATE stream that ends with a sync flush instead of
// a final block, so that more blocks may follow: with a gzip header before
// it, the sidecar's own metrics after it and a trailer from crc and size,
// it is one gzip member, compressed once however many scrapes it answers.
type deflated struct {
	chunks [][]byte
	crc    uint32 // CRC-32 (IEEE) of the uncompressed bytes
	size   int64  // uncompressed length
	held   int64  // compressed length
}

// compressed returns the result's DEFLATE form, making it on first use.
func (r *result) compressed(h *Handler) *deflated {
	r.deflateOnce.Do(func() {
		if r.deflated != nil {
			return
		}
		var d deflated
		zw := h.getFlate(&d)
		d.write(zw, r.plain, true)
		h.putFlate(zw)
		r.deflated = &d
	})
	return r.deflated
}

// write compresses p into d, and with sync set ends d on a byte boundary
// with everything written out.
func (d *deflated) write(zw *flate.Writer, p []byte, sync bool) {
	d.crc = crc32.Update(d.crc, crc32.IEEETable, p)
	d.size += int64(len(p))
	// Writes into d.Write cannot fail.
	_, _ = zw.Write(p)
	if sync {
		_ = zw.Flush()
	}
}

// Write appends compressed bytes in chunks, so that a large body is never
// copied to grow.
func (d *deflated) Write(p []byte) (int, error) {
	n := len(p)
	d.held += int64(n)
	for len(p) > 0 {
		if len(d.chunks) == 0 || len(d.chunks[len(d.chunks)-1]) == cap(d.chunks[len(d.chunks)-1]) {
			size := 64 << 10
			if len(d.chunks) > 4 {
				size = 1 << 20
			}
			d.chunks = append(d.chunks, make([]byte, 0, size))
		}
		last := &d.chunks[len(d.chunks)-1]
		k := min(len(p), cap(*last)-len(*last))
		*last = append(*last, p[:k]...)
		p = p[k:]
	}
	return n, nil
}

// reader reads the compressed bytes.
func (d *deflated) reader() io.Reader {
	rs := make([]io.Reader, len(d.chunks))
	for i, c := range d.chunks {
		rs[i] = bytes.NewReader(c)
	}
	return io.MultiReader(rs...)
}

// spool takes the rewrite of one page. Up to plainLimit it keeps the text
// as it is; past that it compresses it as it comes.
type spool struct {
	h   *Handler
	buf []byte        // rewritten text not yet compressed
	zw  *flate.Writer // nil while the text is held as it is
	out *deflated
}

// flushIfFull compresses what is buffered once there is enough of it, and
// fails once the compressed bytes pass the handler's bound.
func (s *spool) flushIfFull() error {
	if s.out != nil && s.out.held > s.h.maxHeld {
		return errHeldTooLarge
	}
	switch {
	case s.zw == nil && len(s.buf) > s.h.plainLimit:
		// Slow path - too large to hold as it is: compress from now on.
		s.out = &deflated{}
		s.zw = s.h.getFlate(s.out)
		s.out.write(s.zw, s.buf, false)
		s.buf = make([]byte, 0, compressEvery+64<<10)
	case s.zw != nil && len(s.buf) >= compressEvery:
		s.out.write(s.zw, s.buf, false)
		s.buf = s.buf[:0]
	}
	return nil
}

// finish returns the page's result, and returns the compressor to its pool.
func (s *spool) finish(res *result) {
	if s.zw == nil {
		res.plain = s.buf
		if cap(s.buf) > 2*len(s.buf)+4<<10 {
			res.plain = bytes.Clone(s.buf) // do not hold on to the growth
		}
		return
	}
	s.out.write(s.zw, s.buf, true)
	s.h.putFlate(s.zw)
	s.zw, s.buf = nil, nil
	res.deflated = s.out
}

// abort returns the compressor of a failed fetch to its pool.
func (s *spool) abort() {
	if s.zw != nil {
		s.h.putFlate(s.zw)
		s.zw = nil
	}
}

// fetch reads Kong's page and rewrites it with rw. It returns the complete
// rewrite, or an error and nothing: a page that fails half way is never used.
func (h *Handler) fetch(ctx context.Context, rw *relabel.Rewriter) (res *result, err error) {
	start := time.Now()
	h.metrics.fetches.Inc()
	var size int64
	var stats relabel.Stats
	defer func() {
		h.metrics.fetchDuration.Observe(time.Since(start).Seconds())
		h.metrics.responseBytes.Set(float64(size))
		if err != nil {
			var fe *fetchError
			if !errors.As(err, &fe) {
				fe = &fetchError{reason: reasonRead, err: err}
				err = fe
			}
			h.metrics.up.Set(0)
			h.metrics.errors.WithLabelValues(fe.reason).Inc()
			h.logger.Warn("Kong's metrics could not be read; serving the sidecar's own metrics only", "url", h.redacted, "reason", fe.reason, "err", fe.err)
			res = nil
			return
		}
		h.metrics.up.Set(1)
		h.metrics.observe(stats)
	}()

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.upstreamURL, nil)
	if err != nil {
		return nil, &fetchError{reasonConnect, err}
	}
	req.Header.Set("Accept", "text/plain")
	// Kong never compresses, but a proxy in between may.
	req.Header.Set("Accept-Encoding", "gzip")
	resp, err := h.client.Do(req)
	if err != nil {
		return nil, classify(ctx, err, reasonConnect)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, &fetchError{reasonStatus, fmt.Errorf("HTTP status %s", resp.Status)}
	}
	if ct := resp.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "text/plain" {
			return nil, &fetchError{reasonContentType, fmt.Errorf("Content-Type %q is not Prometheus text format", ct)}
		}
	}
	var body io.Reader = resp.Body
	switch enc := resp.Header.Get("Content-Encoding"); enc {
	case "", "identity":
	case "gzip":
		zr, err := gzip.NewReader(resp.Body)
		if err != nil {
			return nil, classify(ctx, fmt.Errorf("gzip body: %w", err), reasonRead)
		}
		defer func() { _ = zr.Close() }() // the body was read to its end or abandoned
		body = zr
	default:
		return nil, &fetchError{reasonContentType, fmt.Errorf("unsupported Content-Encoding %q", enc)}
	}
	// One byte more than the limit tells a body at the limit from a larger
	// one; the sum saturates rather than overflows.
	limited := &io.LimitedReader{R: body, N: min(h.maxBytes, math.MaxInt64-1) + 1}
	var src io.Reader = limited
	var page *pageSpool
	if h.keepPage.Load() {
		// Kong's page is kept too, compressed as it is read.
		page = h.newPageSpool()
		src = io.TeeReader(limited, page)
	}
	sp := &spool{h: h}
	abort := func() {
		sp.abort()
		if page != nil {
			page.abort()
		}
	}
	stats, size, err = h.rewrite(src, rw, sp)
	if errors.Is(err, errHeldTooLarge) {
		abort()
		return nil, &fetchError{reasonTooLarge, fmt.Errorf("%w (%d bytes)", err, h.maxHeld)}
	}
	if err != nil {
		abort()
		return nil, classify(ctx, err, reasonRead)
	}
	if size > h.maxBytes {
		abort()
		return nil, &fetchError{reasonTooLarge, fmt.Errorf("body larger than %d bytes", h.maxBytes)}
	}
	res = &result{rw: rw, start: start}
	sp.finish(res)
	if page != nil {
		res.page, res.pageType = page.finish(), resp.Header.Get("Content-Type")
	}
	return res, nil
}

// rewrite streams body line by line through rw into sp. Kong's page is
// never held: only a read buffer of it, and the rewrite.
func (h *Handler) rewrite(body io.Reader, rw *relabel.Rewriter, sp *spool) (stats relabel.Stats, size int64, err error) {
	br := h.readers.Get().(*bufio.Reader)
	br.Reset(body)
	defer func() { br.Reset(nil); h.readers.Put(br) }()
	page := rw.NewPage()
	defer page.Release()
	var long []byte // a line longer than the read buffer
	for {
		line, err := br.ReadSlice('\n')
		size += int64(len(line))
		if errors.Is(err, bufio.ErrBufferFull) {
			// Slow path - gather a line longer than the buffer, up to maxLineBytes.
			long = append(long[:0], line...)
			for errors.Is(err, bufio.ErrBufferFull) {
				line, err = br.ReadSlice('\n')
				size += int64(len(line))
				if len(long) <= maxLineBytes {
					long = append(long, line...)
				}
			}
			if len(long) > maxLineBytes {
				page.SkipLine()
				line = nil
			} else {
				line = long
			}
		}
		if len(line) > 0 {
			if line[len(line)-1] == '\n' {
				line = line[:len(line)-1]
			}
			sp.buf = page.AppendLine(sp.buf, line)
			if err := sp.flushIfFull(); err != nil {
				return page.Stats(), size, err
			}
		}
		if err == io.EOF {
			return page.Stats(), size, nil
		}
		if err != nil {
			return page.Stats(), size, err
		}
	}
}

func classify(ctx context.Context, err error, fallback string) *fetchError {
	var ne net.Error
	switch {
	case ctx.Err() != nil, errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return &fetchError{reasonTimeout, err}
	}
	return &fetchError{fallback, err}
}

// getFlate returns a pooled DEFLATE compressor writing to w.
func (h *Handler) getFlate(w io.Writer) *flate.Writer {
	zw := h.flates.Get().(*flate.Writer)
	zw.Reset(w)
	return zw
}

func (h *Handler) putFlate(zw *flate.Writer) {
	zw.Reset(io.Discard)
	h.flates.Put(zw)
}
