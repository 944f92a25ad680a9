package adapter

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/custom-metrics-apiserver/pkg/provider"
)

// shippedConfig is the rule of the shipped values.yaml, verbatim, in
// prometheus-adapter's config format.
func shippedConfig(t *testing.T) *Config {
	t.Helper()
	data, err := os.ReadFile("../../../manifests/monitoring/prometheus-adapter/values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	out, err := ConfigFromChartValues(data)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := ParseConfig(out)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestShippedRuleQuery(t *testing.T) {
	cfg := shippedConfig(t)
	r, err := compile(0, cfg.Rules[0])
	if err != nil {
		t.Fatal(err)
	}
	name, ok := r.metricName("kong_upstream_latency_ms_sum")
	if !ok || name != "kong_upstream_latency_ms_60s_average" {
		t.Fatalf("metric name = %q, %v", name, ok)
	}
	q, err := r.buildQuery("kong_upstream_latency_ms_sum", nil, "exported_service", []string{"command"}, "exported_namespace", "kong")
	if err != nil {
		t.Fatal(err)
	}
	// prometheus-adapter's order: metric selector, namespace, object.
	want := `sum by (exported_service) (rate(kong_upstream_latency_ms_sum{exported_namespace="kong",exported_service="command"}[60s:10s]))
  /
sum by (exported_service) (rate(kong_upstream_latency_ms_count{exported_namespace="kong",exported_service="command"}[60s:10s]))
`
	if q != want {
		t.Errorf("query:\n%s\nwant:\n%s", q, want)
	}
	q, err = r.buildQuery("s", []string{`a="b"`}, "exported_service", []string{"x", "y"}, "exported_namespace", "kong")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(q, `{a="b",exported_namespace="kong",exported_service=~"x|y"}`) {
		t.Errorf("several objects: %s", q)
	}
}

// TestLabelValuesByName: as in prometheus-adapter (queryTemplateArgs in
// pkg/naming/metrics_query.go), each label's values are one string, several
// joined with "|", so a template can put them into a regex matcher.
func TestLabelValuesByName(t *testing.T) {
	r, err := compile(0, Rule{
		SeriesQuery:  "s",
		MetricsQuery: `<<.Series>>{s=~"<<index .LabelValuesByName "exported_service">>",ns="<<index .LabelValuesByName "exported_namespace">>"}`,
		Resources: struct {
			Overrides map[string]GroupResource `json:"overrides"`
		}{Overrides: map[string]GroupResource{"exported_service": {Resource: "service"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	q, err := r.buildQuery("m", nil, "exported_service", []string{"x", "y"}, "exported_namespace", "kong")
	if err != nil {
		t.Fatal(err)
	}
	if want := `m{s=~"x|y",ns="kong"}`; q != want {
		t.Errorf("query = %s, want %s", q, want)
	}
}

func TestParseConfigRefusesTheUnsupported(t *testing.T) {
	f := func(config, wantErr string) {
		t.Helper()
		_, err := ParseConfig([]byte(config))
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("ParseConfig(%q) = %v, want an error with %q", config, err, wantErr)
		}
	}
	// seriesFilters is prometheus-adapter's, not implemented here.
	f("rules:\n- seriesQuery: x\n  seriesFilters: []\n", "seriesFilters")
	// externalRules likewise.
	f("externalRules: []\n", "externalRules")
	// Nothing to serve.
	f("rules: []\n", "no rules")
}

// fakePrometheus answers the series and query APIs with fixed data.
func fakePrometheus(t *testing.T, series []map[string]string, value string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body) // drained so the connection is reused
		var data any
		switch r.URL.Path {
		case "/api/v1/series":
			data = series
		case "/api/v1/query":
			var result []any
			if value != "" {
				result = append(result, map[string]any{"metric": map[string]string{"exported_service": "command"}, "value": []any{1.0, value}})
			}
			data = map[string]any{"resultType": "vector", "result": result}
		default:
			http.NotFound(w, r)
			return
		}
		if err := json.NewEncoder(w).Encode(map[string]any{"status": "success", "data": data}); err != nil {
			t.Errorf("fake Prometheus: %v", err)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func newTestProvider(t *testing.T, promURL string) *Provider {
	t.Helper()
	m := meta.NewDefaultRESTMapper(nil)
	m.Add(schema.GroupVersionKind{Version: "v1", Kind: "Service"}, meta.RESTScopeNamespace)
	m.Add(schema.GroupVersionKind{Version: "v1", Kind: "Namespace"}, meta.RESTScopeRoot)
	p, err := NewProvider(Options{
		Config: shippedConfig(t), Prometheus: promURL, Mapper: m,
		Relist: time.Minute, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

var (
	commandSeries = []map[string]string{{
		"__name__": "kong_upstream_latency_ms_sum", "exported_namespace": "kong", "exported_service": "command",
		"kubernetes_namespace": "kong", "kubernetes_name": "command", "kubernetes_kind": "Service",
	}}
	services = provider.CustomMetricInfo{GroupResource: schema.GroupResource{Resource: "services"}, Namespaced: true, Metric: "kong_upstream_latency_ms_60s_average"}
	command  = types.NamespacedName{Namespace: "kong", Name: "command"}
)

func TestProviderValues(t *testing.T) {
	f := func(value, want string) {
		t.Helper()
		p := newTestProvider(t, fakePrometheus(t, commandSeries, value).URL)
		if err := p.discover(context.Background()); err != nil {
			t.Fatal(err)
		}
		mv, err := p.GetMetricByName(context.Background(), command, services, labels.Everything())
		if err != nil {
			t.Fatalf("value %s: %v", value, err)
		}
		if got := mv.Value.String(); got != want {
			t.Errorf("value %s served as %s, want %s", value, got, want)
		}
		if mv.DescribedObject.Kind != "Service" || mv.DescribedObject.Name != "command" {
			t.Errorf("described object %+v", mv.DescribedObject)
		}
	}
	// 100 ms, as a Kubernetes quantity.
	f("100.25", "100250m")
	// Traffic stopped: 0/0 is NaN, which prometheus-adapter serves as 0.
	f("NaN", "0")
}

func TestProviderNotFound(t *testing.T) {
	ctx := context.Background()
	// Discovered, but the query has no sample for the Service.
	p := newTestProvider(t, fakePrometheus(t, commandSeries, "").URL)
	if err := p.discover(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := p.GetMetricByName(ctx, command, services, labels.Everything()); !apierrors.IsNotFound(err) {
		t.Errorf("no sample: %v, want NotFound", err)
	}
	// Never discovered.
	p = newTestProvider(t, fakePrometheus(t, nil, "1").URL)
	if err := p.discover(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := p.GetMetricByName(ctx, command, services, labels.Everything()); !apierrors.IsNotFound(err) {
		t.Errorf("unknown series: %v, want NotFound", err)
	}
	if got := p.ListAllMetrics(); len(got) != 0 {
		t.Errorf("ListAllMetrics = %v", got)
	}
}

func TestDiscoveryListsServiceAndNamespace(t *testing.T) {
	p := newTestProvider(t, fakePrometheus(t, commandSeries, "1").URL)
	if err := p.discover(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, i := range p.ListAllMetrics() {
		got[i.String()] = true
	}
	for _, want := range []string{"services/kong_upstream_latency_ms_60s_average(namespaced)", "namespaces/kong_upstream_latency_ms_60s_average"} {
		if !got[want] {
			t.Errorf("ListAllMetrics lacks %s: %v", want, got)
		}
	}
}
