// Package proxy serves the sidecar's HTTP side: it fetches Kong's /metrics,
// rewrites it with package relabel, shares one fetch among concurrent
// scrapes, appends the sidecar's own metrics and compresses the response.
package proxy

import (
	"bufio"
	"compress/gzip"
	"context"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	"golang.org/x/sync/singleflight"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/relabel"
)

// ContentType is the type of every /metrics response: text format 0.0.4.
const ContentType = "text/plain; version=0.0.4; charset=utf-8"

// timeoutMargin is taken off a scrape's X-Prometheus-Scrape-Timeout-Seconds
// so the answer reaches Prometheus before it gives up.
const timeoutMargin = 500 * time.Millisecond

// Options configure a Handler.
type Options struct {
	// UpstreamURL is Kong's status endpoint, such as http://127.0.0.1:8100/metrics.
	UpstreamURL string
	// Client fetches UpstreamURL; nil means a client made for a local upstream.
	Client *http.Client
	// Timeout bounds one fetch; a scrape's own timeout header, less a margin, wins when smaller.
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
}

// Handler serves /metrics. It is safe for concurrent use.
type Handler struct {
	upstreamURL string
	client      *http.Client
	timeout     time.Duration
	maxBytes    int64
	rewriter    func() *relabel.Rewriter
	gatherer    prometheus.Gatherer
	logger      *slog.Logger
	metrics     *metrics

	fetches singleflight.Group // Concurrent scrapes share one fetch.
	readers sync.Pool          // of *bufio.Reader
	gzips   sync.Pool          // of *gzip.Writer
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
		}}
	}
	return &Handler{
		upstreamURL: o.UpstreamURL,
		client:      client,
		timeout:     o.Timeout,
		maxBytes:    o.MaxUpstreamBytes,
		rewriter:    o.Rewriter,
		gatherer:    o.Registry,
		logger:      o.Logger,
		metrics:     newMetrics(o.Registry),
		readers:     sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 64<<10) }},
		gzips:       sync.Pool{New: func() any { w, _ := gzip.NewWriterLevel(nil, gzip.BestSpeed); return w }},
	}
}

// ServeHTTP answers a scrape: Kong's rewritten series followed by the
// sidecar's own metrics, or only the latter when Kong cannot be read.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	timeout := h.scrapeTimeout(r)
	rw := h.rewriter()
	// The fetch outlives the scrape that started it, since others may share
	// it, but never its timeout. Every scrape shares the fetch under way,
	// even one that arrives after a configuration change: Kong is never
	// fetched twice at once, and the answer is still wholly one
	// configuration's (the one the fetch started with).
	ch := h.fetches.DoChan("upstream", func() (any, error) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), timeout)
		defer cancel()
		out, _, err := h.fetch(ctx, rw)
		return out, err
	})
	var kong []byte
	select {
	case res := <-ch:
		if res.Err == nil {
			kong = res.Val.([]byte)
		}
	case <-r.Context().Done():
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
		return // before the gzip writer, whose Close would write a body
	}
	var out io.Writer = w
	if gzipped {
		gz := h.gzips.Get().(*gzip.Writer)
		gz.Reset(w)
		defer func() {
			gz.Close()
			gz.Reset(nil)
			h.gzips.Put(gz)
		}()
		out = gz
	}
	if _, err := out.Write(kong); err != nil {
		return
	}
	h.writeOwnMetrics(out)
}

func (h *Handler) writeOwnMetrics(w io.Writer) {
	mfs, err := h.gatherer.Gather()
	if err != nil {
		h.logger.Error("gathering the sidecar's own metrics", "err", err)
	}
	enc := expfmt.NewEncoder(w, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			return
		}
	}
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

// NewMux routes the sidecar's endpoints: /metrics to metrics, and /healthz
// and /readyz, which answer 200 while the server runs. Readiness depends
// on neither Kong nor the configuration: the sidecar's readiness would gate
// the whole Kong pod, and Kong reports its own.
func NewMux(metrics http.Handler) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("/metrics", metrics)
	ok := func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
	}
	mux.HandleFunc("/healthz", ok)
	mux.HandleFunc("/readyz", ok)
	return mux
}
