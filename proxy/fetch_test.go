package proxy_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/golden"
	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/proxy"
	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/relabel"
)

// shortTimeout bounds the fetches of tests whose upstream never finishes.
const shortTimeout = 300 * time.Millisecond

// shortScrapeTimeout is an X-Prometheus-Scrape-Timeout-Seconds that makes
// a scrape's own wait shortTimeout (half of it, the margin being larger).
const shortScrapeTimeout = "0.6"

// failure is a way for Kong's fetch to fail, after good fetches of fixture.
type failure struct {
	name     string
	serve    http.HandlerFunc // the failing upstream; nil when nothing listens
	timeout  time.Duration    // the handler's timeout for the failing fetch (0: newHandler's)
	maxBytes int64
	reason   string
}

// failures are every way a fetch of Kong's page (fixture) fails that the
// handler tells apart: /metrics and Kong's page are tested with each.
func failures(t *testing.T, fixture []byte) []failure {
	t.Helper()
	gzipped := gzipBytes(t, fixture)
	// cut is inside a line that the tutorial's selection keeps.
	cut := bytes.Index(fixture, []byte(`kong_upstream_latency_ms_sum{service="kong.command.80"`)) + 40
	// lineEnd is the end of a line in the middle of the page.
	lineEnd := bytes.IndexByte(fixture[len(fixture)/2:], '\n') + len(fixture)/2 + 1
	// padded is one byte over a limit of len(fixture); Kong's page fits it exactly.
	padded := append(fixture[:len(fixture):len(fixture)], '\n')
	gzippedPadded := gzipBytes(t, padded)

	return []failure{
		{
			name:   "connection refused",
			reason: "connect",
		},
		{
			name: "no response headers before the deadline",
			serve: func(w http.ResponseWriter, r *http.Request) {
				<-r.Context().Done()
			},
			timeout: shortTimeout,
			reason:  "timeout",
		},
		{
			name: "body trickles past the deadline",
			serve: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", kongContentType)
				rc := http.NewResponseController(w)
				tick := time.NewTicker(20 * time.Millisecond)
				defer tick.Stop()
				for line := range bytes.Lines(fixture) {
					if _, err := w.Write(line); err != nil {
						return // the sidecar hung up
					}
					if err := rc.Flush(); err != nil {
						return
					}
					select {
					case <-tick.C:
					case <-r.Context().Done():
						return
					}
				}
			},
			timeout: shortTimeout,
			reason:  "timeout",
		},
		{
			name: "status 500 with a metrics page",
			serve: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", kongContentType)
				w.WriteHeader(http.StatusInternalServerError)
				w.Write(fixture)
			},
			reason: "status",
		},
		{
			name:   "status 404",
			serve:  http.NotFound,
			reason: "status",
		},
		{
			name: "HTML error page with status 200",
			serve: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/html; charset=utf-8")
				fmt.Fprint(w, "<!DOCTYPE html>\n<html><body><h1>An unexpected error occurred</h1></body></html>\n")
			},
			reason: "content_type",
		},
		{
			name: "body shorter than its Content-Length, cut mid-line",
			serve: func(w http.ResponseWriter, r *http.Request) {
				conn, buf, err := http.NewResponseController(w).Hijack()
				if err != nil {
					panic(err)
				}
				defer conn.Close()
				fmt.Fprintf(buf, "HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n", kongContentType, len(fixture))
				_, _ = buf.Write(fixture[:cut]) // a bufio.Writer reports a failed write at Flush
				buf.Flush()
			},
			reason: "read",
		},
		{
			name: "chunked body aborted mid-line",
			serve: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", kongContentType)
				writeChunked(w, fixture[:cut])
				panic(http.ErrAbortHandler) // closes the connection without the last chunk
			},
			reason: "read",
		},
		{
			name: "chunked body aborted at a line end",
			serve: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", kongContentType)
				writeChunked(w, fixture[:lineEnd])
				panic(http.ErrAbortHandler)
			},
			reason: "read",
		},
		{
			name:     "body over MaxUpstreamBytes",
			serve:    serveKong(padded),
			maxBytes: int64(len(fixture)),
			reason:   "too_large",
		},
		{
			name: "gzip body over MaxUpstreamBytes once decompressed",
			serve: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", kongContentType)
				w.Header().Set("Content-Encoding", "gzip")
				writeChunked(w, gzippedPadded)
			},
			maxBytes: int64(len(fixture)),
			reason:   "too_large",
		},
		{
			name: "gzip stream cut off",
			serve: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", kongContentType)
				w.Header().Set("Content-Encoding", "gzip")
				w.Header().Set("Content-Length", fmt.Sprint(len(gzipped)/2))
				w.Write(gzipped[:len(gzipped)/2])
			},
			reason: "read",
		},
		{
			name: "Content-Encoding the sidecar cannot decode",
			serve: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", kongContentType)
				w.Header().Set("Content-Encoding", "br")
				w.Write(fixture)
			},
			reason: "content_type",
		},
	}
}

// TestUpstreamFailures: whatever goes wrong with Kong, the answer is 200
// with the sidecar's own metrics only, upstream_up 0 and the reason
// counted; and the next good fetch is served whole again, never the page
// of a fetch before the failure.
func TestUpstreamFailures(t *testing.T) {
	fixture := readFixture(t)
	for _, tc := range failures(t, fixture) {
		t.Run(tc.name, func(t *testing.T) {
			var failing atomic.Bool
			url := closedURL(t)
			if tc.serve != nil {
				url = newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
					if failing.Load() {
						tc.serve(w, r)
						return
					}
					serveKong(fixture)(w, r)
				}).URL
			}
			// The good scrapes have newHandler's minute: only the failing
			// one is cut short, so a slow machine cannot make a good
			// fetch time out.
			h := newHandler(t, proxy.Options{UpstreamURL: url, MaxUpstreamBytes: tc.maxBytes})
			wantErrors := map[string]float64{tc.reason: 1}

			var good scraped
			if tc.serve != nil {
				good = scrape(t, h, nil)
				checkGolden(t, good.kong)
				good.checkUp(t, 1, nil)
				failing.Store(true)
			}

			if tc.timeout != 0 {
				proxy.SetTimeout(h, tc.timeout)
			}
			bad := scrape(t, h, nil)
			proxy.SetTimeout(h, time.Minute)
			bad.checkNoKong(t)
			bad.checkUp(t, 0, wantErrors)

			if tc.serve == nil {
				return
			}
			failing.Store(false)
			again := scrape(t, h, nil)
			sameKong(t, "the good fetch after the failure", again.kong, good.kong)
			again.checkUp(t, 1, wantErrors)
			again.checkKept(t)
		})
	}
}

// TestUpstreamQuirks: pages that are odd but readable are rewritten in full.
func TestUpstreamQuirks(t *testing.T) {
	fixture := readFixture(t)
	const commandRoute = "kong.command.command.api.example.com.80"
	// lastKept ends the last line the tutorial's selection keeps.
	lastKept := bytes.Index(fixture, []byte(`kong_upstream_latency_ms_sum{service="kong.command.80"`))
	lastKept += bytes.IndexByte(fixture[lastKept:], '\n')
	// withLine inserts a kong/command line, whose route label is n bytes
	// long, before Kong's first kong_upstream_latency_ms_count line.
	withLine := func(n int) ([]byte, string) {
		route := strings.Repeat("r", n)
		line := `kong_upstream_latency_ms_count{service="kong.command.80",route="` + route + `",workspace="default"} 7` + "\n"
		at := bytes.Index(fixture, []byte("kong_upstream_latency_ms_count{"))
		return bytes.Join([][]byte{fixture[:at], []byte(line), fixture[at:]}, nil), route
	}
	longPage, _ := withLine(maxLineBytes + 1)
	wideLine, wideRoute := withLine(200 << 10) // over the read buffer, under the line limit
	gzipped := gzipBytes(t, fixture)

	tests := []struct {
		name     string
		serve    http.HandlerFunc
		maxBytes int64
		same     bool                          // the Kong part is that of Kong's page as it is (plainKong)
		noGolden bool                          // the Kong part is too large for a golden file; check looks at it
		check    func(t *testing.T, s scraped) // more checks
	}{
		{
			name:  "Kong's page",
			serve: serveKong(fixture),
			same:  true,
		},
		{
			name:     "page exactly MaxUpstreamBytes long",
			serve:    serveKong(fixture),
			maxBytes: int64(len(fixture)),
			same:     true,
		},
		{
			name:  "no final newline",
			serve: serveKong(fixture[:lastKept]),
			same:  true,
		},
		{
			name: "gzip from a proxy in between",
			serve: func(w http.ResponseWriter, r *http.Request) {
				if r.Header.Get("Accept-Encoding") != "gzip" {
					http.Error(w, "the sidecar must ask for gzip", http.StatusBadRequest)
					return
				}
				w.Header().Set("Content-Type", kongContentType)
				w.Header().Set("Content-Encoding", "gzip")
				writeChunked(w, gzipped)
			},
			same: true,
		},
		{
			name:  "CRLF line ends",
			serve: serveKong(bytes.ReplaceAll(fixture, []byte("\n"), []byte("\r\n"))),
			same:  true,
		},
		{
			name:  "no Content-Type",
			serve: func(w http.ResponseWriter, r *http.Request) { w.Header()["Content-Type"] = nil; w.Write(fixture) },
			// Without a Content-Type Go's server would sniff one; nil stops that.
			same: true,
		},
		{
			name:  "a line over 1 MiB is dropped, the rest kept",
			serve: serveKong(longPage),
			same:  true,
			check: func(t *testing.T, s scraped) {
				if got := s.value(t, ownPrefix+"series_dropped", "reason", "malformed"); got != 1 {
					t.Errorf("series_dropped{reason=\"malformed\"} = %v, want 1", got)
				}
			},
		},
		{
			name:     "a line longer than the read buffer is kept",
			serve:    serveKong(wideLine),
			noGolden: true,
			check: func(t *testing.T, s scraped) {
				mf := s.families["kong_upstream_latency_ms"]
				found := false
				for _, m := range mf.GetMetric() {
					if labelValue(m, "route") == wideRoute {
						found = true
						if got := labelValue(m, "exported_service"); got != "command" {
							t.Errorf("the long line's exported_service = %q, want command", got)
						}
					}
				}
				if !found {
					t.Errorf("the %d-byte line is missing", len(wideRoute))
				}
			},
		},
		{
			name: "invalid UTF-8 and NUL bytes in label values",
			serve: serveKong(bytes.ReplaceAll(fixture, []byte(`route="`+commandRoute+`"`),
				[]byte("route=\"kong.\xffcommand\x00.80\xc3\""))),
			check: func(t *testing.T, s scraped) {
				want := "kong.\uFFFDcommand\x00.80\uFFFD"
				for _, name := range []string{"kong_kong_latency_ms", "kong_request_latency_ms", "kong_upstream_latency_ms"} {
					ms := s.families[name].GetMetric()
					if len(ms) != 1 || labelValue(ms[0], "route") != want {
						t.Errorf("%s: %d series, want one with route %q:\n%s", name, len(ms), want, s.kong)
					}
				}
			},
		},
	}
	want := plainKong(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			up := newUpstream(t, tc.serve)
			h := newHandler(t, proxy.Options{UpstreamURL: up.URL, MaxUpstreamBytes: tc.maxBytes})
			s := scrape(t, h, nil)
			if !tc.noGolden {
				checkGolden(t, s.kong)
			}
			if tc.same {
				sameKong(t, "an odd but readable page", s.kong, want)
			}
			if len(s.kong) == 0 {
				t.Error("no Kong part")
			}
			s.checkUp(t, 1, nil)
			s.checkKept(t)
			if tc.check != nil {
				tc.check(t, s)
			}
		})
	}
}

// maxLineBytes mirrors the handler's limit on one line of Kong's page.
const maxLineBytes = 1 << 20

// hangingURL is the URL of a listener that accepts connections and never
// answers.
func hangingURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex // Protects conns.
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return "http://" + ln.Addr().String() + "/metrics"
}

// deadlineRecorder is a RoundTripper that keeps, for the last request, the
// deadline of its context and when RoundTrip was called (closing called
// then), and the context's error once the request ended, and hands the
// request on to next.
type deadlineRecorder struct {
	next       http.RoundTripper
	calledOnce sync.Once
	called     chan struct{}

	mu       sync.Mutex // Protects the fields below.
	deadline time.Time
	calledAt time.Time
	finished bool
	ended    error
}

func newDeadlineRecorder(next http.RoundTripper) *deadlineRecorder {
	return &deadlineRecorder{next: next, called: make(chan struct{})}
}

func (d *deadlineRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	calledAt := time.Now()
	deadline, _ := req.Context().Deadline()
	d.mu.Lock()
	d.deadline, d.calledAt = deadline, calledAt
	d.mu.Unlock()
	d.calledOnce.Do(func() { close(d.called) })
	resp, err := d.next.RoundTrip(req)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.finished, d.ended = true, req.Context().Err()
	return resp, err
}

// TestScrapeTimeoutHeader: the fetch runs under the options' timeout
// whatever a scraper's X-Prometheus-Scrape-Timeout-Seconds says; that
// header, less a margin, only ends the scraper's own wait, when it is the
// smaller one, and the fetch goes on. The fetch's deadline is read off its
// context rather than timed: the handler sets it between start and the
// call to the transport, so deadline-called <= timeout <= deadline-start
// holds exactly, however slow the machine.
func TestScrapeTimeoutHeader(t *testing.T) {
	tests := []struct {
		name    string
		header  string
		timeout time.Duration // the options': the fetch's
		wait    time.Duration // the scrape's own, when shorter than the fetch's
	}{
		{"header smaller than the options", "1", time.Minute, 500 * time.Millisecond},
		{"fraction of a second", "0.4", time.Minute, 200 * time.Millisecond}, // half, the margin being larger
		{"the shared short one", shortScrapeTimeout, time.Minute, shortTimeout},
		{"options smaller than the header", "30", shortTimeout, 0},
		{"header not a number", "soon", shortTimeout, 0},
		{"negative header", "-1", shortTimeout, 0},
		{"header too large for a Duration", "1e300", shortTimeout, 0},
		{"infinite header", "+Inf", shortTimeout, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			transport := &http.Transport{Proxy: nil, DisableCompression: true}
			t.Cleanup(transport.CloseIdleConnections)
			rec := newDeadlineRecorder(transport)
			h := newHandler(t, proxy.Options{UpstreamURL: hangingURL(t), Timeout: tc.timeout, Client: &http.Client{Transport: rec}})
			start := time.Now()
			answer := serve(h, http.MethodGet, "/metrics", http.Header{"X-Prometheus-Scrape-Timeout-Seconds": {tc.header}})
			waited := time.Since(start)
			<-rec.called

			rec.mu.Lock()
			deadline, called, finished, ended := rec.deadline, rec.calledAt, rec.finished, rec.ended
			rec.mu.Unlock()
			switch {
			case deadline.IsZero():
				t.Fatal("the fetch had no deadline")
			case deadline.Sub(called) > tc.timeout || deadline.Sub(start) < tc.timeout:
				t.Errorf("fetch deadline %v after the scrape began and %v after the fetch did; want the options' timeout of %v",
					deadline.Sub(start), deadline.Sub(called), tc.timeout)
			}
			s := checkAnswer(t, answer)
			s.checkNoKong(t)
			if tc.wait > 0 {
				// The scrape stopped waiting on its own timeout (a timer
				// never fires early), while the fetch goes on for others.
				if waited < tc.wait {
					t.Errorf("the scrape gave up after %v, before its own timeout of %v", waited, tc.wait)
				}
				if finished {
					t.Errorf("the fetch ended (%v) with the scrape's wait: it must go on under the options' timeout", ended)
				}
				return
			}
			if !errors.Is(ended, context.DeadlineExceeded) {
				t.Errorf("the fetch ended with its context's error %v, want the deadline: it must end only then", ended)
			}
			s.checkUp(t, 0, map[string]float64{"timeout": 1})
		})
	}
}

// TestConcurrentScrapesShareOneFetch: scrapes that arrive while a fetch
// runs wait for it rather than fetching again.
func TestConcurrentScrapesShareOneFetch(t *testing.T) {
	const n = 50
	fixture := readFixture(t)
	allArrived := make(chan struct{})
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-allArrived:
		case <-r.Context().Done():
			return
		}
		waitForScrapes(n)
		serveKong(fixture)(w, r)
	})
	rw := commandLatency()
	var arrived atomic.Int32
	h := newHandler(t, proxy.Options{UpstreamURL: up.URL, Rewriter: func() *relabel.Rewriter {
		// The handler calls this once per scrape, just before it joins the fetch.
		if arrived.Add(1) == n {
			close(allArrived)
		}
		return rw
	}})

	bodies := make([][]byte, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { bodies[i] = serve(h, http.MethodGet, "/metrics", nil).Body.Bytes() })
	}
	wg.Wait()

	if got := up.requests.Load(); got != 1 {
		t.Errorf("%d concurrent scrapes made %d upstream requests, want 1", n, got)
	}
	first := splitKong(t, bodies[0])
	checkGolden(t, first)
	for i, body := range bodies {
		if kong := splitKong(t, body); !bytes.Equal(kong, first) {
			t.Errorf("scrape %d got a different Kong part:\n%s", i, golden.FirstDiff(first, kong))
		}
	}
	s := scraped{body: bodies[n-1], families: parseStrictly(t, bodies[n-1])}
	if got := s.value(t, ownPrefix+"upstream_fetches_total"); got != 1 {
		t.Errorf("upstream_fetches_total = %v, want 1", got)
	}
}

// waitForScrapes waits until n goroutines are blocked inside the
// handler's ServeHTTP, which they only are while waiting for a fetch: the
// Rewriter call that counts arrivals comes a few statements before the
// join, and the fetch must not end in between. If the count is not reached
// within a deadline (a handler that blocks some other way), it returns
// anyway and the request count tells.
func waitForScrapes(n int) {
	deadline := time.Now().Add(time.Minute) // only a broken handler waits this long
	buf := make([]byte, 1<<20)
	for time.Now().Before(deadline) {
		for {
			k := runtime.Stack(buf, true)
			if k < len(buf) {
				buf = buf[:k]
				break
			}
			buf = make([]byte, 2*len(buf))
		}
		waiting := 0
		for g := range strings.SplitSeq(string(buf), "\n\n") {
			header, _, _ := strings.Cut(g, "\n")
			// Not "[sync.Mutex.Lock]": one blocked there may not have joined yet.
			blocked := strings.Contains(header, "[select") || strings.Contains(header, "[chan receive")
			if blocked && strings.Contains(g, "/proxy.(*Handler).ServeHTTP(") {
				waiting++
			}
		}
		if waiting >= n {
			return
		}
		buf = buf[:cap(buf)]
		runtime.Gosched()
	}
}
