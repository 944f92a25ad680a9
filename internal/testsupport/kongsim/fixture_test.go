package kongsim

import (
	"bytes"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/golden"
)

// readFixture returns the Kong 3.9 sample (testdata/kong-3.9-metrics.prom).
func readFixture(t *testing.T) []byte {
	t.Helper()
	return Sample()
}

// fixtureSimulator returns a Simulator set up as the fixture describes: its
// three services, every toggle on, and traffic rebuilt from its numbers.
func fixtureSimulator(t *testing.T) *Simulator {
	t.Helper()
	s, err := New(Config{Services: FixtureServices(), Toggles: AllToggles})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range fixtureTraffic(t, readFixture(t)) {
		s.Record(r)
	}
	return s
}

func writeMetrics(t *testing.T, s *Simulator) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := s.WriteMetrics(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestFixtureReproduced checks that the simulator, given the fixture's
// services and traffic equivalent to its numbers, writes the fixture byte
// for byte.
func TestFixtureReproduced(t *testing.T) {
	want := readFixture(t)
	got := writeMetrics(t, fixtureSimulator(t))
	if !bytes.Equal(got, want) {
		t.Errorf("output differs from the fixture: %s", golden.FirstDiff(want, got))
	}
}

// TestFixtureStructure compares the structure of the simulator's output
// with the fixture's, line by line and without values: families in the
// same order with the same # HELP and # TYPE texts, the same label names in
// the same order, the same le values per series (so the same absent low
// buckets), and the same _bucket/_count/_sum runs.
func TestFixtureStructure(t *testing.T) {
	want := structure(t, readFixture(t))
	got := structure(t, writeMetrics(t, fixtureSimulator(t)))
	for i := range max(len(got), len(want)) {
		var g, w string
		if i < len(got) {
			g = got[i]
		}
		if i < len(want) {
			w = want[i]
		}
		if g != w {
			t.Fatalf("line %d: got\n\t%s\nwant\n\t%s", i+1, g, w)
		}
	}
	// The scenario the fixture documents.
	for _, line := range []string{
		// Billing was too slow for the 25 and 50 ms buckets.
		`kong_upstream_latency_ms_bucket service=default.billing.8080 {service,route,workspace,le} le=80`,
		// 401s answered by Kong itself.
		`kong_http_requests_total service=kong.command.80 {service,route,code,source,workspace,consumer} code=401 source=kong`,
	} {
		if !slices.Contains(got, line) {
			t.Errorf("the structure lacks %q", line)
		}
	}
	for _, line := range got {
		if strings.Contains(line, "service=default.billing.8080") && strings.Contains(line, "latency_ms_bucket") &&
			(strings.HasSuffix(line, " le=25") || strings.HasSuffix(line, " le=50")) &&
			!strings.HasPrefix(line, "kong_kong_latency") {
			t.Errorf("billing has a never-hit bucket: %s", line)
		}
	}
}

// structure reduces a body to one line per input line: comments as they
// are, samples as their name, service, label names in order and the values
// of le, code and source.
func structure(t *testing.T, body []byte) []string {
	t.Helper()
	var out []string
	for line := range strings.Lines(string(body)) {
		line = strings.TrimSuffix(line, "\n")
		if strings.HasPrefix(line, "#") {
			out = append(out, line)
			continue
		}
		name, labels, _ := parseSample(t, line)
		desc := name
		names := make([]string, len(labels))
		for i, l := range labels {
			names[i] = l.name
			if l.name == "service" {
				desc += " service=" + l.value
			}
		}
		desc += " {" + strings.Join(names, ",") + "}"
		for _, l := range labels {
			switch l.name {
			case "le", "code", "source":
				desc += " " + l.name + "=" + l.value
			}
		}
		out = append(out, desc)
	}
	return out
}

type label struct{ name, value string }

// parseSample splits a sample line as Kong writes it (no escapes beyond \\
// and \" in label values) into its name, labels and value.
func parseSample(t *testing.T, line string) (name string, labels []label, value string) {
	t.Helper()
	rest := line
	if i := strings.IndexAny(rest, "{ "); i >= 0 {
		name, rest = rest[:i], rest[i:]
	}
	if strings.HasPrefix(rest, "{") {
		rest = rest[1:]
		for !strings.HasPrefix(rest, "}") {
			eq := strings.Index(rest, `="`)
			if eq < 0 {
				t.Fatalf("malformed labels in %q", line)
			}
			l := label{name: strings.TrimPrefix(rest[:eq], ",")}
			rest = rest[eq+2:]
			var v strings.Builder
			for i := 0; ; i++ {
				if i >= len(rest) {
					t.Fatalf("unterminated label value in %q", line)
				}
				if rest[i] == '\\' && i+1 < len(rest) {
					i++
					v.WriteByte(rest[i])
					continue
				}
				if rest[i] == '"' {
					rest = rest[i+1:]
					break
				}
				v.WriteByte(rest[i])
			}
			l.value = v.String()
			labels = append(labels, l)
		}
		rest = rest[1:]
	}
	if !strings.HasPrefix(rest, " ") {
		t.Fatalf("no value in %q", line)
	}
	return name, labels, rest[1:]
}

// fixtureTraffic rebuilds, from the fixture's numbers, requests that make
// Kong record exactly those numbers: per service, as many requests as
// request latency observations, each with a status code and source from
// kong_http_requests_total (the Kong-answered ones last, without upstream
// latency), latencies that land in the fixture's buckets and add up to its
// sums, and the byte totals spread over the requests.
func fixtureTraffic(t *testing.T, fixture []byte) []Request {
	t.Helper()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(fixture))
	if err != nil {
		t.Fatalf("parsing the fixture: %v", err)
	}
	type codeCount struct {
		code   int
		source string
		n      int
	}
	type svcTraffic struct {
		route             string
		codes             []codeCount
		req, up, kong     []int
		bytesIn, bytesOut int
	}
	bySvc := map[string]*svcTraffic{}
	get := func(m *dto.Metric) *svcTraffic {
		lv := labelValues(m)
		st := bySvc[lv["service"]]
		if st == nil {
			st = &svcTraffic{route: lv["route"]}
			bySvc[lv["service"]] = st
		}
		return st
	}
	for _, m := range fams["kong_http_requests_total"].GetMetric() {
		lv := labelValues(m)
		code, err := strconv.Atoi(lv["code"])
		if err != nil {
			t.Fatalf("kong_http_requests_total code %q: %v", lv["code"], err)
		}
		st := get(m)
		st.codes = append(st.codes, codeCount{code, lv["source"], int(m.GetCounter().GetValue())})
	}
	for _, m := range fams["kong_bandwidth_bytes"].GetMetric() {
		st := get(m)
		if labelValues(m)["direction"] == "ingress" {
			st.bytesIn = int(m.GetCounter().GetValue())
		} else {
			st.bytesOut = int(m.GetCounter().GetValue())
		}
	}
	for name, bounds := range map[string][]float64{
		"kong_request_latency_ms":  upstreamLatencyBuckets,
		"kong_upstream_latency_ms": upstreamLatencyBuckets,
		"kong_kong_latency_ms":     kongLatencyBuckets,
	} {
		for _, m := range fams[name].GetMetric() {
			st := get(m)
			vals := histogramValues(t, bounds, m.GetHistogram())
			switch name {
			case "kong_request_latency_ms":
				st.req = vals
			case "kong_upstream_latency_ms":
				st.up = vals
			default:
				st.kong = vals
			}
		}
	}
	var out []Request
	for _, name := range slices.Sorted(maps.Keys(bySvc)) {
		st := bySvc[name]
		// Requests Kong answered itself have no upstream latency: put them
		// last, after as many upstream latencies as there are.
		slices.SortStableFunc(st.codes, func(a, b codeCount) int {
			return boolInt(a.source == SourceKong) - boolInt(b.source == SourceKong)
		})
		var codes []codeCount
		for _, c := range st.codes {
			for range c.n {
				codes = append(codes, c)
			}
		}
		n := len(st.req)
		if len(codes) != n || len(st.kong) != n || len(st.up) > n {
			t.Fatalf("%s: %d status codes, %d request, %d kong and %d upstream latencies do not fit together",
				name, len(codes), n, len(st.kong), len(st.up))
		}
		for i := range n {
			r := Request{
				Service: name, Route: st.route, Code: codes[i].code, Source: codes[i].source,
				RequestMs: st.req[i], KongMs: st.kong[i], UpstreamMs: -1,
				BytesIn: share(st.bytesIn, n, i), BytesOut: share(st.bytesOut, n, i),
			}
			if i < len(st.up) {
				if r.Source == SourceKong {
					t.Fatalf("%s: more upstream latencies than requests answered by the service", name)
				}
				r.UpstreamMs = st.up[i]
			}
			out = append(out, r)
		}
	}
	return out
}

// histogramValues returns whole-millisecond observations that give
// exactly h's buckets, count and sum.
func histogramValues(t *testing.T, bounds []float64, h *dto.Histogram) []int {
	t.Helper()
	cum := make([]uint64, len(bounds)+1) // the +Inf bucket is the count
	for _, b := range h.GetBucket() {
		if math.IsInf(b.GetUpperBound(), 1) {
			continue
		}
		i := slices.Index(bounds, b.GetUpperBound())
		if i < 0 {
			t.Fatalf("bucket %v is not one of Kong's", b.GetUpperBound())
		}
		cum[i] = b.GetCumulativeCount()
	}
	cum[len(bounds)] = h.GetSampleCount()
	var vals, highs []int
	prev := uint64(0)
	for i, c := range cum {
		lo, hi := 0, 1<<30
		if i > 0 {
			lo = int(bounds[i-1]) + 1
		}
		if i < len(bounds) {
			hi = int(bounds[i])
		}
		if c < prev {
			t.Fatalf("bucket counts decrease at %d", i)
		}
		for range c - prev {
			vals = append(vals, lo)
			highs = append(highs, hi)
		}
		prev = max(prev, c)
	}
	rest := int(h.GetSampleSum())
	for _, v := range vals {
		rest -= v
	}
	for i := len(vals) - 1; i >= 0 && rest > 0; i-- {
		add := min(rest, highs[i]-vals[i])
		vals[i] += add
		rest -= add
	}
	if rest != 0 {
		t.Fatalf("no whole-ms values fit sum %v and the buckets", h.GetSampleSum())
	}
	return vals
}

func labelValues(m *dto.Metric) map[string]string {
	lv := map[string]string{}
	for _, l := range m.GetLabel() {
		lv[l.GetName()] = l.GetValue()
	}
	return lv
}

// share returns request i's part of total spread over n requests.
func share(total, n, i int) int {
	v := total / n
	if i < total%n {
		v++
	}
	return v
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
