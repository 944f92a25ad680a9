package proxy_test

import (
	"bytes"
	stdgzip "compress/gzip"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/testsupport/kongsim"
	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/relabel"
)

// pageSelection selects Services of the N-route page for latency and
// status codes, as an extension file would: n of them spread over the
// page, or all of them when n is 0.
func pageSelection(routes, n int) relabel.Selection {
	svcs := kongsim.PageServices(routes)
	sel := relabel.Selection{Services: map[relabel.Service]relabel.Metrics{}, Mappings: map[string]relabel.Service{}}
	pick := svcs
	if n > 0 {
		pick = nil
		for i := range n {
			pick = append(pick, svcs[(2*i+1)*len(svcs)/(2*n)])
		}
	}
	for _, s := range pick {
		svc := relabel.Service{Namespace: s.Namespace, Name: s.ServiceName}
		sel.Services[svc] = relabel.Latency | relabel.StatusCode
		if strings.HasPrefix(s.Name, "httproute.") {
			sel.Mappings[s.Name] = svc
		}
	}
	return sel
}

var (
	benchPagesMu sync.Mutex // Protects benchPages.
	benchPages   = map[int][]byte{}
)

// simPage returns the simulator's N-route page, made once per process.
func simPage(tb testing.TB, routes int) []byte {
	tb.Helper()
	benchPagesMu.Lock()
	defer benchPagesMu.Unlock()
	if p, ok := benchPages[routes]; ok {
		return p
	}
	var buf bytes.Buffer
	if err := kongsim.WritePage(&buf, routes); err != nil {
		tb.Fatal(err)
	}
	benchPages[routes] = buf.Bytes()
	return buf.Bytes()
}

// rewritten is the Kong part of an answer for the N-route page.
func rewritten(tb testing.TB, routes, selected int) []byte {
	p := relabel.New(pageSelection(routes, selected)).NewPage()
	var out []byte
	for line := range bytes.Lines(simPage(tb, routes)) {
		out = p.AppendLine(out, bytes.TrimSuffix(line, []byte("\n")))
	}
	return out
}

// BenchmarkCompress compares the compressors the handler could use on the
// rewritten page: the standard library's gzip against
// github.com/klauspost/compress's gzip and zstd. MB/s is of uncompressed
// input; x-smaller is the compression ratio. The handler uses the
// fastest one whose ratio is close to the best (docs/performance.md).
func BenchmarkCompress(b *testing.B) {
	// Each compressor is made once and Reset for every page, as the
	// handler's pools do.
	type resetter interface {
		io.WriteCloser
		Reset(io.Writer)
	}
	type compressor struct {
		name string
		new  func() resetter
	}
	stdLevel := func(level int) func() resetter {
		return func() resetter { z, _ := stdgzip.NewWriterLevel(nil, level); return z }
	}
	kpLevel := func(level int) func() resetter {
		return func() resetter { z, _ := gzip.NewWriterLevel(nil, level); return z }
	}
	zstdLevel := func(level zstd.EncoderLevel) func() resetter {
		return func() resetter {
			z, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(level), zstd.WithEncoderConcurrency(1))
			return z
		}
	}
	compressors := []compressor{
		{"stdlib-gzip-1", stdLevel(stdgzip.BestSpeed)},
		{"stdlib-gzip-2", stdLevel(2)},
		{"stdlib-gzip-6", stdLevel(stdgzip.DefaultCompression)},
		{"stdlib-gzip-huffman", stdLevel(stdgzip.HuffmanOnly)},
		{"klauspost-gzip-1", kpLevel(gzip.BestSpeed)},
		{"klauspost-gzip-2", kpLevel(2)},
		{"klauspost-gzip-3", kpLevel(3)},
		{"klauspost-gzip-6", kpLevel(gzip.DefaultCompression)},
		{"klauspost-gzip-huffman", kpLevel(gzip.HuffmanOnly)},
		{"klauspost-zstd-fastest", zstdLevel(zstd.SpeedFastest)},
		{"klauspost-zstd-default", zstdLevel(zstd.SpeedDefault)},
	}
	for _, sel := range []struct {
		name string
		n    int
	}{{"typical", 5}, {"all", 0}} {
		in := rewritten(b, 1000, sel.n)
		for _, c := range compressors {
			b.Run(fmt.Sprintf("routes=1000/sel=%s/%s", sel.name, c.name), func(b *testing.B) {
				var out bytes.Buffer
				z := c.new()
				b.SetBytes(int64(len(in)))
				b.ReportAllocs()
				for b.Loop() {
					out.Reset()
					z.Reset(&out)
					if _, err := z.Write(in); err != nil {
						b.Fatal(err)
					}
					if err := z.Close(); err != nil {
						b.Fatal(err)
					}
					if out.Len() == 0 || out.Len() >= len(in) {
						b.Fatalf("%d bytes compressed to %d", len(in), out.Len())
					}
				}
				b.ReportMetric(float64(len(in))/float64(out.Len()), "x-smaller")
			})
		}
	}
}
