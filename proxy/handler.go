// Package proxy serves the sidecar's HTTP side: it fetches Kong's /metrics,
// rewrites it with package relabel, shares one fetch among concurrent
// scrapes, appends the sidecar's own metrics and compresses the response.
// From the same fetches it also serves Kong's page as Kong wrote it, at
// KongPagePath.
package proxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/flate"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	"golang.org/x/sync/singleflight"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/relabel"
)

// ContentType is the type of every /metrics response: text format 0.0.4.
const ContentType = "text/plain; version=0.0.4; charset=utf-8"

// KongPagePath is where the Handler serves Kong's page as Kong wrote it,
// from the same fetches as /metrics.
const KongPagePath = "/metrics/kong"

// timeoutMargin is taken off a scrape's X-Prometheus-Scrape-Timeout-Seconds
// so the answer reaches Prometheus before it gives up.
const timeoutMargin = 500 * time.Millisecond

// Options configure a Handler.
type Options struct {
	// UpstreamURL is Kong's status endpoint, such as http://127.0.0.1:8100/metrics.
	UpstreamURL string
	// Client fetches UpstreamURL; nil means a client made for a local upstream.
	Client *http.Client
	// Timeout bounds one fetch. A scrape's own timeout header, less a
	// margin, bounds only how long that scrape waits, when smaller: the
	// fetch goes on for the scrapes that share it.
	Timeout time.Duration
	// MaxUpstreamBytes bounds Kong's (uncompressed) body; a larger one is a failed fetch.
	MaxUpstreamBytes int64
	// Rewriter returns the rewriter of the configuration in use; each
	// scrape calls it once.
	Rewriter func() *relabel.Rewriter
	// Registry receives the fetch metrics, and its metrics follow Kong's
	// series in every response.
	Registry *prometheus.Registry
	// Logger logs failed fetches.
	Logger *slog.Logger
	// MinFetchInterval lets the scrapes that come within this long of the
	// start of a successful fetch share its result instead of fetching
	// again, for the same configuration; 0 fetches for every scrape.
	// Concurrent scrapes share one fetch either way.
	MinFetchInterval time.Duration
}

// Handler serves /metrics and, at KongPagePath, Kong's page as it is. It
// is safe for concurrent use.
type Handler struct {
	upstreamURL string
	redacted    string // upstreamURL with its password as xxxxx, for logs
	client      *http.Client
	timeout     time.Duration
	maxBytes    int64
	rewriter    func() *relabel.Rewriter
	gatherer    prometheus.Gatherer
	logger      *slog.Logger
	metrics     *metrics
	minFetch    time.Duration
	plainLimit  int   // rewrites longer than this are held compressed (the constant; tests lower it)
	maxHeld     int64 // compressed bytes held per answer (maxHeldBytes; tests lower it)

	fetches  singleflight.Group     // Concurrent scrapes share one fetch.
	last     atomic.Pointer[result] // The last fetch's result while MinFetchInterval is on; nil after a failure.
	keepPage atomic.Bool            // Fetches keep Kong's page too: set by the first request for it.
	readers  sync.Pool              // of *bufio.Reader
	flates   sync.Pool              // of *flate.Writer
	buffers  sync.Pool              // of *bytes.Buffer, for the sidecar's own metrics
}

// NewHandler returns a Handler for o.
func NewHandler(o Options) *Handler {
	client := o.Client
	if client == nil {
		client = &http.Client{Transport: &http.Transport{
			Proxy:               nil, // Kong is local; never go through HTTP_PROXY
			DisableCompression:  true,
			MaxIdleConnsPerHost: 2,
			IdleConnTimeout:     90 * time.Second,
			ReadBufferSize:      64 << 10, // Kong's page is megabytes: fewer, larger reads
		}, CheckRedirect: noRedirects}
	}
	return &Handler{
		upstreamURL: o.UpstreamURL,
		redacted:    redact(o.UpstreamURL),
		client:      client,
		timeout:     o.Timeout,
		maxBytes:    o.MaxUpstreamBytes,
		rewriter:    o.Rewriter,
		gatherer:    o.Registry,
		logger:      o.Logger,
		metrics:     newMetrics(o.Registry),
		minFetch:    o.MinFetchInterval,
		plainLimit:  plainLimit,
		maxHeld:     maxHeldBytes,
		readers:     sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 64<<10) }},
		flates:      sync.Pool{New: func() any { w, _ := flate.NewWriter(nil, compressLevel); return w }},
		buffers:     sync.Pool{New: func() any { return new(bytes.Buffer) }},
	}
}

// redact returns raw with a password in it as xxxxx (url.URL.Redacted).
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(not a URL)"
	}
	return u.Redacted()
}

// noRedirects makes a client return a redirect as it is, so that a
// redirect from Kong's status endpoint is a failed fetch (its status is
// not 200) and another host's page is never served as Kong's.
func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// ServeHTTP answers a scrape of /metrics: Kong's rewritten series followed
// by the sidecar's own metrics, or only the latter when Kong cannot be
// read. A request for KongPagePath gets Kong's page instead (servePage).
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if r.URL.Path == KongPagePath {
		h.servePage(w, r)
		return
	}
	kong, ok := h.kong(r)
	releaseSlot(r) // the answer is ready: writing it needs no slot
	if !ok {
		return // the scraper is gone
	}

	w.Header().Set("Content-Type", ContentType)
	// Plain answers vary with Accept-Encoding too, so caches must not hand
	// them to clients that asked for gzip, or the other way round.
	w.Header().Add("Vary", "Accept-Encoding")
	gzipped := acceptsGzip(r.Header.Get("Accept-Encoding"))
	if gzipped {
		w.Header().Set("Content-Encoding", "gzip")
	}
	if r.Method == http.MethodHead {
		return
	}
	own := h.ownMetrics()
	defer h.buffers.Put(own)
	if gzipped {
		var d *deflated
		if kong != nil {
			d = kong.compressed(h)
		}
		h.writeGzip(w, d, own.Bytes())
		return
	}
	if kong != nil && !kong.writePlain(w) {
		return
	}
	_, _ = w.Write(own.Bytes())
}

// kong returns the result of a fetch for the scrape r, or nil when Kong
// could not be read, and false when the scraper went away first.
func (h *Handler) kong(r *http.Request) (*result, bool) {
	rw := h.rewriter()
	// Fast path - a fetch recent enough, for the same configuration,
	// answers without Kong being asked again.
	if last := h.recent(); last != nil && last.rw == rw {
		return last, true
	}
	res, err := h.join(r, rw)
	return res, !errors.Is(err, errGone)
}

// recent returns the last fetch's result while it may still answer
// scrapes (MinFetchInterval), or nil.
func (h *Handler) recent() *result {
	if h.minFetch <= 0 {
		return nil
	}
	if last := h.last.Load(); last != nil && time.Since(last.start) < h.minFetch {
		return last
	}
	return nil
}

// errGone is join's error when the scraper went away before the fetch ended.
var errGone = errors.New("the scraper went away")

// join returns the result of the fetch under way, or of a new one, for
// the scrape r with rw, or the fetch's error, or errGone.
func (h *Handler) join(r *http.Request, rw *relabel.Rewriter) (*result, error) {
	// The fetch outlives the scrape that started it, since others may share
	// it, and runs under the sidecar's own timeout, never one scraper's: a
	// scraper with a shorter one only stops waiting. Every scrape shares
	// the fetch under way, even one that arrives after a configuration
	// change: Kong is never fetched twice at once, and the answer is still
	// wholly one configuration's (the one the fetch started with).
	ch := h.fetches.DoChan("upstream", func() (any, error) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), h.timeout)
		defer cancel()
		res, err := h.fetch(ctx, rw)
		if h.minFetch > 0 {
			h.last.Store(res) // nil after a failure: a failed fetch is never reused
		}
		return res, err
	})
	var expired <-chan time.Time // the scrape's own deadline, when shorter than the fetch's
	if timeout := h.scrapeTimeout(r); timeout < h.timeout {
		timer := time.NewTimer(timeout)
		defer timer.Stop()
		expired = timer.C
	}
	select {
	case res := <-ch:
		if res.Err != nil {
			return nil, res.Err
		}
		return res.Val.(*result), nil
	case <-expired:
		return nil, &fetchError{reasonTimeout, errWaitExpired}
	case <-r.Context().Done():
		return nil, errGone
	}
}

// errWaitExpired is join's error when the scrape's own timeout passed
// before the shared fetch ended; the fetch goes on for the others.
var errWaitExpired = errors.New("the scrape's own timeout passed before the shared fetch ended")

// writePlain writes the result uncompressed and reports whether all of it
// went out.
func (r *result) writePlain(w io.Writer) bool {
	if r.plain != nil || r.deflated == nil {
		_, err := w.Write(r.plain)
		return err == nil
	}
	// Slow path - a large result is held compressed: inflate it on the way.
	_, err := io.CopyN(w, flate.NewReader(r.deflated.reader()), r.deflated.size)
	return err == nil
}

// gzipHeader starts a gzip member: DEFLATE, no name, no time, unknown OS.
var gzipHeader = []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255}

// writeGzip writes one gzip member: kong, a DEFLATE stream compressed once
// for every scrape it answers (nil for none), followed by own compressed
// now, and the trailer for both.
func (h *Handler) writeGzip(w io.Writer, kong *deflated, own []byte) {
	var d deflated
	if kong != nil {
		d = *kong
	}
	if _, err := w.Write(gzipHeader); err != nil {
		return
	}
	for _, c := range d.chunks {
		if _, err := w.Write(c); err != nil {
			return
		}
	}
	zw := h.getFlate(w)
	defer h.putFlate(zw)
	if _, err := zw.Write(own); err != nil {
		return
	}
	if err := zw.Close(); err != nil {
		return
	}
	var trailer [8]byte
	binary.LittleEndian.PutUint32(trailer[:4], crc32.Update(d.crc, crc32.IEEETable, own))
	binary.LittleEndian.PutUint32(trailer[4:], uint32(d.size+int64(len(own)))) // the size modulo 2^32
	_, _ = w.Write(trailer[:])
}

// ownMetrics renders the sidecar's own metrics into a pooled buffer.
func (h *Handler) ownMetrics() *bytes.Buffer {
	buf := h.buffers.Get().(*bytes.Buffer)
	buf.Reset()
	mfs, err := h.gatherer.Gather()
	if err != nil {
		h.logger.Error("gathering the sidecar's own metrics", "err", err)
	}
	enc := expfmt.NewEncoder(buf, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			break
		}
	}
	return buf
}

// scrapeTimeout is the configured timeout, or the scraper's own less a
// margin when that is smaller.
func (h *Handler) scrapeTimeout(r *http.Request) time.Duration {
	timeout := h.timeout
	if v := r.Header.Get("X-Prometheus-Scrape-Timeout-Seconds"); v != "" {
		// From twice the timeout on, theirs cannot win (half of it is kept
		// below); not converting such values also keeps +Inf and 1e300 from
		// overflowing a Duration, whose value would then be undefined.
		if secs, err := strconv.ParseFloat(v, 64); err == nil && secs > 0 && secs < 2*timeout.Seconds() {
			theirs := time.Duration(secs * float64(time.Second))
			// Take the margin off, but keep at least half of a short timeout.
			theirs = max(theirs-timeoutMargin, theirs/2)
			timeout = min(timeout, theirs)
		}
	}
	return timeout
}

// acceptsGzip reports whether an Accept-Encoding header allows gzip.
func acceptsGzip(header string) bool {
	for part := range strings.SplitSeq(header, ",") {
		coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if !strings.EqualFold(strings.TrimSpace(coding), "gzip") {
			continue
		}
		q, hasQ := strings.CutPrefix(strings.TrimSpace(params), "q=")
		if !hasQ {
			return true
		}
		v, err := strconv.ParseFloat(q, 64)
		return err == nil && v > 0
	}
	return false
}

// NewMux routes the sidecar's endpoints: /metrics and KongPagePath to
// metrics (a Handler tells them apart), and /healthz and /readyz, which
// answer 200 while the server runs. Readiness depends on neither Kong nor
// the configuration: the sidecar's readiness would gate the whole Kong pod,
// and Kong reports its own.
func NewMux(metrics http.Handler) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("/metrics", metrics)
	mux.Handle(KongPagePath, metrics)
	ok := func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "ok\n") // a prober that left needs no answer
	}
	mux.HandleFunc("/healthz", ok)
	mux.HandleFunc("/readyz", ok)
	return mux
}
