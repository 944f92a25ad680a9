package relabel

import (
	"bytes"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/testsupport/kongsim"
)

// This file is the reference rewriter: the plain implementation of what
// the Rewriter does fast, kept as the oracle that FuzzRewriteMatchesReference
// and the benchmarks check the fast path against. It parses every line in
// full, looks every key up in a map and builds each output line label by
// label. It shares only data with the Rewriter (families, AddedLabels, the
// resolvers), never code, so a bug in the fast path cannot hide in both.
//
// The rules it states, in the order they apply to a series line:
//
//  1. A line whose name (up to the first '{', blank or tab) is no family a
//     flag keeps is dropped as DropFamily; one of such a family without
//     labels as DropUnresolved.
//  2. When the line's first label is the family's key label (service, or
//     upstream for kong_upstream_target_health) and its value holds no
//     backslash, that value decides at once: a key that resolves to no
//     Service is DropUnresolved and one whose Service is not selected for
//     the family DropUnselected, without the rest of the line being read.
//     This is how Kong writes every line, and it lets the rewriter skip
//     the lines it drops at the speed of a scan.
//  3. Otherwise, or when the key is kept, the line is parsed in full: bad
//     syntax, a label name twice, an invalid sample value or a label the
//     rewriter adds is
//     DropMalformed; no key label is DropUnresolved; the key is the first
//     key label, and decides as in rule 2.
//     A key resolves through Mappings first, then (for the service label)
//     the Admin API Tags: kind Service gives that Service, any other kind
//     drops the line as DropMultiBackend; then the naming rules.
//  4. A kept line is written with `service` renamed to kong_service, the
//     added labels after Kong's (before le), values re-escaped where they
//     were not plain, and its family's HELP and TYPE before its first
//     kept series.

// refRewriter is the reference Rewriter.
type refRewriter struct {
	sel   Selection
	cache [2]map[string]*target
}

func newReference(sel Selection) *refRewriter {
	return &refRewriter{sel: sel, cache: [2]map[string]*target{{}, {}}}
}

func (rw *refRewriter) target(kind int, raw []byte) *target {
	if t := rw.cache[kind][string(raw)]; t != nil {
		return t
	}
	name := refUnescape(raw)
	svc, ok := rw.sel.Mappings[name]
	if _, multi := rw.sel.MultiBackend[name]; !ok && multi {
		t := &target{multi: true}
		rw.cache[kind][string(raw)] = t
		return t
	}
	if tag, seen := rw.sel.Tags[name]; !ok && kind == keyService && seen && tag.Kind != "" {
		if tag.Kind != "Service" {
			t := &target{multi: true}
			rw.cache[kind][string(raw)] = t
			return t
		}
		svc, ok = tag.Service, true
	}
	if !ok {
		if kind == keyUpstream {
			svc, ok = ResolveUpstreamName(name)
		} else {
			svc, ok = ResolveServiceName(name)
		}
	}
	t := &target{multi: !ok && IsMultiBackendName(name)}
	if ok {
		var labels []byte
		for i, v := range [...]string{svc.Namespace, svc.Name, "Service", svc.Namespace, svc.Name} {
			labels = append(labels, ","+AddedLabels[i]+`="`+v+`"`...)
		}
		t = &target{resolved: true, metrics: rw.sel.Services[svc], labels: labels}
	}
	rw.cache[kind][string(raw)] = t
	return t
}

// refPage is the reference Page.
type refPage struct {
	rw         *refRewriter
	help, typ  [len(families)][]byte
	emitted    [len(families)]bool
	stats      Stats
	unresolved map[string]bool // raw keys dropped as unresolved
}

func (rw *refRewriter) newPage() *refPage { return &refPage{rw: rw} }

type refLabel struct {
	name, value []byte
}

func (p *refPage) appendLine(dst, line []byte) []byte {
	line = bytes.TrimSuffix(line, []byte("\r"))
	if len(line) == 0 {
		return dst
	}
	if line[0] == '#' {
		p.comment(line)
		return dst
	}
	nameEnd := bytes.IndexAny(line, "{ \t")
	if nameEnd < 0 {
		p.stats.Dropped[DropMalformed]++
		return dst
	}
	fi := -1
	for i, f := range families {
		name := string(line[:nameEnd])
		if !f.histogram && name == f.name || f.histogram && (name == f.name+"_bucket" || name == f.name+"_count" || name == f.name+"_sum") {
			fi = i
		}
	}
	if fi < 0 {
		p.stats.Dropped[DropFamily]++
		return dst
	}
	fam := &families[fi]
	kind := keyService
	if fam.keyLabel == "upstream" {
		kind = keyUpstream
	}
	if line[nameEnd] != '{' {
		p.stats.Dropped[DropUnresolved]++
		return dst
	}
	// Rule 2: a plain leading key decides a drop on its own.
	if rest, ok := bytes.CutPrefix(line[nameEnd+1:], []byte(fam.keyLabel+`="`)); ok {
		if end := bytes.IndexByte(rest, '"'); end >= 0 && bytes.IndexByte(rest[:end], '\\') < 0 {
			if reason, drop := refDrop(p.rw.target(kind, rest[:end]), fam); drop {
				p.dropped(reason, rest[:end])
				return dst
			}
		}
	}
	// Rule 3.
	labels, rest, ok := refParseLabels(line[nameEnd+1:])
	names := map[string]bool{}
	for _, l := range labels {
		if names[string(l.name)] {
			ok = false // a label name twice
		}
		names[string(l.name)] = true
	}
	if !ok || !refValidSample(rest) {
		p.stats.Dropped[DropMalformed]++
		return dst
	}
	key, le := -1, -1
	for i, l := range labels {
		switch n := string(l.name); {
		case n == fam.keyLabel:
			if key < 0 {
				key = i
			}
		case n == "le":
			le = i
		case n == RenamedServiceLabel || slices.Contains(AddedLabels[:], n):
			p.stats.Dropped[DropMalformed]++
			return dst
		}
	}
	if le >= 0 && !refFloat(labels[le].value) {
		p.stats.Dropped[DropMalformed]++
		return dst
	}
	if key < 0 {
		p.stats.Dropped[DropUnresolved]++
		return dst
	}
	t := p.rw.target(kind, labels[key].value)
	if reason, drop := refDrop(t, fam); drop {
		p.dropped(reason, labels[key].value)
		return dst
	}
	// Rule 4.
	p.stats.Kept++
	if !p.emitted[fi] {
		p.emitted[fi] = true
		for _, c := range [][]byte{p.help[fi], p.typ[fi]} {
			if len(c) > 0 {
				dst = append(append(dst, c...), '\n')
			}
		}
	}
	var parts []string
	for i, l := range labels {
		if i != le {
			parts = append(parts, refFormatLabel(l))
		}
	}
	added := strings.TrimPrefix(string(t.labels), ",")
	parts = append(parts, added)
	if le >= 0 {
		parts = append(parts, refFormatLabel(labels[le]))
	}
	dst = append(dst, line[:nameEnd+1]...)
	dst = append(dst, strings.Join(parts, ",")...)
	dst = append(dst, '}')
	dst = append(dst, rest...)
	return append(dst, '\n')
}

// dropped counts a dropped series, and its raw key among the unresolved
// names the first time.
func (p *refPage) dropped(reason DropReason, raw []byte) {
	p.stats.Dropped[reason]++
	if reason != DropUnresolved {
		return
	}
	if p.unresolved == nil {
		p.unresolved = map[string]bool{}
	}
	if !p.unresolved[string(raw)] {
		p.unresolved[string(raw)] = true
		p.stats.Unresolved++
	}
}

func refDrop(t *target, fam *family) (DropReason, bool) {
	switch {
	case t.multi:
		return DropMultiBackend, true
	case !t.resolved:
		return DropUnresolved, true
	case t.metrics&fam.flag == 0:
		return DropUnselected, true
	}
	return 0, false
}

func refFormatLabel(l refLabel) string {
	name := string(l.name)
	if name == "service" {
		name = RenamedServiceLabel
	}
	var v strings.Builder
	for _, r := range refUnescape(l.value) {
		switch r {
		case '\\':
			v.WriteString(`\\`)
		case '"':
			v.WriteString(`\"`)
		case '\n':
			v.WriteString(`\n`)
		default:
			v.WriteRune(r)
		}
	}
	return name + `="` + v.String() + `"`
}

func (p *refPage) comment(line []byte) {
	var isHelp bool
	var rest []byte
	switch {
	case bytes.HasPrefix(line, []byte("# HELP ")):
		isHelp, rest = true, line[len("# HELP "):]
	case bytes.HasPrefix(line, []byte("# TYPE ")):
		rest = line[len("# TYPE "):]
	default:
		return
	}
	name, text, _ := bytes.Cut(rest, []byte(" "))
	fi := -1
	for i, f := range families {
		if f.name == string(name) {
			fi = i
		}
	}
	if fi < 0 || p.emitted[fi] {
		return
	}
	if isHelp {
		// Only \\ and \n escapes, in valid UTF-8.
		for i := 0; i < len(text); i++ {
			if text[i] == '\\' {
				if i+1 == len(text) || text[i+1] != '\\' && text[i+1] != 'n' {
					return
				}
				i++
			}
		}
		if !utf8.Valid(text) {
			return
		}
		p.help[fi] = bytes.Clone(line)
		return
	}
	typ := string(text)
	if families[fi].histogram && typ == "histogram" || !families[fi].histogram && (typ == "counter" || typ == "gauge" || typ == "untyped") {
		p.typ[fi] = bytes.Clone(line)
	}
}

// refParseLabels parses `name="value",…}` and returns the labels and what
// follows the closing brace.
func refParseLabels(s []byte) ([]refLabel, []byte, bool) {
	var labels []refLabel
	for {
		if len(s) > 0 && s[0] == '}' {
			return labels, s[1:], true
		}
		eq := bytes.IndexByte(s, '=')
		if eq <= 0 || !refLabelName(s[:eq]) || eq+1 >= len(s) || s[eq+1] != '"' {
			return nil, nil, false
		}
		l := refLabel{name: s[:eq]}
		s = s[eq+2:]
		end := -1
		for i := 0; i < len(s); i++ {
			if s[i] == '"' {
				end = i
				break
			}
			if s[i] == '\\' {
				i++
			}
		}
		if end < 0 {
			return nil, nil, false
		}
		l.value, s = s[:end], s[end+1:]
		labels = append(labels, l)
		switch {
		case len(s) > 0 && s[0] == ',':
			s = s[1:]
		case len(s) > 0 && s[0] == '}':
		default:
			return nil, nil, false
		}
	}
}

func refLabelName(b []byte) bool {
	for i, c := range b {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' && i > 0) {
			return false
		}
	}
	return len(b) > 0
}

// refValidSample checks " <value>[ <timestamp>]", blanks being spaces or tabs.
func refValidSample(rest []byte) bool {
	if len(rest) == 0 || (rest[0] != ' ' && rest[0] != '\t') {
		return false
	}
	// A trailing blank would make a strict parser want a timestamp.
	if strings.TrimRight(string(rest), " \t") != string(rest) {
		return false
	}
	fields := strings.FieldsFunc(string(rest), func(r rune) bool { return r == ' ' || r == '\t' })
	if len(fields) == 0 || len(fields) > 2 {
		return false
	}
	if !refFloat([]byte(fields[0])) {
		return false
	}
	if len(fields) == 2 {
		if _, err := strconv.ParseInt(fields[1], 10, 64); err != nil {
			return false
		}
	}
	return true
}

// refFloat: a plain integer of any length passes; anything else must be a
// float Go parses, less its hex and underscore forms.
func refFloat(v []byte) bool {
	s := string(v)
	digits := strings.TrimPrefix(s, "-")
	if digits != "" && strings.Trim(digits, "0123456789") == "" {
		return true
	}
	if strings.ContainsAny(s, "pP_") {
		return false
	}
	_, err := strconv.ParseFloat(s, 64)
	return err == nil
}

// refUnescape decodes \\, \" and \n; any other backslash stands for
// itself, and invalid UTF-8 becomes U+FFFD.
func refUnescape(raw []byte) string {
	var b strings.Builder
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c == '\\' && i+1 < len(raw) {
			switch raw[i+1] {
			case '\\', '"':
				c = raw[i+1]
				i++
			case 'n':
				c = '\n'
				i++
			}
		}
		b.WriteByte(c)
	}
	return strings.ToValidUTF8(b.String(), "\uFFFD")
}

// refRewriteAll rewrites a whole page with the reference.
func refRewriteAll(rw *refRewriter, page []byte) ([]byte, Stats) {
	p := rw.newPage()
	var out []byte
	for line := range bytes.Lines(page) {
		out = p.appendLine(out, bytes.TrimSuffix(line, []byte("\n")))
	}
	return out, p.stats
}

// fuzzSelection selects command, billing and echo (through a mapping) for
// the families the bits of b give, and maps an upstream name too.
func fuzzSelection(b [3]byte) Selection {
	sel := Selection{
		Services: map[Service]Metrics{},
		Mappings: map[string]Service{"httproute.default.echo.0": echo, "echo-upstream": echo},
		Tags: map[string]Tag{
			"httproute.default.command.0": {Kind: "Service", Service: command},
			"httproute.default.multi.0":   {Kind: "HTTPRoute", Service: Service{Namespace: "default", Name: "multi"}},
			"httproute.default.echo.0":    {Kind: "Service", Service: billing}, // Mappings win
			"default.billing.80":          {},                                  // untagged: naming rules
		},
	}
	for i, svc := range []Service{command, billing, echo} {
		if f := Metrics(b[i] & 0x0f); f != 0 {
			sel.Services[svc] = f
		}
	}
	return sel
}

// FuzzRewriteMatchesReference: the rewriter writes exactly what the
// reference writes and counts exactly what it counts, line for line.
func FuzzRewriteMatchesReference(f *testing.F) {
	page := kongsim.Sample()
	all := byte(0x0f)
	f.Add(page, all, all, all)
	f.Add(page, byte(Latency), byte(0), byte(StatusCode))
	for line := range bytes.Lines(page) {
		f.Add(line, all, byte(Bandwidth), all)
	}
	for _, s := range []string{
		"kong_upstream_latency_ms_count{service=\"kong.command.80\",route=\"a\\\\\\\"\"} 1\n",
		"kong_upstream_latency_ms_count{service=\"kong.command.80\",route=\"}\",le=\"1\"} NaN\r\n",
		"kong_upstream_latency_ms_count{service=\"kong.command.80\",route=\"\xff\x00\"} -Inf 123\n",
		"kong_upstream_latency_ms_bucket{service=\"kong.command.80\",le=\"1\",route=\"r\"} 1\n",
		"kong_upstream_latency_ms_bucket{service=\"kong.command.80\",le=\"1\",le=\"2\"} 1\n",
		"kong_upstream_latency_ms_bucket{service=\"kong.command.80\",route=\"r\",} 1\n",
		"kong_upstream_latency_ms_bucket{service=\"kong.command.80\",service=\"default.billing.80\"} 1\n",
		"kong_upstream_latency_ms_bucket{route=\"r\",service=\"kong.command.80\",service=\"default.billing.80\"} 1\n",
		"kong_upstream_latency_ms_bucket{service=\"default.other.80\",garbage\n",
		"kong_upstream_latency_ms_bucket{service=\"kong.command.80\",exported_service=\"x\"} 1\n",
		"kong_upstream_target_health{upstream=\"echo-upstream\",service=\"s\",state=\"healthy\"} 1\n",
		"kong_http_requests_total{service=\"kong.command.80\"}\t1e3\t17\n",
		"kong_http_requests_total{service=\"httproute.default.command.0\",code=\"200\"} 1\nkong_http_requests_total{service=\"httproute.default.multi.0\",code=\"200\"} 1\n",
		"kong_http_requests_total{code=\"200\",service=\"httproute.default.multi.0\"} 1\nkong_http_requests_total{service=\"httproute.default.echo.0\"} 1\n",
		"kong_http_requests_total{service=\"kong.command.80\"} 99999999999999999999999999\n",
		"kong_http_requests_total{service=\"kong.comm\\and.80\"} 1\nkong_http_requests_total{service=\"kong.command.80\"} 1\n",
		"# HELP kong_http_requests_total a\\nb\n# TYPE kong_http_requests_total counter\nkong_http_requests_total{service=\"kong.command.80\"} 1\n",
		// A label name twice, in the fast path's shapes: the first line of a
		// run, the run's last label, a bucket, the slow path.
		"kong_http_requests_total{service=\"kong.command.80\",route=\"r\",code=\"200\",code=\"500\"} 1\n",
		"kong_http_requests_total{service=\"kong.command.80\",route=\"r\",code=\"200\"} 1\nkong_http_requests_total{service=\"kong.command.80\",route=\"r\",route=\"s\"} 1\n",
		"kong_upstream_latency_ms_bucket{service=\"kong.command.80\",route=\"r\",le=\"1\"} 1\nkong_upstream_latency_ms_bucket{service=\"kong.command.80\",route=\"r\",le=\"2\",le=\"3\"} 1\n",
		"kong_bandwidth_bytes{service=\"kong.comm\\and.80\",direction=\"egress\",direction=\"ingress\"} 1\n",
		"kong_upstream_target_health{upstream=\"echo-upstream\",upstream=\"x\",state=\"healthy\"} 1\n",
	} {
		f.Add([]byte(s), all, all, all)
	}
	f.Fuzz(func(t *testing.T, in []byte, c, b, e byte) {
		sel := fuzzSelection([3]byte{c, b, e})
		want, wantStats := refRewriteAll(newReference(sel), in)
		rw := New(sel)
		for pass := range 2 { // the second pass with the targets and next links the first remembered
			got, gotStats := rewriteAll(rw, in)
			if !bytes.Equal(got, want) {
				t.Fatalf("pass %d: output differs from the reference's\ninput:\n%q\n got:\n%s\nwant:\n%s", pass, in, got, want)
			}
			if gotStats != wantStats {
				t.Fatalf("pass %d: stats %+v, the reference counts %+v\ninput:\n%q", pass, gotStats, wantStats, in)
			}
		}
	})
}

// TestRewriteMatchesReference compares whole generated pages, whose size
// the fuzzer's inputs never reach, under the benchmarks' selections.
func TestRewriteMatchesReference(t *testing.T) {
	var page bytes.Buffer
	if err := kongsim.WritePage(&page, 200); err != nil {
		t.Fatal(err)
	}
	for name, sel := range map[string]Selection{"typical": typicalSelection(200), "all": allSelected(200)} {
		t.Run(name, func(t *testing.T) {
			rw := New(sel)
			want, wantStats := refRewriteAll(newReference(sel), page.Bytes())
			for pass := range 2 { // the second pass runs on a filled cache
				got, gotStats := rewriteAll(rw, page.Bytes())
				if !bytes.Equal(got, want) {
					t.Fatalf("pass %d: output differs from the reference's", pass)
				}
				if gotStats != wantStats || gotStats.Kept == 0 {
					t.Fatalf("pass %d: stats %+v, the reference counts %+v", pass, gotStats, wantStats)
				}
			}
		})
	}
}

// typicalSelection selects five of the N-route page's Services, spread over
// the page, for latency and status codes.
func typicalSelection(routes int) Selection {
	svcs := kongsim.PageServices(routes)
	sel := Selection{Services: map[Service]Metrics{}, Mappings: map[string]Service{}}
	for i := range 5 {
		addPageService(sel, svcs[(2*i+1)*len(svcs)/10])
	}
	return sel
}

// allSelected selects every Service of the N-route page for latency and
// status codes.
func allSelected(routes int) Selection {
	sel := Selection{Services: map[Service]Metrics{}, Mappings: map[string]Service{}}
	for _, s := range kongsim.PageServices(routes) {
		addPageService(sel, s)
	}
	return sel
}

// addPageService selects s as an extension file would: an HTTPRoute's
// Kong service needs a mapping.
func addPageService(sel Selection, s kongsim.Service) {
	svc := Service{Namespace: s.Namespace, Name: s.ServiceName}
	sel.Services[svc] = Latency | StatusCode
	if strings.HasPrefix(s.Name, "httproute.") {
		sel.Mappings[s.Name] = svc
	}
}
