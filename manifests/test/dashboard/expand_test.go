package dashboard

import (
	"strings"
	"testing"
	"time"
)

// TestExpand expands variables as Grafana's Prometheus data source does,
// and refuses what Grafana would leave in the query as it is.
func TestExpand(t *testing.T) {
	d := &Dashboard{Variables: []Variable{
		{Name: "namespace", Type: "query"},
		{Name: "service", Type: "query", Multi: true, IncludeAll: true, AllValue: ".+"},
		{Name: "pod", Type: "query", Multi: true, IncludeAll: true},
	}}
	builtins := RangeBuiltins(2*time.Second, time.Second, time.Minute)
	for _, c := range []struct {
		name, expr string
		values     map[string]Value
		want, err  string
	}{
		{name: "single", expr: `x{a="$namespace"}`, values: map[string]Value{"namespace": One("kong")}, want: `x{a="kong"}`},
		{name: "braces", expr: `x{a="${namespace}"}`, values: map[string]Value{"namespace": One("kong")}, want: `x{a="kong"}`},
		{name: "multi escaped", expr: `x{b=~"$service"}`, values: map[string]Value{"service": {Values: []string{"a.b", "c"}}}, want: `x{b=~"(a\.b|c)"}`},
		{name: "one of multi", expr: `x{b=~"$service"}`, values: map[string]Value{"service": One("a+b")}, want: `x{b=~"a\+b"}`},
		{name: "all value", expr: `x{b=~"$service"}`, values: map[string]Value{"service": {All: true}}, want: `x{b=~".+"}`},
		{name: "all values", expr: `x{p=~"$pod"}`, values: map[string]Value{"pod": {All: true, Values: []string{"p1", "p2"}}}, want: `x{p=~"(p1|p2)"}`},
		{name: "rate interval", expr: `rate(x[$__rate_interval])`, want: `rate(x[4s])`},
		{name: "longer name", expr: `$namespaces`, values: map[string]Value{"namespace": One("kong")}, err: "$namespaces is no variable"},
		{name: "unset", expr: `$namespace`, err: "$namespace has no value"},
		{name: "two for one", expr: `$namespace`, values: map[string]Value{"namespace": {Values: []string{"a", "b"}}}, err: "takes one value"},
		{name: "no all", expr: `$namespace`, values: map[string]Value{"namespace": {All: true}}, err: "no All option"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := d.Expand(c.expr, c.values, builtins)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("Expand(%q) = %q, %v; want an error with %q", c.expr, got, err, c.err)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("Expand(%q) = %q, %v; want %q", c.expr, got, err, c.want)
			}
		})
	}
}

// TestRangeBuiltins: $__rate_interval is Grafana's max($__interval +
// scrape interval, 4 × scrape interval).
func TestRangeBuiltins(t *testing.T) {
	for _, c := range []struct {
		step, scrape time.Duration
		want         string
	}{
		{2 * time.Second, time.Second, "4s"},
		{time.Minute, 15 * time.Second, "75s"},
		{15 * time.Second, 15 * time.Second, "60s"},
		{1500 * time.Millisecond, 500 * time.Millisecond, "2s"},
	} {
		if got := RangeBuiltins(c.step, c.scrape, time.Hour)["__rate_interval"]; got != c.want {
			t.Errorf("step %s scrape %s: $__rate_interval %s, want %s", c.step, c.scrape, got, c.want)
		}
	}
}
