package relabel

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/golden"
	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/testsupport/kongsim"
)

var (
	command = Service{Namespace: "kong", Name: "command"}
	billing = Service{Namespace: "default", Name: "billing"}
	echo    = Service{Namespace: "default", Name: "echo"}
)

// rewriteAll rewrites a whole page, as the proxy does line by line.
func rewriteAll(rw *Rewriter, page []byte) ([]byte, Stats) {
	p := rw.NewPage()
	defer p.Release()
	var out []byte
	for line := range bytes.Lines(page) {
		out = p.AppendLine(out, bytes.TrimSuffix(line, []byte("\n")))
	}
	return out, p.Stats()
}

func TestAppendLine(t *testing.T) {
	rw := New(Selection{
		Services: map[Service]Metrics{command: Latency | StatusCode | UpstreamHealth, billing: Bandwidth},
		Mappings: map[string]Service{"httproute.kong.command.0": command},
	})
	const added = `kubernetes_namespace="kong",kubernetes_name="command",kubernetes_kind="Service",exported_namespace="kong",exported_service="command"`
	f := func(in, want string, reason DropReason) {
		t.Helper()
		p := rw.NewPage()
		got := string(p.AppendLine(nil, []byte(in)))
		if got != want {
			t.Errorf("AppendLine(%q)\n got %q\nwant %q", in, got, want)
		}
		st := p.Stats()
		if want == "" && st.Dropped[reason] != 1 {
			t.Errorf("AppendLine(%q): dropped %v, want one for reason %s", in, st.Dropped, reason)
		}
		if want != "" && st.Kept != 1 {
			t.Errorf("AppendLine(%q): kept %d, want 1", in, st.Kept)
		}
	}
	// A histogram bucket: service renamed, labels added before le.
	f(`kong_upstream_latency_ms_bucket{service="kong.command.80",route="r",workspace="default",le="25"} 7`,
		`kong_upstream_latency_ms_bucket{kong_service="kong.command.80",route="r",workspace="default",`+added+`,le="25"} 7`+"\n", 0)
	// _sum and _count have no le: the labels go last.
	f(`kong_upstream_latency_ms_sum{service="kong.command.80",route="r",workspace="default"} 52221`,
		`kong_upstream_latency_ms_sum{kong_service="kong.command.80",route="r",workspace="default",`+added+`} 52221`+"\n", 0)
	// Values pass byte for byte, exponent forms included.
	f(`kong_http_requests_total{service="kong.command.80",route="r",code="200",source="service",workspace="default",consumer=""} 1.2345678901234e+14`,
		`kong_http_requests_total{kong_service="kong.command.80",route="r",code="200",source="service",workspace="default",consumer="",`+added+`} 1.2345678901234e+14`+"\n", 0)
	// Upstream health resolves through the upstream label and keeps no service label.
	f(`kong_upstream_target_health{upstream="command.kong.80.svc",target="10.0.0.1:8080",address="10.0.0.1:8080",state="healthy",subsystem="http"} 1`,
		`kong_upstream_target_health{upstream="command.kong.80.svc",target="10.0.0.1:8080",address="10.0.0.1:8080",state="healthy",subsystem="http",`+added+`} 1`+"\n", 0)
	// A KongServiceMapping entry resolves an HTTPRoute rule.
	f(`kong_kong_latency_ms_count{service="httproute.kong.command.0",route="httproute.kong.command.0.0",workspace="default"} 3`,
		`kong_kong_latency_ms_count{kong_service="httproute.kong.command.0",route="httproute.kong.command.0.0",workspace="default",`+added+`} 3`+"\n", 0)
	// CRLF line ends are taken.
	f("kong_upstream_latency_ms_count{service=\"kong.command.80\"} 1\r",
		`kong_upstream_latency_ms_count{kong_service="kong.command.80",`+added+`} 1`+"\n", 0)
	// Escapes Kong writes (\\ and \") pass as they are.
	f(`kong_upstream_latency_ms_count{service="kong.command.80",route="a\\b\"c"} 1`,
		`kong_upstream_latency_ms_count{kong_service="kong.command.80",route="a\\b\"c",`+added+`} 1`+"\n", 0)
	// A backslash Prometheus would reject is escaped; invalid UTF-8 becomes U+FFFD.
	f("kong_upstream_latency_ms_count{service=\"kong.command.80\",route=\"a\\qb\xff\"} 1",
		"kong_upstream_latency_ms_count{kong_service=\"kong.command.80\",route=\"a\\\\qb\uFFFD\","+added+"} 1\n", 0)
	// Families no flag keeps.
	f(`kong_datastore_reachable 1`, "", DropFamily)
	f(`kong_nginx_connections_total{node_id="x",subsystem="http",state="active"} 7`, "", DropFamily)
	// billing is selected for bandwidth only.
	f(`kong_upstream_latency_ms_count{service="default.billing.8080",route="r",workspace="default"} 4`, "", DropUnselected)
	f(`kong_bandwidth_bytes{service="default.billing.8080",route="r",direction="egress",workspace="default",consumer=""} 5`,
		`kong_bandwidth_bytes{kong_service="default.billing.8080",route="r",direction="egress",workspace="default",consumer="",kubernetes_namespace="default",kubernetes_name="billing",kubernetes_kind="Service",exported_namespace="default",exported_service="billing"} 5`+"\n", 0)
	// Resolvable but not selected at all.
	f(`kong_upstream_latency_ms_count{service="other.svc.80"} 4`, "", DropUnselected)
	// HTTPRoute rules without a mapping, and no service label at all.
	f(`kong_upstream_latency_ms_count{service="httproute.default.echo.0",route="r",workspace="default"} 4`, "", DropUnresolved)
	f(`kong_upstream_latency_ms_count{route="r"} 4`, "", DropUnresolved)
	f(`kong_upstream_latency_ms_count 4`, "", DropUnresolved)
	// A route value that looks like a service label does not resolve anything.
	f(`kong_upstream_latency_ms_count{route="x\",service=\"kong.command.80"} 4`, "", DropUnresolved)
	// Malformed lines.
	f(`kong_upstream_latency_ms_count{service="kong.command.80"`, "", DropMalformed)
	f(`kong_upstream_latency_ms_count{service="kong.command.80"} `, "", DropMalformed)
	f(`kong_upstream_latency_ms_count{service="kong.command.80"} abc`, "", DropMalformed)
	f(`kong_upstream_latency_ms_count{service="kong.command.80"}1`, "", DropMalformed)
	f(`kong_upstream_latency_ms_count{service="kong.command.80"} 1 2 3`, "", DropMalformed)
	f(`kong_upstream_latency_ms_count{service=kong.command.80} 1`, "", DropMalformed)
	f(`kong_upstream_latency_ms_count{9service="kong.command.80"} 1`, "", DropMalformed)
	f(`kong_upstream_latency_ms_count{service="kong.command.80",kubernetes_name="forged"} 1`, "", DropMalformed)
	f(`kong_upstream_latency_ms_count{service="kong.command.80",kong_service="forged"} 1`, "", DropMalformed)
	f(`<html>`, "", DropMalformed)
}

func TestFixtureGolden(t *testing.T) {
	page := kongsim.Sample()
	tests := []struct {
		name string
		sel  Selection
	}{
		{"tutorial", Selection{Services: map[Service]Metrics{command: Latency}}},
		{"nothing", Selection{}},
		{"everything", Selection{
			Services: map[Service]Metrics{command: ^Metrics(0), billing: ^Metrics(0), echo: ^Metrics(0)},
			Mappings: map[string]Service{"httproute.default.echo.0": echo},
		}},
		{"billing-status-health", Selection{Services: map[Service]Metrics{billing: StatusCode | UpstreamHealth}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, stats := rewriteAll(New(tc.sel), page)
			mustParseStrictly(t, out)
			golden.Check(t, filepath.Join("testdata", "fixture-"+tc.name+".golden"), out)
			if got := bytes.Count(out, []byte("\n")) - bytes.Count(out, []byte("\n#")) - boolInt(bytes.HasPrefix(out, []byte("#"))); got != stats.Kept {
				t.Errorf("Stats.Kept = %d, but the output has %d series lines", stats.Kept, got)
			}
			total := stats.Kept
			for _, n := range stats.Dropped {
				total += n
			}
			if lines := seriesLines(page); total != lines {
				t.Errorf("kept+dropped = %d, the page has %d series lines", total, lines)
			}
		})
	}
}

// TestTutorialSelection pins the tutorial's case by hand, not by golden file.
func TestTutorialSelection(t *testing.T) {
	page := kongsim.Sample()
	out, stats := rewriteAll(New(Selection{Services: map[Service]Metrics{command: Latency}}), page)
	families := mustParseStrictly(t, out)
	if len(families) != 3 {
		t.Fatalf("got %d families, want the three latency histograms", len(families))
	}
	mf := families["kong_upstream_latency_ms"]
	if mf == nil || len(mf.Metric) != 1 {
		t.Fatalf("kong_upstream_latency_ms: want one series for command, got %v", mf)
	}
	labels := map[string]string{}
	for _, lp := range mf.Metric[0].Label {
		labels[lp.GetName()] = lp.GetValue()
	}
	want := map[string]string{
		"kong_service": "kong.command.80", "route": "kong.command.command.api.example.com.80", "workspace": "default",
		"kubernetes_namespace": "kong", "kubernetes_name": "command", "kubernetes_kind": "Service",
		"exported_namespace": "kong", "exported_service": "command",
	}
	for k, v := range want {
		if labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, labels[k], v)
		}
	}
	if len(labels) != len(want) {
		t.Errorf("labels %v, want exactly %v", labels, want)
	}
	h := mf.Metric[0].GetHistogram()
	if h.GetSampleCount() != 1800 || h.GetSampleSum() != 52221 {
		t.Errorf("count/sum = %d/%v, want Kong's 1800/52221", h.GetSampleCount(), h.GetSampleSum())
	}
	if stats.Dropped[DropUnselected] == 0 || stats.Dropped[DropFamily] == 0 || stats.Dropped[DropUnresolved] == 0 {
		t.Errorf("drops %v: want unselected (billing), family and unresolved (echo) drops", stats.Dropped)
	}
	if n := strings.Count(string(out), "# TYPE kong_upstream_latency_ms histogram\n"); n != 1 {
		t.Errorf("TYPE line written %d times", n)
	}
}

// TestRepeatedFamilies feeds a page where Kong repeats its families, as it
// does with a stream listener: HELP and TYPE are written once.
func TestRepeatedFamilies(t *testing.T) {
	page := kongsim.Sample()
	twice := append(append([]byte{}, page...), bytes.ReplaceAll(page, []byte(`subsystem="http"`), []byte(`subsystem="stream"`))...)
	// The second block's latency series would repeat the first's; keep only
	// upstream health, whose subsystem label differs.
	sel := Selection{Services: map[Service]Metrics{command: UpstreamHealth, billing: UpstreamHealth}}
	out, stats := rewriteAll(New(sel), twice)
	mustParseStrictly(t, out)
	if n := bytes.Count(out, []byte("# HELP kong_upstream_target_health ")); n != 1 {
		t.Errorf("HELP written %d times, want once", n)
	}
	if stats.Kept != 2*12 {
		t.Errorf("kept %d, want 24 (12 per block)", stats.Kept)
	}
}

func TestNoHelpForFamiliesWithoutKeptSeries(t *testing.T) {
	page := kongsim.Sample()
	out, _ := rewriteAll(New(Selection{Services: map[Service]Metrics{billing: Bandwidth}}), page)
	if bytes.Contains(out, []byte("kong_upstream_latency_ms")) || bytes.Contains(out, []byte("kong_http_requests_total")) {
		t.Errorf("HELP/TYPE of families without kept series were written:\n%s", out)
	}
}

func mustParseStrictly(t *testing.T, out []byte) map[string]*dto.MetricFamily {
	t.Helper()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(out))
	if err != nil {
		t.Fatalf("strict parser rejects the output: %v\n%s", err, out)
	}
	return families
}

func seriesLines(page []byte) int {
	n := 0
	for line := range bytes.Lines(page) {
		if len(bytes.TrimSpace(line)) > 0 && line[0] != '#' {
			n++
		}
	}
	return n
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestComments(t *testing.T) {
	rw := New(Selection{Services: map[Service]Metrics{command: Latency | StatusCode}})
	const series = `kong_upstream_latency_ms_count{service="kong.command.80"} 1`
	const counter = `kong_http_requests_total{service="kong.command.80"} 1`
	f := func(in []string, wantComments string) {
		t.Helper()
		p := rw.NewPage()
		var out []byte
		for _, l := range in {
			out = p.AppendLine(out, []byte(l))
		}
		var comments []string
		for line := range strings.Lines(string(out)) {
			if strings.HasPrefix(line, "#") {
				comments = append(comments, strings.TrimSuffix(line, "\n"))
			}
		}
		if got := strings.Join(comments, "|"); got != wantComments {
			t.Errorf("comments of %q:\n got %q\nwant %q", in, got, wantComments)
		}
	}
	// HELP and TYPE wait for the first kept series, and come once.
	f([]string{"# HELP kong_upstream_latency_ms h", "# TYPE kong_upstream_latency_ms histogram", series, "# HELP kong_upstream_latency_ms h", "# TYPE kong_upstream_latency_ms histogram", series},
		"# HELP kong_upstream_latency_ms h|# TYPE kong_upstream_latency_ms histogram")
	// Other comments and other families' comments are dropped.
	f([]string{"# HELP kong_node_info x", "# some comment", "#", series}, "")
	// A type that does not fit the family, or a HELP text a strict parser rejects, is dropped.
	f([]string{"# TYPE kong_upstream_latency_ms counter", series}, "")
	f([]string{"# TYPE kong_http_requests_total histogram", counter}, "")
	f([]string{"# HELP kong_http_requests_total a\\qb", "# TYPE kong_http_requests_total counter", counter}, "# TYPE kong_http_requests_total counter")
	f([]string{"# HELP kong_http_requests_total a\\\\b\\n", counter}, "# HELP kong_http_requests_total a\\\\b\\n")
}
