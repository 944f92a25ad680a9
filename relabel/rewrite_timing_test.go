package relabel

import (
	"bytes"
	"fmt"
	"io"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/testsupport/kongsim"
)

// The benchmarks run on the Kong simulator's N-route page with every
// toggle on, under two selections with latency and status codes: five
// Services (typical) and every Service (all). Each one checks its result
// inside the loop; BenchmarkVersus runs ours and both baselines in turn
// in the same loop and reports the ratios.

var benchRoutes = []int{100, 1000, 10000}

var benchSelections = []struct {
	name string
	sel  func(routes int) Selection
}{{"typical", typicalSelection}, {"all", allSelected}}

var (
	pagesMu sync.Mutex // Protects pages.
	pages   = map[int][]byte{}
)

// benchPage returns the N-route page, generated once per test process.
func benchPage(b *testing.B, routes int) []byte {
	b.Helper()
	pagesMu.Lock()
	defer pagesMu.Unlock()
	if page, ok := pages[routes]; ok {
		return page
	}
	var buf bytes.Buffer
	if err := kongsim.WritePage(&buf, routes); err != nil {
		b.Fatal(err)
	}
	pages[routes] = buf.Bytes()
	return buf.Bytes()
}

// benchCase is a page, a selection and what the reference makes of them.
type benchCase struct {
	page      []byte
	sel       Selection
	wantLen   int
	wantStats Stats
}

var (
	casesMu sync.Mutex // Protects cases.
	cases   = map[string]*benchCase{}
)

func getBenchCase(b *testing.B, routes int, selName string, sel func(int) Selection) *benchCase {
	b.Helper()
	page := benchPage(b, routes)
	casesMu.Lock()
	defer casesMu.Unlock()
	key := fmt.Sprint(routes, selName)
	if c, ok := cases[key]; ok {
		return c
	}
	c := &benchCase{page: page, sel: sel(routes)}
	want, stats := refRewriteAll(newReference(c.sel), page)
	// The whole output is compared once here; the loops compare its
	// length and the counts, which a wrong line would change too.
	got, gotStats := rewriteAll(New(c.sel), page)
	if !bytes.Equal(got, want) || gotStats != stats {
		b.Fatalf("the rewriter and the reference disagree on the %d-route page", routes)
	}
	c.wantLen, c.wantStats = len(want), stats
	cases[key] = c
	return c
}

func runBench(b *testing.B, f func(b *testing.B, c *benchCase)) {
	for _, routes := range benchRoutes {
		for _, s := range benchSelections {
			b.Run(fmt.Sprintf("routes=%d/sel=%s", routes, s.name), func(b *testing.B) {
				f(b, getBenchCase(b, routes, s.name, s.sel))
			})
		}
	}
}

// rewritePage is what the proxy does with a page: line by line into a
// buffer that it hands on (to the compressor, when the rewrite is large)
// each time 256 KiB are written, as the proxy's spool does. It returns the
// buffer with the part not handed on, and the length of the whole rewrite.
func rewritePage(rw *Rewriter, page, dst []byte) ([]byte, int, Stats) {
	const handOn = 256 << 10
	p := rw.NewPage()
	defer p.Release()
	n := 0
	for len(page) > 0 {
		line := page
		if i := bytes.IndexByte(page, '\n'); i >= 0 {
			line, page = page[:i], page[i+1:]
		} else {
			page = nil
		}
		dst = p.AppendLine(dst, line)
		if len(dst) >= handOn {
			n += len(dst)
			dst = dst[:0]
		}
	}
	return dst, n + len(dst), p.Stats()
}

func (c *benchCase) check(b *testing.B, n int, stats Stats) {
	if n != c.wantLen || stats != c.wantStats {
		b.Fatalf("got %d bytes and %+v, want %d bytes and %+v", n, stats, c.wantLen, c.wantStats)
	}
}

// BenchmarkRewrite is the rewriter as the proxy drives it. Allocations are
// per page, and do not grow with it.
func BenchmarkRewrite(b *testing.B) {
	runBench(b, func(b *testing.B, c *benchCase) {
		rw := New(c.sel)
		out, _, _ := rewritePage(rw, c.page, nil) // fills the resolution cache
		b.SetBytes(int64(len(c.page)))
		b.ReportAllocs()
		for b.Loop() {
			var n int
			var stats Stats
			out, n, stats = rewritePage(rw, c.page, out[:0])
			c.check(b, n, stats)
		}
	})
}

// BenchmarkReference is the reference rewriter, for scale.
func BenchmarkReference(b *testing.B) {
	runBench(b, func(b *testing.B, c *benchCase) {
		if len(c.page) > 10<<20 {
			b.Skip("slow; see the smaller pages")
		}
		rw := newReference(c.sel)
		b.SetBytes(int64(len(c.page)))
		b.ReportAllocs()
		for b.Loop() {
			out, stats := refRewriteAll(rw, c.page)
			c.check(b, len(out), stats)
		}
	})
}

// scanPage is the floor of any line-oriented rewriter: find each line's
// end, find `service="` in it and copy the line.
func scanPage(page, dst []byte) ([]byte, int) {
	found := 0
	for len(page) > 0 {
		line := page
		if i := bytes.IndexByte(page, '\n'); i >= 0 {
			line, page = page[:i+1], page[i+1:]
		} else {
			page = nil
		}
		if bytes.Contains(line, []byte(`service="`)) {
			found++
		}
		dst = append(dst, line...)
	}
	return dst, found
}

// BenchmarkScan is the bare per-line scan baseline.
func BenchmarkScan(b *testing.B) {
	for _, routes := range benchRoutes {
		b.Run(fmt.Sprintf("routes=%d", routes), func(b *testing.B) {
			page := benchPage(b, routes)
			out, want := scanPage(page, nil)
			b.SetBytes(int64(len(page)))
			b.ReportAllocs()
			for b.Loop() {
				var found int
				out, found = scanPage(page, out[:0])
				if found != want || len(out) != len(page) {
					b.Fatalf("found %d lines with a service label in %d bytes, want %d in %d", found, len(out), want, len(page))
				}
			}
		})
	}
}

// peerRewrite is the peer design: parse the page into dto.MetricFamily
// structs with expfmt, keep the selected series with the five labels
// added and service renamed, and encode them again with expfmt.
func peerRewrite(sel Selection, page []byte, w io.Writer) error {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(bytes.NewReader(page))
	if err != nil {
		return err
	}
	for _, fam := range families {
		mf := mfs[fam.name]
		if mf == nil {
			continue
		}
		var metrics []*dto.Metric
		for _, m := range mf.Metric {
			var svc Service
			ok := false
			for _, l := range m.Label {
				if l.GetName() != fam.keyLabel {
					continue
				}
				if svc, ok = sel.Mappings[l.GetValue()]; !ok {
					if fam.keyLabel == "upstream" {
						svc, ok = ResolveUpstreamName(l.GetValue())
					} else {
						svc, ok = ResolveServiceName(l.GetValue())
					}
				}
			}
			if !ok || sel.Services[svc]&fam.flag == 0 {
				continue
			}
			for _, l := range m.Label {
				if l.GetName() == "service" {
					l.Name = new(RenamedServiceLabel)
				}
			}
			for i, v := range [...]string{svc.Namespace, svc.Name, "Service", svc.Namespace, svc.Name} {
				m.Label = append(m.Label, &dto.LabelPair{Name: new(AddedLabels[i]), Value: new(v)})
			}
			metrics = append(metrics, m)
		}
		if len(metrics) == 0 {
			continue
		}
		mf.Metric = metrics
		if _, err := expfmt.MetricFamilyToText(w, mf); err != nil {
			return err
		}
	}
	return nil
}

// seriesIn counts the series lines of a page.
func seriesIn(page []byte) int {
	return bytes.Count(page, []byte("\n")) - bytes.Count(page, []byte("\n#")) - boolInt(bytes.HasPrefix(page, []byte("#")))
}

// BenchmarkPeer is the peer design, on the same pages and selections.
func BenchmarkPeer(b *testing.B) {
	runBench(b, func(b *testing.B, c *benchCase) {
		var buf bytes.Buffer
		b.SetBytes(int64(len(c.page)))
		b.ReportAllocs()
		for b.Loop() {
			buf.Reset()
			err := peerRewrite(c.sel, c.page, &buf)
			if kept := seriesIn(buf.Bytes()); err != nil || kept != c.wantStats.Kept {
				b.Fatalf("peer kept %d series (%v), want %d", kept, err, c.wantStats.Kept)
			}
		}
	})
}

// BenchmarkVersus runs the rewriter, the bare scan and the peer in turn on
// the same page in every iteration, and reports the rewriter's speed as
// x-peer (how many times faster than the peer) and %-of-scan (its speed
// as a share of the bare scan's). MB/s is the rewriter's alone.
func BenchmarkVersus(b *testing.B) {
	runBench(b, func(b *testing.B, c *benchCase) {
		rw := New(c.sel)
		out, _, _ := rewritePage(rw, c.page, nil)
		scanned, wantFound := scanPage(c.page, nil)
		var peerOut bytes.Buffer
		var ours, scan, peer time.Duration
		for b.Loop() {
			// The peer leaves a heap of garbage; collect it first, so
			// that no phase pays for another's.
			b.StopTimer()
			runtime.GC()
			b.StartTimer()
			start := time.Now()
			var n int
			var stats Stats
			out, n, stats = rewritePage(rw, c.page, out[:0])
			ours += time.Since(start)
			c.check(b, n, stats)

			start = time.Now()
			var found int
			scanned, found = scanPage(c.page, scanned[:0])
			scan += time.Since(start)
			if found != wantFound {
				b.Fatal("scan miscounted")
			}

			peerOut.Reset()
			start = time.Now()
			err := peerRewrite(c.sel, c.page, &peerOut)
			peer += time.Since(start)
			if kept := seriesIn(peerOut.Bytes()); err != nil || kept != c.wantStats.Kept {
				b.Fatalf("peer kept %d series (%v), want %d", kept, err, c.wantStats.Kept)
			}
		}
		n := float64(b.N)
		b.ReportMetric(0, "ns/op") // the sum of three would mislead
		b.ReportMetric(float64(len(c.page))*n/ours.Seconds()/1e6, "MB/s")
		b.ReportMetric(peer.Seconds()/ours.Seconds(), "x-peer")
		b.ReportMetric(100*scan.Seconds()/ours.Seconds(), "%-of-scan")
	})
}

// BenchmarkNextGuess measures what the targets' next links save: in every
// iteration it rewrites the page with them and with a Rewriter that does
// without (a map lookup whenever the key changes), in turn, both on a cache
// the page before filled. x-without-guess is the median over iterations of
// the time without over the time with; MB/s is with them.
func BenchmarkNextGuess(b *testing.B) {
	b.Run("tutorial", func(b *testing.B) {
		page := kongsim.Sample()
		sel := Selection{Services: map[Service]Metrics{command: Latency}}
		want, stats := refRewriteAll(newReference(sel), page)
		benchNextGuess(b, &benchCase{page: page, sel: sel, wantLen: len(want), wantStats: stats})
	})
	runBench(b, benchNextGuess)
}

func benchNextGuess(b *testing.B, c *benchCase) {
	with, without := New(c.sel), New(c.sel)
	without.noGuess = true
	rws := [2]*Rewriter{with, without}
	var outs [2][]byte
	for i, rw := range rws {
		outs[i], _, _ = rewritePage(rw, c.page, nil)
	}
	var took [2]time.Duration
	var ratios []float64
	var sum time.Duration
	for b.Loop() {
		for j := range rws {
			i := (j + len(ratios)) % 2 // alternate which goes first
			start := time.Now()
			var n int
			var stats Stats
			outs[i], n, stats = rewritePage(rws[i], c.page, outs[i][:0])
			took[i] = time.Since(start)
			c.check(b, n, stats)
		}
		sum += took[0]
		ratios = append(ratios, took[1].Seconds()/took[0].Seconds())
	}
	slices.Sort(ratios)
	b.ReportMetric(0, "ns/op") // the sum of two would mislead
	b.ReportMetric(float64(len(c.page))*float64(len(ratios))/sum.Seconds()/1e6, "MB/s")
	b.ReportMetric(ratios[len(ratios)/2], "x-without-guess")
}
