// Package dashboard reads the Grafana dashboard that manifests/dashboards
// ships and runs its queries: the JSON decoded strictly into
// grafana-foundation-sdk's dashboard types, Grafana's template variables
// expanded as Grafana's Prometheus data source expands them, and every
// panel's and variable's query evaluated through a real Prometheus server's
// HTTP API, scraping a real sidecar in front of the Kong simulator (Stack).
// The manifests' tests and cmd/dashboard-png use it; nothing here runs
// Grafana.
package dashboard

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"sync"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	sdk "github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
)

// Dashboard is what the tests and the picture need of a dashboard: its
// panels with their Prometheus queries, and its template variables.
type Dashboard struct {
	Title     string
	UID       string
	Panels    []Panel // in the file's order, rows included
	Variables []Variable
}

// Panel is one panel of the dashboard.
type Panel struct {
	ID      uint32
	Type    string // "timeseries", "row", ...
	Title   string
	Unit    string // fieldConfig.defaults.unit
	Targets []Target
	// Position on Grafana's 24-column grid.
	X, Y, W, H uint32
}

// Target is one Prometheus query of a panel.
type Target struct {
	RefID  string
	Expr   string
	Legend string // legendFormat, such as "{{kubernetes_name}} p99"
}

// Variable is one template variable.
type Variable struct {
	Name       string
	Type       string // "datasource", "query", "textbox", ...
	Query      string // the label_values(...) query, the data source type, or a textbox's default
	Multi      bool
	IncludeAll bool
	AllValue   string // the value "All" stands for; empty: every value, as Grafana joins them
}

// legendLabel matches one {{label}} of a legend format.
var legendLabel = regexp.MustCompile(`\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}`)

// LegendLabels returns the labels the target's legend format names.
func (t Target) LegendLabels() []string {
	var labels []string
	for _, m := range legendLabel.FindAllStringSubmatch(t.Legend, -1) {
		labels = append(labels, m[1])
	}
	return labels
}

// LegendFor renders the legend format for a series' labels, as Grafana does.
func (t Target) LegendFor(metric map[string]string) string {
	return legendLabel.ReplaceAllStringFunc(t.Legend, func(s string) string {
		return metric[legendLabel.FindStringSubmatch(s)[1]]
	})
}

// registerPlugins makes the SDK's strict decoding decode each panel's
// options and fieldConfig.defaults.custom by its plugin type, and each
// target by its data source type, instead of keeping them as untyped maps.
var registerPlugins = sync.OnceFunc(plugins.RegisterDefaultPlugins)

// Load reads and decodes the dashboard at path (Parse).
func Load(path string) (*Dashboard, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the dashboard: %w", err)
	}
	d, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return d, nil
}

// Parse decodes a dashboard's JSON strictly with grafana-foundation-sdk: an
// unknown field, a missing required field or a wrong type anywhere (panel
// options and field config by their plugin's types, targets as Prometheus
// queries) is an error. Every panel, target and query variable must use
// the data source variable (DataSourceUID), and every panel must have a
// query.
func Parse(data []byte) (*Dashboard, error) {
	registerPlugins()
	// The dashboard as Grafana's JSON model (schemaVersion, templating,
	// panels), which grafana-foundation-sdk calls v1 and marks deprecated
	// in favour of the v2 resource format that Grafana's files do not use.
	var d sdk.Dashboard //nolint:staticcheck // SA1019: the v1 model is the JSON Grafana writes and provisions from files
	if err := strict(d.UnmarshalJSONStrict(data)); err != nil {
		return nil, fmt.Errorf("decoding strictly as a Grafana dashboard: %w", err)
	}
	// Each panel again, by its type, and its targets as Prometheus queries:
	// the SDK's PanelOrRowPanel drops a panel that decoded without error,
	// and Panel drops such a target, since their UnmarshalJSONStrict
	// return an empty error list as a non-nil error (see strict). And the
	// SDK decodes fieldConfig leniently, apart from its custom part: decode
	// the rest of it strictly too.
	var raw struct {
		Panels []json.RawMessage `json:"panels"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("decoding the panels: %w", err)
	}
	out := &Dashboard{Title: deref(d.Title), UID: deref(d.Uid)}
	var errs []error
	for i, rp := range raw.Panels {
		var head struct {
			Type        string            `json:"type"`
			FieldConfig json.RawMessage   `json:"fieldConfig"`
			Targets     []json.RawMessage `json:"targets"`
		}
		if err := json.Unmarshal(rp, &head); err != nil {
			return nil, fmt.Errorf("panels[%d]: %w", i, err)
		}
		if head.FieldConfig != nil {
			var fc sdk.FieldConfigSource
			if err := strict(fc.UnmarshalJSONStrict(head.FieldConfig)); err != nil {
				errs = append(errs, fmt.Errorf("panels[%d].fieldConfig: %w", i, err))
			}
		}
		if head.Type == "row" {
			var r sdk.RowPanel
			if err := strict(r.UnmarshalJSONStrict(rp)); err != nil {
				errs = append(errs, fmt.Errorf("panels[%d]: %w", i, err))
				continue
			}
			p := Panel{ID: r.Id, Type: r.Type, Title: deref(r.Title)}
			if r.GridPos != nil {
				p.X, p.Y, p.W, p.H = r.GridPos.X, r.GridPos.Y, r.GridPos.W, r.GridPos.H
			}
			if len(r.Panels) > 0 {
				errs = append(errs, fmt.Errorf("panels[%d] (row %q): collapsed rows holding panels are not used here; keep rows open", i, p.Title))
			}
			out.Panels = append(out.Panels, p)
			continue
		}
		var sp sdk.Panel
		if err := strict(sp.UnmarshalJSONStrict(rp)); err != nil {
			errs = append(errs, fmt.Errorf("panels[%d]: %w", i, err))
			continue
		}
		p, err := panelOf(&sp, head.Targets)
		if err != nil {
			errs = append(errs, fmt.Errorf("panels[%d] (%q): %w", i, deref(sp.Title), err))
			continue
		}
		out.Panels = append(out.Panels, p)
	}
	for i, v := range d.Templating.List {
		vv, err := variableOf(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("templating.list[%d] (%s): %w", i, v.Name, err))
			continue
		}
		out.Variables = append(out.Variables, vv)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

// strict returns the error of an SDK UnmarshalJSONStrict, nil for none:
// they return their error list as it is, an empty one included, which is a
// non-nil error of no errors.
func strict(err error) error {
	var list cog.BuildErrors
	if errors.As(err, &list) && len(list) == 0 {
		return nil
	}
	return err
}

// DataSourceUID is the data source every panel, target and query variable
// must name: the dashboard's data source variable.
const DataSourceUID = "${datasource}"

func panelOf(sp *sdk.Panel, targets []json.RawMessage) (Panel, error) {
	p := Panel{Type: sp.Type, Title: deref(sp.Title)}
	if sp.Id != nil {
		p.ID = *sp.Id
	}
	if sp.GridPos != nil {
		p.X, p.Y, p.W, p.H = sp.GridPos.X, sp.GridPos.Y, sp.GridPos.W, sp.GridPos.H
	}
	if sp.FieldConfig != nil {
		p.Unit = deref(sp.FieldConfig.Defaults.Unit)
	}
	if err := checkDataSource(sp.Datasource); err != nil {
		return p, fmt.Errorf("datasource: %w", err)
	}
	for i, raw := range targets {
		var q prometheus.Dataquery
		if err := strict(q.UnmarshalJSONStrict(raw)); err != nil {
			return p, fmt.Errorf("targets[%d]: %w", i, err)
		}
		if err := checkDataSource(q.Datasource); err != nil {
			return p, fmt.Errorf("targets[%d].datasource: %w", i, err)
		}
		p.Targets = append(p.Targets, Target{RefID: deref(q.RefId), Expr: q.Expr, Legend: deref(q.LegendFormat)})
	}
	if len(p.Targets) == 0 {
		return p, errors.New("no queries")
	}
	return p, nil
}

func variableOf(v sdk.VariableModel) (Variable, error) {
	out := Variable{
		Name:       v.Name,
		Type:       string(v.Type),
		Multi:      deref(v.Multi),
		IncludeAll: deref(v.IncludeAll),
		AllValue:   deref(v.AllValue),
	}
	if v.Query != nil {
		switch {
		case v.Query.String != nil:
			out.Query = *v.Query.String
		case v.Query.Map != nil:
			q, ok := v.Query.Map["query"].(string)
			if !ok {
				return out, fmt.Errorf("query %v has no query string", v.Query.Map)
			}
			out.Query = q
		}
	}
	if out.Type == "query" {
		if err := checkDataSource(v.Datasource); err != nil {
			return out, fmt.Errorf("datasource: %w", err)
		}
		if v.Definition == nil || *v.Definition != out.Query {
			return out, fmt.Errorf("definition %q is not the query %q (Grafana shows the definition)", deref(v.Definition), out.Query)
		}
	}
	return out, nil
}

// checkDataSource requires a reference to the dashboard's Prometheus data
// source variable.
func checkDataSource(ref *common.DataSourceRef) error {
	if ref == nil {
		return fmt.Errorf("none; want the data source variable %s", DataSourceUID)
	}
	if deref(ref.Type) != "prometheus" || deref(ref.Uid) != DataSourceUID {
		return fmt.Errorf("type %q uid %q; want type prometheus, uid %s", deref(ref.Type), deref(ref.Uid), DataSourceUID)
	}
	return nil
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
