package relabel

import (
	"bytes"
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/testsupport/kongsim"
)

// TestPageAfterPage checks lines that come after an earlier page taught
// the Rewriter a key, its next link and a line of the same Service
// (`,route="r",workspace="default"` after the key): each case's page must be
// rewritten as the reference does, the same as on a fresh Rewriter.
func TestPageAfterPage(t *testing.T) {
	const teach = `kong_upstream_latency_ms_bucket{service="kong.command.80",route="r",workspace="default",le="1"} 7` + "\n" +
		`kong_upstream_latency_ms_bucket{service="default.billing.80",route="r",workspace="default",le="1"} 7` + "\n"
	const name = `kong_request_latency_ms`
	const head = `{service="kong.command.80",route="r",workspace="default"`
	cases := map[string]string{
		"count":                  name + `_count` + head + `} 3`,
		"sum with exponent":      name + `_sum` + head + `} 1.5e+3`,
		"first bucket":           name + `_bucket` + head + `,le="1"} 7` + "\n" + name + `_bucket` + head + `,le="+Inf"} 9`,
		"float le":               name + `_bucket` + head + `,le="0.25"} 7`,
		"bad le":                 name + `_bucket` + head + `,le="x"} 7`,
		"le not last":            name + `_bucket` + head + `,le="1",a="b"} 7`,
		"another label after":    name + `_count` + head + `,a="b"} 3`,
		"reserved after":         name + `_count` + head + `,kubernetes_name="x"} 3`,
		"service again":          name + `_count` + head + `,service="x"} 3`,
		"bad sample":             name + `_count` + head + `} x`,
		"trailing blank":         name + `_count` + head + `} 3 `,
		"timestamp":              name + `_count` + head + `} 3 1700000000000`,
		"nothing after":          name + `_count` + head,
		"longer value":           name + `_count{service="kong.command.80",route="r",workspace="defaults"} 3`,
		"shorter value":          name + `_count{service="kong.command.80",route="r",workspace="d"} 3`,
		"other key":              name + `_count{service="kong.command.81",route="r",workspace="default"} 3`,
		"next key differs":       name + `_count` + head + `} 3` + "\n" + name + `_count{service="default.echo-v2.80",route="r",workspace="default"} 3`, // as long as billing's
		"next key is unselected": name + `_count` + head + `} 3` + "\n" + name + `_count{service="default.billing.80",route="r",workspace="default"} 3`,
	}
	sel := Selection{Services: map[Service]Metrics{command: Latency, {Namespace: "default", Name: "echo-v2"}: Latency}}
	for desc, page := range cases {
		t.Run(desc, func(t *testing.T) {
			rw := New(sel)
			if _, stats := rewriteAll(rw, []byte(teach)); stats.Kept != 1 {
				t.Fatalf("the first page kept %d lines, want 1", stats.Kept)
			}
			if rw.cache[keyService]["kong.command.80"].next.Load() == nil {
				t.Fatal("the first page left no next link")
			}
			want, wantStats := refRewriteAll(newReference(sel), []byte(page))
			got, gotStats := rewriteAll(rw, []byte(page))
			if !bytes.Equal(got, want) || gotStats != wantStats {
				t.Errorf("input:\n%s\n got %+v:\n%s\nwant %+v:\n%s", page, gotStats, got, wantStats, want)
			}
		})
	}
}

// TestTailBounds: a page whose keys each carry many long label tails (a
// route per line) leaves a Rewriter holding no more than its resolution
// cache: nothing is remembered per line, so a page cannot grow what later
// pages carry. (The label tails it once remembered, up to 4 per key and
// 4 MiB in all, made this page leave about 2 MB more.)
func TestTailBounds(t *testing.T) {
	const keys, routes = 2000, 8
	var b strings.Builder
	for i := range keys {
		for r := range routes {
			fmt.Fprintf(&b, "kong_upstream_latency_ms_count{service=\"kong.command-%d.80\",route=\"r%d-%s\",workspace=\"default\"} 7\n", i, r, strings.Repeat("x", 200))
		}
	}
	page := []byte(b.String())
	sel := Selection{Services: map[Service]Metrics{}}
	for i := range keys {
		sel.Services[Service{Namespace: "kong", Name: fmt.Sprint("command-", i)}] = Latency
	}
	rw := New(sel)
	var base runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&base)
	if _, stats := rewriteAll(rw, page); stats.Kept != keys*routes {
		t.Fatalf("kept %d lines, want %d", stats.Kept, keys*routes)
	}
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	held := int64(after.HeapAlloc) - int64(base.HeapAlloc)
	rw.mu.RLock()
	cached := int64(rw.cachedBytes)
	rw.mu.RUnlock()
	t.Logf("%d keys with %d long tails each: %d kB held, the resolution cache counts %d kB", keys, routes, held>>10, cached>>10)
	if limit := cached + 512<<10; held > limit {
		t.Errorf("the Rewriter holds %d kB after the page, want at most its cache's %d kB and 512 kB", held>>10, cached>>10)
	}
	runtime.KeepAlive(rw)
	runtime.KeepAlive(page)
}

// TestAllDigits checks the branch-free digit test on every byte value, alone
// and after digits.
func TestAllDigits(t *testing.T) {
	for c := range 256 {
		want := c >= '0' && c <= '9'
		for _, s := range [][]byte{{byte(c)}, {'1', '2', byte(c)}, {byte(c), '7'}} {
			if got := allDigits(s); got != want {
				t.Errorf("allDigits(%q) = %v, want %v", s, got, want)
			}
		}
	}
}

// pageBreak separates the pages of one FuzzPageAfterPage input.
const pageBreak = '\f'

// FuzzPageAfterPage feeds a sequence of different pages (the input cut at
// form feeds), twice over, through one Rewriter, and requires each page's
// output and counts to be exactly the reference's for that page alone:
// nothing a page leaves in the Rewriter (resolved targets, next links)
// may change the rewrite of the pages after it. The seeds are pages that
// follow one another as Kong's do: services added, removed, reordered or
// renamed between scrapes.
func FuzzPageAfterPage(f *testing.F) {
	// Small pages keep the fuzzer fast: the sample's and two generated
	// pages' series of a counter, a histogram's counts and the upstream
	// health, with their comments.
	sample := seedPage(kongsim.Sample())
	var small, larger bytes.Buffer
	if err := kongsim.WritePage(&small, 2); err != nil {
		f.Fatal(err)
	}
	if err := kongsim.WritePage(&larger, 4); err != nil {
		f.Fatal(err)
	}
	smallPage, largerPage := seedPage(small.Bytes()), seedPage(larger.Bytes())
	var reordered, without, renamed []byte // the sample's series otherwise
	var billing [][]byte
	for line := range bytes.Lines(sample) {
		switch {
		case bytes.Contains(line, []byte(`"default.billing.8080"`)):
			renamed = append(renamed, bytes.ReplaceAll(line, []byte(`default.billing.8080`), []byte(`default.billing.80`))...)
			billing = append(billing, line)
			continue
		case bytes.Contains(line, []byte(`"kong.command.80"`)):
			renamed = append(renamed, bytes.ReplaceAll(line, []byte(`kong.command.80`), []byte(`kong.command.8080`))...)
		default:
			renamed = append(renamed, line...)
		}
		without = append(without, line...)
		reordered = append(reordered, line...)
	}
	for i := range billing { // billing's series last, in reverse
		reordered = append(reordered, billing[len(billing)-1-i]...)
	}
	pages := func(ps ...[]byte) []byte { return bytes.Join(ps, []byte{pageBreak}) }
	all := byte(0xff)
	f.Add(pages(sample, sample), all, all, all)
	f.Add(pages(sample, reordered, without, renamed), all, all, all)
	f.Add(pages(without, sample, renamed), byte(Latency), byte(0), byte(StatusCode))
	f.Add(pages(smallPage, largerPage, smallPage), all, all, all)
	f.Add(pages(largerPage, sample, smallPage), byte(Latency|StatusCode), all, byte(Bandwidth))
	// A Kong service and an upstream of the same name, which resolve apart
	// (the Admin API's tags name the service only): a key of one kind
	// must never be taken for the other's.
	service := "kong_http_requests_total{service=\"httproute.default.command.0\",code=\"200\"} 1\n"
	upstream := "kong_upstream_target_health{upstream=\"httproute.default.command.0\",target=\"t\",state=\"healthy\"} 1\n"
	f.Add(pages([]byte(service+upstream), []byte(upstream+service)), all, all, all)
	f.Fuzz(func(t *testing.T, in []byte, c, b, e byte) {
		sel := fuzzSelection([3]byte{c, b, e})
		// The generated pages' Services too, for the flags of b's high bits.
		if m := Metrics(b >> 4); m != 0 {
			for _, s := range kongsim.PageServices(4) {
				addPageService(sel, s)
				sel.Services[Service{Namespace: s.Namespace, Name: s.ServiceName}] = m
			}
		}
		seq := bytes.Split(in, []byte{pageBreak})
		ref := newReference(sel)
		rw := New(sel)
		for pass := range 2 {
			for i, page := range seq {
				want, wantStats := refRewriteAll(ref, page)
				got, gotStats := rewriteAll(rw, page)
				if !bytes.Equal(got, want) {
					t.Fatalf("pass %d, page %d of %d: output differs from the reference's\ninput:\n%q\n got:\n%s\nwant:\n%s", pass, i, len(seq), page, got, want)
				}
				if gotStats != wantStats {
					t.Fatalf("pass %d, page %d of %d: stats %+v, the reference counts %+v\ninput:\n%q", pass, i, len(seq), gotStats, wantStats, page)
				}
			}
		}
	})
}

// seedPage keeps the lines of page that belong to kong_http_requests_total,
// kong_kong_latency_ms_count and kong_upstream_target_health, comments
// included.
func seedPage(page []byte) []byte {
	var out []byte
	for line := range bytes.Lines(page) {
		for _, name := range []string{"kong_http_requests_total", "kong_kong_latency_ms", "kong_upstream_target_health"} {
			if i := bytes.Index(line, []byte(name)); i >= 0 && i <= len("# HELP ") && !bytes.Contains(line, []byte("_bucket{")) && !bytes.Contains(line, []byte("_sum{")) {
				out = append(out, line...)
				break
			}
		}
	}
	return out
}
