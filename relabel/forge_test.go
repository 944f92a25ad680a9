package relabel

import (
	"bytes"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// kongEscape escapes a label value as Kong 3.x does: only \ and ".
func kongEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s)
}

// TestForgedNames: Kong service and route names built to forge labels never
// add or alter labels, and names that are not Kubernetes names never map
// to a Service.
func TestForgedNames(t *testing.T) {
	rw := New(Selection{Services: map[Service]Metrics{command: Latency, {Namespace: "evil", Name: "svc"}: Latency}})
	routes := []string{
		`r`,
		`x",kubernetes_name="evil`,
		`x\",le="1`,
		`x\`,
		`\\\"`,
		`a,b}c=d`,
		`le="25"`,
		`x"} 999` + "\t" + `kong_upstream_latency_ms_count{service="kong.command.80`,
		strings.Repeat(`"\,}=`, 20000),
		"ünïcødé ✓",
	}
	for _, route := range routes {
		line := `kong_upstream_latency_ms_bucket{service="kong.command.80",route="` + kongEscape(route) + `",workspace="default",le="25"} 7`
		p := rw.NewPage()
		out := p.AppendLine(nil, []byte(line))
		parser := expfmt.NewTextParser(model.UTF8Validation)
		families, err := parser.TextToMetricFamilies(bytes.NewReader(out))
		if err != nil {
			t.Fatalf("route %q: output does not parse: %v\n%s", route, err, out)
		}
		mf := families["kong_upstream_latency_ms_bucket"]
		if mf == nil || len(mf.Metric) != 1 {
			t.Fatalf("route %q: want one series, got %v", route, families)
		}
		got := map[string]string{}
		for _, lp := range mf.Metric[0].Label {
			got[lp.GetName()] = lp.GetValue()
		}
		want := map[string]string{
			"kong_service": "kong.command.80", "route": route, "workspace": "default", "le": "25",
			"kubernetes_namespace": "kong", "kubernetes_name": "command", "kubernetes_kind": "Service",
			"exported_namespace": "kong", "exported_service": "command",
		}
		if len(got) != len(want) {
			t.Errorf("route %q: labels %v, want %v", route, got, want)
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("route %q: %s = %q, want %q", route, k, got[k], v)
			}
		}
	}

	// Kong service names that try to smuggle a selected Service through.
	services := []string{
		`kong.command.80"`,
		`kong.command.80",kubernetes_name="command`,
		`kong.command.80\`,
		`evil.svc.80,kong.command.80`,
		`kong.command.80}`,
		`kong.command=.80`,
		`kong.command.80 `,
		` kong.command.80`,
		`KONG.command.80`,
		`kong.command.80.`,
		"kong.command.８０",
		strings.Repeat("a", 100) + ".command.80",
		"kong.command." + strings.Repeat("9", 100),
		`le="25"`,
	}
	for _, svc := range services {
		line := `kong_upstream_latency_ms_count{service="` + kongEscape(svc) + `",route="r",workspace="default"} 7`
		p := rw.NewPage()
		if out := p.AppendLine(nil, []byte(line)); len(out) != 0 {
			t.Errorf("service %q was kept: %s", svc, out)
		}
		if p.Stats().Dropped[DropUnresolved] != 1 {
			t.Errorf("service %q: dropped %v, want unresolved", svc, p.Stats().Dropped)
		}
	}
}
