package proxy

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"time"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/relabel"
)

// maxLineBytes bounds one line of Kong's page. Kong's longest lines are a
// few hundred bytes; a longer line is dropped as malformed.
const maxLineBytes = 1 << 20

// fetchError is a failed fetch with the reason counted in upstream_errors_total.
type fetchError struct {
	reason string
	err    error
}

func (e *fetchError) Error() string {
	return fmt.Sprintf("fetching Kong's metrics (%s): %v", e.reason, e.err)
}
func (e *fetchError) Unwrap() error { return e.err }

// fetch reads Kong's page and rewrites it with rw. It returns the complete
// rewrite, or an error and nothing: a page that fails half way is never used.
func (h *Handler) fetch(ctx context.Context, rw *relabel.Rewriter) (out []byte, stats relabel.Stats, err error) {
	start := time.Now()
	h.metrics.fetches.Inc()
	var size int64
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
			h.logger.Warn("Kong's metrics could not be read; serving the sidecar's own metrics only", "url", h.upstreamURL, "reason", fe.reason, "err", fe.err)
			out = nil
			return
		}
		h.metrics.up.Set(1)
		h.metrics.observe(stats)
	}()

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.upstreamURL, nil)
	if err != nil {
		return nil, stats, &fetchError{reasonConnect, err}
	}
	req.Header.Set("Accept", "text/plain")
	// Kong never compresses, but a proxy in between may.
	req.Header.Set("Accept-Encoding", "gzip")
	resp, err := h.client.Do(req)
	if err != nil {
		return nil, stats, classify(ctx, err, reasonConnect)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, stats, &fetchError{reasonStatus, fmt.Errorf("HTTP status %s", resp.Status)}
	}
	if ct := resp.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "text/plain" {
			return nil, stats, &fetchError{reasonContentType, fmt.Errorf("Content-Type %q is not Prometheus text format", ct)}
		}
	}
	var body io.Reader = resp.Body
	switch enc := resp.Header.Get("Content-Encoding"); enc {
	case "", "identity":
	case "gzip":
		zr, err := gzip.NewReader(resp.Body)
		if err != nil {
			return nil, stats, classify(ctx, fmt.Errorf("gzip body: %w", err), reasonRead)
		}
		defer zr.Close()
		body = zr
	default:
		return nil, stats, &fetchError{reasonContentType, fmt.Errorf("unsupported Content-Encoding %q", enc)}
	}
	limited := &io.LimitedReader{R: body, N: h.maxBytes + 1}
	out, stats, size, err = h.rewrite(limited, rw)
	if err != nil {
		return nil, stats, classify(ctx, err, reasonRead)
	}
	if size > h.maxBytes {
		return nil, stats, &fetchError{reasonTooLarge, fmt.Errorf("body larger than %d bytes", h.maxBytes)}
	}
	return out, stats, nil
}

// rewrite streams body line by line through rw. Only the output is held.
func (h *Handler) rewrite(body io.Reader, rw *relabel.Rewriter) (out []byte, stats relabel.Stats, size int64, err error) {
	br := h.readers.Get().(*bufio.Reader)
	br.Reset(body)
	defer func() { br.Reset(nil); h.readers.Put(br) }()
	page := rw.NewPage()
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
			out = page.AppendLine(out, bytes.TrimSuffix(line, []byte("\n")))
		}
		if err == io.EOF {
			return out, page.Stats(), size, nil
		}
		if err != nil {
			return nil, page.Stats(), size, err
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
