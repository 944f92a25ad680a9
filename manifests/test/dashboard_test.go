package test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/manifests/test/dashboard"
)

// The dashboard's file, the one source of its JSON, and the chart's copy.
const (
	dashboardFile      = "dashboards/kong-metrics-sidecar.json"
	dashboardKey       = "kong-metrics-sidecar.json"
	chartDashboardFile = "../charts/kong-metrics-sidecar/dashboards/kong-metrics-sidecar.json"
)

// loadDashboard decodes the shipped dashboard strictly; it fails the test
// if it does not.
func loadDashboard(t *testing.T) *dashboard.Dashboard {
	t.Helper()
	d, err := dashboard.Parse(readManifest(t, dashboardFile))
	if err != nil {
		t.Fatalf("manifests/%s: %v", dashboardFile, err)
	}
	return d
}

// TestDashboardDecodesStrictly decodes the dashboard with
// grafana-foundation-sdk, unknown fields disallowed, and checks what a
// provisioned dashboard needs: Grafana's current JSON model, a uid, the
// data source as a variable, the namespace and service variables on the
// sidecar's labels, the HPA's target as a variable holding the tutorial's
// 40, and panels that fit Grafana's 24-column grid without overlapping.
func TestDashboardDecodesStrictly(t *testing.T) {
	d := loadDashboard(t)
	var top struct {
		SchemaVersion int  `json:"schemaVersion"`
		ID            *int `json:"id"`
	}
	if err := json.Unmarshal(readManifest(t, dashboardFile), &top); err != nil {
		t.Fatal(err)
	}
	// 42 is what grafana-foundation-sdk's NewDashboard writes, Grafana
	// 12's current schema.
	if top.SchemaVersion != 42 || top.ID != nil {
		t.Errorf("schemaVersion %d, id %v; want 42 and null (Grafana assigns ids to provisioned dashboards)", top.SchemaVersion, top.ID)
	}
	if d.UID != "kong-metrics-sidecar" || d.Title == "" {
		t.Errorf("uid %q title %q", d.UID, d.Title)
	}

	vars := map[string]dashboard.Variable{}
	for _, v := range d.Variables {
		vars[v.Name] = v
	}
	if v := vars["datasource"]; v.Type != "datasource" || v.Query != "prometheus" {
		t.Errorf("variable datasource %+v, want a Prometheus data source variable", v)
	}
	for name, label := range map[string]string{"namespace": "kubernetes_namespace", "service": "kubernetes_name"} {
		v := vars[name]
		if v.Type != "query" || !strings.HasPrefix(v.Query, "label_values(") || !strings.HasSuffix(v.Query, ","+label+")") {
			t.Errorf("variable %s %+v, want label_values(..., %s)", name, v, label)
		}
	}
	// The 60 s average is per namespace, as prometheus-adapter answers it.
	if v := vars["namespace"]; v.Multi || v.IncludeAll {
		t.Errorf("variable namespace is multi-value or has All: %+v", v)
	}
	if v := vars["service"]; !v.Multi || !v.IncludeAll || v.AllValue != ".+" {
		t.Errorf("variable service %+v, want multi-value with All as .+", v)
	}
	objs := render(t, "examples")
	hpa := find[autoscalingv2.HorizontalPodAutoscaler](t, objs, "command")
	want := hpa.Spec.Metrics[0].Object.Target.Value.String()
	if v := vars["target_ms"]; v.Type != "textbox" || v.Query != want {
		t.Errorf("variable target_ms %+v, want a textbox holding the HPA's target %s", v, want)
	}

	ids := map[uint32]string{}
	type cell struct{ x, y uint32 }
	taken := map[cell]string{}
	for _, p := range d.Panels {
		if other, ok := ids[p.ID]; ok || p.ID == 0 {
			t.Errorf("panel %q: id %d, also %q's (or zero)", p.Title, p.ID, other)
		}
		ids[p.ID] = p.Title
		if p.W == 0 || p.H == 0 || p.X+p.W > 24 {
			t.Errorf("panel %q at x %d width %d height %d does not fit the 24-column grid", p.Title, p.X, p.W, p.H)
		}
		for x := p.X; x < p.X+p.W; x++ {
			for y := p.Y; y < p.Y+p.H; y++ {
				if other, ok := taken[cell{x, y}]; ok {
					t.Fatalf("panel %q overlaps %q at (%d, %d)", p.Title, other, x, y)
				}
				taken[cell{x, y}] = p.Title
			}
		}
		if p.Type == "row" {
			continue
		}
		for _, tg := range p.Targets {
			if tg.Legend == "" || tg.RefID == "" {
				t.Errorf("panel %q query %q: no legend or refId", p.Title, tg.Expr)
			}
		}
	}
}

// TestDashboardParseRejects shows that the decoding is strict: a field
// Grafana does not know, anywhere, or a query on another data source, is
// an error.
func TestDashboardParseRejects(t *testing.T) {
	good := readManifest(t, dashboardFile)
	cases := []struct {
		name   string
		edit   func(d map[string]any)
		errHas string
	}{
		{"top-level field", func(d map[string]any) { d["refreshRate"] = "30s" }, "refreshRate"},
		{"panel field", func(d map[string]any) { firstPanel(d)["colour"] = "red" }, "colour"},
		{"panel option", func(d map[string]any) { firstPanel(d)["options"].(map[string]any)["legnd"] = map[string]any{} }, "legnd"},
		{"field config default", func(d map[string]any) {
			firstPanel(d)["fieldConfig"].(map[string]any)["defaults"].(map[string]any)["units"] = "ms"
		}, "units"},
		{"field config custom", func(d map[string]any) {
			firstPanel(d)["fieldConfig"].(map[string]any)["defaults"].(map[string]any)["custom"].(map[string]any)["lineWidht"] = 1
		}, "lineWidht"},
		{"target field", func(d map[string]any) {
			firstPanel(d)["targets"].([]any)[0].(map[string]any)["expression"] = "up"
		}, "expression"},
		{"variable field", func(d map[string]any) {
			d["templating"].(map[string]any)["list"].([]any)[1].(map[string]any)["mutli"] = true
		}, "mutli"},
		{"wrong type", func(d map[string]any) { d["graphTooltip"] = "shared" }, "graphTooltip"},
		{"fixed data source", func(d map[string]any) {
			firstPanel(d)["datasource"] = map[string]any{"type": "prometheus", "uid": "P1809F7CD0C75ACF3"}
		}, "${datasource}"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var d map[string]any
			if err := json.Unmarshal(good, &d); err != nil {
				t.Fatal(err)
			}
			c.edit(d)
			bad, err := json.Marshal(d)
			if err != nil {
				t.Fatal(err)
			}
			_, err = dashboard.Parse(bad)
			if err == nil || !strings.Contains(err.Error(), c.errHas) {
				t.Errorf("Parse: %v; want an error naming %q", err, c.errHas)
			}
		})
	}
}

// firstPanel is the first panel that is not a row.
func firstPanel(d map[string]any) map[string]any {
	for _, p := range d["panels"].([]any) {
		if p := p.(map[string]any); p["type"] != "row" {
			return p
		}
	}
	panic("no panel")
}

// TestDashboardAdapterPanel: the 60 s average is prometheus-adapter's
// metricsQuery from the shipped values, unchanged but for the label
// matchers prometheus-adapter fills in for a Service (exported_namespace,
// exported_service), here from the dashboard's variables; and the HPA's
// target is drawn beside it.
func TestDashboardAdapterPanel(t *testing.T) {
	var v adapterValues
	if err := decodeStrict(readManifest(t, "monitoring/prometheus-adapter/values.yaml"), &v); err != nil {
		t.Fatal(err)
	}
	want := strings.TrimSpace(strings.ReplaceAll(v.Rules.Custom[0].MetricsQuery, "<<.LabelMatchers>>",
		`exported_namespace="$namespace",exported_service=~"$service"`))
	p := adapterPanel(t, loadDashboard(t))
	if got := p.Targets[0].Expr; got != want {
		t.Errorf("panel %q query:\n%s\nwant prometheus-adapter's:\n%s", p.Title, got, want)
	}
	if len(p.Targets) != 2 || p.Targets[1].Expr != "vector($target_ms)" {
		t.Errorf("panel %q: no line at the HPA's target: %+v", p.Title, p.Targets)
	}
}

// adapterPanel is the panel drawing the HPA's metric.
func adapterPanel(t *testing.T, d *dashboard.Dashboard) dashboard.Panel {
	t.Helper()
	for _, p := range d.Panels {
		if strings.Contains(p.Title, "60 s average") {
			return p
		}
	}
	t.Fatal("no panel titled with the 60 s average")
	return dashboard.Panel{}
}

// TestDashboardShippedAsOne: the ConfigMap kustomize builds from
// manifests/dashboards carries the file byte for byte, with the label
// kube-prometheus-stack's Grafana sidecar looks for, and the chart's copy
// is the same file (charts/test compares the chart's ConfigMap with this
// one).
func TestDashboardShippedAsOne(t *testing.T) {
	file := readManifest(t, dashboardFile)
	objs := render(t, "dashboards")
	cms := all[corev1.ConfigMap](objs)
	if len(objs) != 1 || len(cms) != 1 {
		t.Fatalf("%d objects, want one ConfigMap", len(objs))
	}
	cm := cms[0]
	if cm.Name != "kong-metrics-sidecar-dashboard" || cm.Labels["grafana_dashboard"] != "1" {
		t.Errorf("ConfigMap %s/%s labels %v, want kong-metrics-sidecar-dashboard labelled grafana_dashboard: \"1\"", cm.Namespace, cm.Name, cm.Labels)
	}
	if keys := slices.Sorted(maps.Keys(cm.Data)); !slices.Equal(keys, []string{dashboardKey}) {
		t.Errorf("ConfigMap keys %v, want %s alone", keys, dashboardKey)
	}
	if cm.Data[dashboardKey] != string(file) {
		t.Errorf("the ConfigMap's %s is not manifests/%s byte for byte", dashboardKey, dashboardFile)
	}
	if chart := readManifest(t, chartDashboardFile); !bytes.Equal(chart, file) {
		t.Errorf("charts/kong-metrics-sidecar/dashboards/kong-metrics-sidecar.json differs from manifests/%s; copy the file over", dashboardFile)
	}
}

// Scrape and query settings of the real-Prometheus test.
const (
	scrapeInterval = time.Second
	queryStep      = 2 * time.Second
	queryRange     = time.Minute
	queryDeadline  = 2 * time.Minute
)

// TestDashboardQueriesOnPrometheus runs every variable's and every panel's
// query, variables expanded as Grafana expands them, against a real
// Prometheus scraping a real sidecar in front of the Kong simulator while
// traffic runs to two Services. Each query must answer with series that
// carry every label its legend shows, for one Service selected and for
// All; a query that errors, stays empty or lacks a legend's label fails.
func TestDashboardQueriesOnPrometheus(t *testing.T) {
	d := loadDashboard(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*queryDeadline+2*time.Minute)
	defer cancel()
	stack, err := dashboard.StartStack(ctx, t.TempDir(), scrapeInterval)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stack.Stop()
		if t.Failed() {
			t.Log(stack.Output())
		}
	})
	trafficCtx, stopTraffic := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		// command: the tutorial's sleep 0.1, so that its 60 s average is
		// exactly 100; billing: faster, with some invalid commands (400).
		_, err := stack.Traffic(trafficCtx,
			dashboard.Phase{Service: "command", Sleep: 100 * time.Millisecond, Clients: 3},
			dashboard.Phase{Service: "billing", Sleep: 30 * time.Millisecond, Clients: 2, BadEvery: 5})
		done <- err
	}()
	t.Cleanup(func() {
		stopTraffic()
		if err := <-done; err != nil {
			t.Errorf("traffic: %v", err)
		}
	})

	values := variableValues(ctx, t, d, stack.Prometheus)
	selections := map[string]dashboard.Value{"one Service": dashboard.One("command"), "All": {All: true}}
	for name, service := range selections {
		t.Run(name, func(t *testing.T) {
			vals := map[string]dashboard.Value{}
			for k, v := range values {
				vals[k] = v
			}
			vals["service"] = service
			checkPanels(ctx, t, d, stack.Prometheus, vals, !service.All)
		})
	}
	t.Run("the tutorial's number", func(t *testing.T) {
		checkAdapterValue(ctx, t, d, stack.Prometheus)
	})
}

// variableValues runs the variables' queries, in the dashboard's order so
// that $namespace is set before the service query uses it, until each
// lists what the traffic creates, and returns the values the panels are
// queried with.
func variableValues(ctx context.Context, t *testing.T, d *dashboard.Dashboard, prom dashboard.Prometheus) map[string]dashboard.Value {
	t.Helper()
	wantValues := map[string][]string{
		"namespace": {"kong"},
		"service":   {"billing", "command"},
		"job":       {dashboard.Job},
	}
	values := map[string]dashboard.Value{"datasource": dashboard.One("prometheus")}
	for _, v := range d.Variables {
		switch v.Type {
		case "datasource":
			continue
		case "textbox", "constant":
			values[v.Name] = dashboard.One(v.Query)
			continue
		case "query":
		default:
			t.Fatalf("variable %s: type %s is not handled here", v.Name, v.Type)
		}
		want, ok := wantValues[v.Name]
		if !ok {
			t.Fatalf("variable %s: no values expected of it; add them to the test", v.Name)
		}
		query, err := d.Expand(v.Query, values, nil)
		if err != nil {
			t.Fatalf("variable %s: %v", v.Name, err)
		}
		var got []string
		deadline := time.Now().Add(queryDeadline)
		for {
			now := time.Now()
			got, err = prom.LabelValues(ctx, query, now.Add(-queryRange), now)
			if err != nil {
				t.Fatalf("variable %s: %v", v.Name, err)
			}
			if slices.Equal(got, want) || time.Now().After(deadline) {
				break
			}
			time.Sleep(time.Second)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("variable %s: %s lists %q, want %q", v.Name, query, got, want)
		}
		t.Logf("variable %s: %s → %q", v.Name, query, got)
		values[v.Name] = dashboard.One(want[0])
		if v.Multi || v.IncludeAll {
			values[v.Name] = dashboard.Value{All: true}
		}
	}
	return values
}

// checkPanels runs every panel's queries as range queries over the last
// minute until each answers with series carrying its legend's labels; with
// oneService, the per-Service series must all be command's, else both
// Services must be there.
func checkPanels(ctx context.Context, t *testing.T, d *dashboard.Dashboard, prom dashboard.Prometheus, values map[string]dashboard.Value, oneService bool) {
	type query struct {
		panel  dashboard.Panel
		target dashboard.Target
		expr   string
	}
	var pending []query
	builtins := dashboard.RangeBuiltins(queryStep, scrapeInterval, queryRange)
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			expr, err := d.Expand(tg.Expr, values, builtins)
			if err != nil {
				t.Errorf("panel %q: %v", p.Title, err)
				continue
			}
			pending = append(pending, query{p, tg, expr})
		}
	}
	if len(pending) == 0 {
		t.Fatal("no queries")
	}
	problems := map[string]string{}
	deadline := time.Now().Add(queryDeadline)
	for len(pending) > 0 && time.Now().Before(deadline) {
		var still []query
		for _, q := range pending {
			now := time.Now()
			series, err := prom.QueryRange(ctx, q.expr, now.Add(-queryRange), now, queryStep)
			if err != nil {
				t.Errorf("panel %q: %v", q.panel.Title, err)
				continue
			}
			if problem := checkSeries(q.target, series, oneService); problem != "" {
				problems[q.expr] = problem
				still = append(still, q)
				continue
			}
			t.Logf("panel %q, legend %q: %d series", q.panel.Title, q.target.Legend, len(series))
		}
		pending = still
		if len(pending) > 0 {
			time.Sleep(2 * time.Second)
		}
	}
	for _, q := range pending {
		t.Errorf("panel %q: %s\n%s", q.panel.Title, problems[q.expr], q.expr)
	}
}

// checkSeries says what is wrong with a query's answer, or "" when
// nothing is: no series; a series without a label its legend shows; the
// wrong Services.
func checkSeries(tg dashboard.Target, series []dashboard.Series, oneService bool) string {
	if len(series) == 0 {
		return "no series"
	}
	services := map[string]bool{}
	for _, s := range series {
		if len(s.Points) == 0 {
			return fmt.Sprintf("series %v has no samples", s.Metric)
		}
		for _, l := range tg.LegendLabels() {
			if s.Metric[l] == "" {
				return fmt.Sprintf("series %v lacks label %s, which the legend %q shows", s.Metric, l, tg.Legend)
			}
		}
		for _, l := range []string{"kubernetes_name", "exported_service"} {
			if name := s.Metric[l]; name != "" {
				services[name] = true
			}
		}
	}
	if len(services) == 0 {
		return ""
	}
	got := slices.Sorted(maps.Keys(services))
	want := []string{"billing", "command"}
	if oneService {
		want = []string{"command"}
	}
	if !slices.Equal(got, want) {
		return fmt.Sprintf("series of Services %v, want %v", got, want)
	}
	return ""
}

// checkAdapterValue: on real data the 60 s average panel gives what
// prometheus-adapter gives the HPA for kong/command at the tutorial's sleep
// 0.1, 100 ms, beside the target line at 40. (checkPanels checks every
// panel's shape; this checks the tutorial's number.)
func checkAdapterValue(ctx context.Context, t *testing.T, d *dashboard.Dashboard, prom dashboard.Prometheus) {
	p := adapterPanel(t, d)
	vals := map[string]dashboard.Value{"namespace": dashboard.One("kong"), "service": dashboard.One("command"), "target_ms": dashboard.One("40")}
	want := map[string]float64{"command": 100, "HPA target": 40}
	deadline := time.Now().Add(queryDeadline)
	for {
		got := map[string]float64{}
		for _, tg := range p.Targets {
			expr, err := d.Expand(tg.Expr, vals, nil)
			if err != nil {
				t.Fatal(err)
			}
			now := time.Now()
			series, err := prom.QueryRange(ctx, expr, now, now, queryStep)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range series {
				got[tg.LegendFor(s.Metric)] = s.Points[len(s.Points)-1].V
			}
		}
		if len(got) == len(want) {
			for k, w := range want {
				// The simulator records the sleep asked for, so only the
				// rates' floating-point rounding may move the mean.
				if g, ok := got[k]; !ok || g < w-1e-9 || g > w+1e-9 {
					t.Fatalf("%s = %v, want %v (all: %v)", k, g, w, got)
				}
			}
			t.Logf("the 60 s average panel: %v", got)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the 60 s average panel gave %v, want %v", got, want)
		}
		time.Sleep(2 * time.Second)
	}
}
