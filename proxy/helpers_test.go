package proxy_test

import (
	"bytes"
	"compress/gzip"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/golden"
	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/testsupport/kongsim"
	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/proxy"
	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/relabel"
)

// checkGolden compares kong, the Kong part of an answer, with the golden
// file of the test (or subtest) t alone: testdata/<its name>.golden. One
// file per case, so that -update writes each from its own output; cases
// that must give the same answer as another say so with sameKong.
func checkGolden(t *testing.T, kong []byte) {
	t.Helper()
	golden.Check(t, goldenPath(t), kong)
}

// goldenPath is t's golden file: its name, each subtest a directory, with
// anything but letters, digits, '-', '_' and '.' made '_'.
func goldenPath(t *testing.T) string {
	parts := strings.Split(t.Name(), "/")
	for i, p := range parts {
		parts[i] = strings.Map(func(r rune) rune {
			if r < utf8.RuneSelf && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_.", r)) {
				return r
			}
			return '_'
		}, p)
	}
	return filepath.Join("testdata", filepath.Join(parts...)+".golden")
}

// sameKong fails t unless got, the Kong part of an answer, is byte for byte
// want, the Kong part of the answer it must equal.
func sameKong(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Errorf("%s: the Kong part differs from the one it must equal:\n%s", what, golden.FirstDiff(want, got))
	}
}

// plainKong is the Kong part of the answer to a scrape of Kong's page, as
// served by serveKong, under the tutorial's selection: what every page
// that only looks different must be rewritten to.
func plainKong(t *testing.T) []byte {
	t.Helper()
	up := newUpstream(t, serveKong(readFixture(t)))
	return scrape(t, newHandler(t, proxy.Options{UpstreamURL: up.URL}), nil).kong
}

// kongContentType is what Kong's status listener answers with.
const kongContentType = "text/plain; charset=UTF-8"

// ownPrefix starts the names of the sidecar's own metrics.
const ownPrefix = "kong_metrics_sidecar_"

// errorReasons are the values of upstream_errors_total's reason label; the
// handler must expose all of them from the start.
var errorReasons = []string{"connect", "timeout", "status", "content_type", "too_large", "read"}

var (
	command = relabel.Service{Namespace: "kong", Name: "command"}
	billing = relabel.Service{Namespace: "default", Name: "billing"}
)

// commandLatency is the selection of Kong's autoscaling tutorial.
func commandLatency() *relabel.Rewriter {
	return relabel.New(relabel.Selection{Services: map[relabel.Service]relabel.Metrics{command: relabel.Latency}})
}

func billingBandwidth() *relabel.Rewriter {
	return relabel.New(relabel.Selection{Services: map[relabel.Service]relabel.Metrics{billing: relabel.Bandwidth}})
}

func readFixture(t *testing.T) []byte {
	t.Helper()
	page := kongsim.Sample()
	return page
}

// upstream is a fake Kong that counts the requests it gets.
type upstream struct {
	*httptest.Server
	requests atomic.Int64
}

func newUpstream(t *testing.T, h http.HandlerFunc) *upstream {
	t.Helper()
	u := &upstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.requests.Add(1)
		h(w, r)
	}))
	t.Cleanup(u.Close)
	return u
}

// serveKong answers as Kong's status listener does: text/plain, chunked.
func serveKong(page []byte) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", kongContentType)
		writeChunked(w, page)
	}
}

// writeChunked writes body in flushed pieces, so that it goes out chunked.
func writeChunked(w http.ResponseWriter, body []byte) {
	rc := http.NewResponseController(w)
	for piece := range slices.Chunk(body, 4<<10) {
		if _, err := w.Write(piece); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
}

// closedURL is the URL of a port nothing listens on any more.
func closedURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return "http://" + addr + "/metrics"
}

// newHandler fills the options a test leaves out: a minute's timeout (it
// only turns a hung fetch into a failure, however slow the machine; tests
// of timeouts set their own), an 8 MiB limit, the tutorial's selection, a
// fresh registry and a no-op logger.
func newHandler(t *testing.T, o proxy.Options) *proxy.Handler {
	t.Helper()
	if o.Timeout == 0 {
		o.Timeout = time.Minute
	}
	if o.MaxUpstreamBytes == 0 {
		o.MaxUpstreamBytes = 8 << 20
	}
	if o.Rewriter == nil {
		rw := commandLatency()
		o.Rewriter = func() *relabel.Rewriter { return rw }
	}
	if o.Registry == nil {
		o.Registry = prometheus.NewRegistry()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return proxy.NewHandler(o)
}

// serve runs one request through h. It does not use t, so goroutines may call it.
func serve(h http.Handler, method, target string, header http.Header) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, nil)
	for k, vs := range header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// scraped is one /metrics answer, checked and taken apart.
type scraped struct {
	body     []byte // uncompressed
	kong     []byte // Kong's rewritten series, before the sidecar's own metrics
	families map[string]*dto.MetricFamily
}

// scrape GETs /metrics from h with header and checks what every answer
// must be: 200, the text format's content type, a body that a strict
// parser takes, Kong's part first and the sidecar's own metrics last.
func scrape(t *testing.T, h http.Handler, header http.Header) scraped {
	t.Helper()
	return checkAnswer(t, serve(h, http.MethodGet, "/metrics", header))
}

func checkAnswer(t *testing.T, rec *httptest.ResponseRecorder) scraped {
	t.Helper()
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d, want 200; body:\n%s", rec.Code, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "text/plain; version=0.0.4; charset=utf-8" {
		t.Errorf("Content-Type %q, want text format 0.0.4", ct)
	}
	body := rec.Body.Bytes()
	if rec.Header().Get("Content-Encoding") == "gzip" {
		body = gunzip(t, body)
	}
	kong := splitKong(t, body)
	return scraped{body: body, kong: kong, families: parseStrictly(t, body)}
}

// splitKong returns the part of body before the sidecar's own metrics, and
// fails when own metrics are missing or a Kong line follows them.
func splitKong(t *testing.T, body []byte) []byte {
	t.Helper()
	start := []byte("# HELP " + ownPrefix)
	i := bytes.Index(body, start)
	if i < 0 {
		t.Fatalf("no sidecar metrics in the answer:\n%s", body)
	}
	if i > 0 && body[i-1] != '\n' {
		t.Fatalf("the sidecar's metrics do not start on a line of their own:\n%s", body)
	}
	if lines := kongLines(body[i:]); len(lines) > 0 {
		t.Fatalf("Kong lines after the sidecar's metrics: %q", lines)
	}
	return body[:i]
}

// kongLines returns the series, HELP and TYPE lines of Kong's families in page.
func kongLines(page []byte) []string {
	var lines []string
	for line := range bytes.Lines(page) {
		name := line
		if rest, ok := bytes.CutPrefix(line, []byte("# HELP ")); ok {
			name = rest
		} else if rest, ok := bytes.CutPrefix(line, []byte("# TYPE ")); ok {
			name = rest
		}
		if bytes.HasPrefix(name, []byte("kong_")) && !bytes.HasPrefix(name, []byte(ownPrefix)) {
			lines = append(lines, string(line))
		}
	}
	return lines
}

// seriesLines counts the sample lines of page.
func seriesLines(page []byte) int {
	n := 0
	for line := range bytes.Lines(page) {
		if len(bytes.TrimSpace(line)) > 0 && line[0] != '#' {
			n++
		}
	}
	return n
}

func parseStrictly(t *testing.T, body []byte) map[string]*dto.MetricFamily {
	t.Helper()
	parser := expfmt.NewTextParser(model.LegacyValidation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("a strict parser rejects the answer: %v\n%s", err, body)
	}
	return families
}

func gunzip(t *testing.T, b []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("body is not gzip: %v", err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("decompressing the body: %v", err)
	}
	return out
}

func gzipBytes(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// value returns the sample of the family name whose labels include the
// name/value pairs in labels, and fails when there is none.
func (s scraped) value(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	mf := s.families[name]
	if mf == nil {
		t.Fatalf("no family %s in the answer:\n%s", name, s.body)
	}
next:
	for _, m := range mf.GetMetric() {
		for i := 0; i+1 < len(labels); i += 2 {
			if labelValue(m, labels[i]) != labels[i+1] {
				continue next
			}
		}
		switch {
		case m.GetGauge() != nil:
			return m.GetGauge().GetValue()
		case m.GetCounter() != nil:
			return m.GetCounter().GetValue()
		case m.GetUntyped() != nil:
			return m.GetUntyped().GetValue()
		}
		t.Fatalf("%s%v is neither gauge nor counter", name, labels)
	}
	t.Fatalf("no series %s%v in the answer:\n%s", name, labels, s.body)
	return 0
}

func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func labelMap(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

// checkUp checks upstream_up and that upstream_errors_total is wantErrors
// for every reason (0 where not given).
func (s scraped) checkUp(t *testing.T, up float64, wantErrors map[string]float64) {
	t.Helper()
	if got := s.value(t, ownPrefix+"upstream_up"); got != up {
		t.Errorf("upstream_up = %v, want %v", got, up)
	}
	for _, reason := range errorReasons {
		if got := s.value(t, ownPrefix+"upstream_errors_total", "reason", reason); got != wantErrors[reason] {
			t.Errorf("upstream_errors_total{reason=%q} = %v, want %v", reason, got, wantErrors[reason])
		}
	}
}

// checkNoKong checks an answer to a failed fetch: the sidecar's metrics only.
func (s scraped) checkNoKong(t *testing.T) {
	t.Helper()
	if len(s.kong) > 0 {
		t.Errorf("answer has a Kong part after a failed fetch:\n%s", s.kong)
	}
	if lines := kongLines(s.body); len(lines) > 0 {
		t.Errorf("answer has Kong lines after a failed fetch: %q", lines)
	}
}

// checkKept checks that series_kept counts the series lines of the Kong part.
func (s scraped) checkKept(t *testing.T) {
	t.Helper()
	if got, want := s.value(t, ownPrefix+"series_kept"), float64(seriesLines(s.kong)); got != want {
		t.Errorf("series_kept = %v, but the Kong part has %v series lines", got, want)
	}
}
