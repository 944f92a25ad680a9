package relabel

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// TestKnownTails checks lines whose labels after the key are a tail the
// key had before: each case's page comes after a page that taught the
// Rewriter the tail `,route="r",workspace="default"`, and must be
// rewritten as the reference does.
func TestKnownTails(t *testing.T) {
	const teach = `kong_upstream_latency_ms_bucket{service="kong.command.80",route="r",workspace="default",le="1"} 7` + "\n"
	const name = `kong_request_latency_ms`
	const head = `{service="kong.command.80",route="r",workspace="default"`
	cases := map[string]string{
		"count":               name + `_count` + head + `} 3`,
		"sum with exponent":   name + `_sum` + head + `} 1.5e+3`,
		"first bucket":        name + `_bucket` + head + `,le="1"} 7` + "\n" + name + `_bucket` + head + `,le="+Inf"} 9`,
		"float le":            name + `_bucket` + head + `,le="0.25"} 7`,
		"bad le":              name + `_bucket` + head + `,le="x"} 7`,
		"le not last":         name + `_bucket` + head + `,le="1",a="b"} 7`,
		"another label after": name + `_count` + head + `,a="b"} 3`,
		"reserved after":      name + `_count` + head + `,kubernetes_name="x"} 3`,
		"service again":       name + `_count` + head + `,service="x"} 3`,
		"bad sample":          name + `_count` + head + `} x`,
		"trailing blank":      name + `_count` + head + `} 3 `,
		"timestamp":           name + `_count` + head + `} 3 1700000000000`,
		"nothing after":       name + `_count` + head,
		"longer value":        name + `_count{service="kong.command.80",route="r",workspace="defaults"} 3`,
		"shorter value":       name + `_count{service="kong.command.80",route="r",workspace="d"} 3`,
		"other key":           name + `_count{service="kong.command.81",route="r",workspace="default"} 3`,
	}
	sel := Selection{Services: map[Service]Metrics{command: Latency}}
	for desc, page := range cases {
		t.Run(desc, func(t *testing.T) {
			rw := New(sel)
			rewriteAll(rw, []byte(teach))
			if tails := rw.cache[keyService]["kong.command.80"].tails.Load(); tails == nil || len(tails.tails) != 1 {
				t.Fatalf("the first page taught no tail: %v", tails)
			}
			want, wantStats := refRewriteAll(newReference(sel), []byte(page))
			got, gotStats := rewriteAll(rw, []byte(page))
			if !bytes.Equal(got, want) || gotStats != wantStats {
				t.Errorf("input:\n%s\n got %+v:\n%s\nwant %+v:\n%s", page, gotStats, got, wantStats, want)
			}
		})
	}
}

// TestTailBounds checks that the tails a Rewriter remembers stay bounded
// per key and in total.
func TestTailBounds(t *testing.T) {
	line := func(svc, route string) string {
		return fmt.Sprintf(`kong_upstream_latency_ms_bucket{service=%q,route=%q,workspace="default",le="1"} 7`+"\n", svc, route)
	}
	var page strings.Builder
	for i := range maxTailsPerTarget + 3 {
		page.WriteString(line("kong.command.80", fmt.Sprint("route-", i)))
	}
	page.WriteString(line("kong.command.81", strings.Repeat("r", maxTailLen)))
	rw := New(Selection{Services: map[Service]Metrics{command: Latency}})
	_, stats := rewriteAll(rw, []byte(page.String()))
	if stats.Kept != maxTailsPerTarget+4 {
		t.Fatalf("kept %d lines, want %d", stats.Kept, maxTailsPerTarget+4)
	}
	if n := len(rw.cache[keyService]["kong.command.80"].tails.Load().tails); n != maxTailsPerTarget {
		t.Errorf("one key holds %d tails, want %d", n, maxTailsPerTarget)
	}
	if tails := rw.cache[keyService]["kong.command.81"].tails.Load(); tails != nil {
		t.Errorf("a tail longer than %d bytes was kept", maxTailLen)
	}

	rw = New(Selection{Services: map[Service]Metrics{command: Latency}})
	page.Reset()
	long := strings.Repeat("r", maxTailLen-40)
	for i := range 2 * maxTailBytes / maxTailLen {
		page.WriteString(line(fmt.Sprint("kong.command.", i), long))
	}
	rewriteAll(rw, []byte(page.String()))
	if n := rw.tailBytes.Load(); n > maxTailBytes || n < maxTailBytes-maxTailLen {
		t.Errorf("the tails hold %d bytes, want at most %d and close to it", n, maxTailBytes)
	}
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
