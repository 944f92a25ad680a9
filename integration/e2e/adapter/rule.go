// Package adapter is the end-to-end test's stand-in for prometheus-adapter:
// the part of its rule format that Kong's autoscaling tutorial uses, served
// as object metrics through sigs.k8s.io/custom-metrics-apiserver.
//
// The part: seriesQuery discovery, resources.overrides, name.matches and
// name.as, and metricsQuery with <<.Series>>, <<.LabelMatchers>>,
// <<.LabelValuesByName>>, <<.GroupBy>> and <<.GroupBySlice>>. A config
// with anything else (seriesFilters, resources.template, externalRules,
// resourceRules) is refused rather than half understood.
package adapter

import (
	"bytes"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
	"text/template"

	"sigs.k8s.io/yaml"
)

// Config is prometheus-adapter's --config file: rules: is a list. (The
// Helm chart's values.yaml nests the same list under rules.custom.)
type Config struct {
	Rules []Rule `json:"rules"`
}

// Rule is one discovery rule.
type Rule struct {
	SeriesQuery string `json:"seriesQuery"`
	Resources   struct {
		Overrides map[string]GroupResource `json:"overrides"`
	} `json:"resources"`
	Name struct {
		Matches string `json:"matches"`
		As      string `json:"as"`
	} `json:"name"`
	MetricsQuery string `json:"metricsQuery"`
}

// GroupResource names a Kubernetes resource as the rule format does:
// "service", "services" and "Service" are all accepted.
type GroupResource struct {
	Group    string `json:"group"`
	Resource string `json:"resource"`
}

// LoadConfig reads and checks a config file.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading adapter config: %w", err)
	}
	cfg, err := ParseConfig(data)
	if err != nil {
		return nil, fmt.Errorf("adapter config %s: %w", path, err)
	}
	return cfg, nil
}

// ConfigFromChartValues returns the --config text that the Helm chart's
// values.yaml gives prometheus-adapter: its rules.custom list, verbatim,
// under rules:.
func ConfigFromChartValues(values []byte) ([]byte, error) {
	var v struct {
		Rules struct {
			Custom []any `json:"custom"`
		} `json:"rules"`
	}
	if err := yaml.Unmarshal(values, &v); err != nil {
		return nil, fmt.Errorf("chart values: %w", err)
	}
	if len(v.Rules.Custom) == 0 {
		return nil, fmt.Errorf("chart values: no rules.custom")
	}
	return yaml.Marshal(map[string]any{"rules": v.Rules.Custom})
}

// ParseConfig decodes a config strictly and compiles nothing yet; see
// Compile.
func ParseConfig(data []byte) (*Config, error) {
	var cfg Config
	if err := yaml.UnmarshalStrict(data, &cfg); err != nil {
		return nil, fmt.Errorf("not the supported subset of prometheus-adapter's format: %w", err)
	}
	if len(cfg.Rules) == 0 {
		return nil, fmt.Errorf("no rules")
	}
	return &cfg, nil
}

// compiledRule is a Rule ready to use.
type compiledRule struct {
	Rule
	matches *regexp.Regexp
	query   *template.Template
}

func compile(i int, r Rule) (*compiledRule, error) {
	if r.SeriesQuery == "" {
		return nil, fmt.Errorf("rule #%d: seriesQuery is empty", i)
	}
	if len(r.Resources.Overrides) == 0 {
		return nil, fmt.Errorf("rule #%d: resources.overrides is empty", i)
	}
	matches := r.Name.Matches
	if matches == "" {
		matches = "(.*)"
	}
	re, err := regexp.Compile(matches)
	if err != nil {
		return nil, fmt.Errorf("rule #%d: name.matches: %w", i, err)
	}
	q, err := template.New("metricsQuery").Delims("<<", ">>").Option("missingkey=error").Parse(r.MetricsQuery)
	if err != nil {
		return nil, fmt.Errorf("rule #%d: metricsQuery: %w", i, err)
	}
	return &compiledRule{Rule: r, matches: re, query: q}, nil
}

// metricName is the name a series is served under: name.matches applied
// to the series name and expanded into name.as ("$1", or the whole name
// when as is empty), as prometheus-adapter does.
func (r *compiledRule) metricName(series string) (string, bool) {
	m := r.matches.FindStringSubmatchIndex(series)
	if m == nil {
		return "", false
	}
	as := r.Name.As
	if as == "" {
		if r.matches.NumSubexp() == 0 {
			return series, true
		}
		as = "$1"
	}
	return string(r.matches.ExpandString(nil, as, series, m)), true
}

// queryArgs are the fields metricsQuery templates may use.
type queryArgs struct {
	Series            string
	LabelMatchers     string
	LabelValuesByName map[string]string
	GroupBy           string
	GroupBySlice      []string
}

// buildQuery renders metricsQuery for objects of the resource whose label
// is resourceLabel, named names, in namespace (label namespaceLabel; both
// empty for a cluster-scoped resource), in the order prometheus-adapter
// writes the matchers (pkg/naming/metrics_query.go, Build, v0.10 to v0.12):
// the metric selector's (extra), then the namespace's, then the object's.
// LabelValuesByName maps each label to its value, several values joined
// with "|", as there: a string, not a list.
func (r *compiledRule) buildQuery(series string, extra []string, resourceLabel string, names []string, namespaceLabel, namespace string) (string, error) {
	exprs := append([]string(nil), extra...)
	values := map[string]string{}
	if namespaceLabel != "" && namespace != "" {
		exprs = append(exprs, fmt.Sprintf("%s=%q", namespaceLabel, namespace))
		values[namespaceLabel] = namespace
	}
	target := strings.Join(names, "|")
	if len(names) == 1 {
		exprs = append(exprs, fmt.Sprintf("%s=%q", resourceLabel, target))
	} else {
		exprs = append(exprs, fmt.Sprintf("%s=~%q", resourceLabel, target))
	}
	values[resourceLabel] = target
	var b bytes.Buffer
	err := r.query.Execute(&b, queryArgs{
		Series:            series,
		LabelMatchers:     strings.Join(exprs, ","),
		LabelValuesByName: values,
		GroupBy:           resourceLabel,
		GroupBySlice:      []string{resourceLabel},
	})
	if err != nil {
		return "", fmt.Errorf("rendering metricsQuery: %w", err)
	}
	return b.String(), nil
}

// overrideLabels returns the rule's override labels, sorted.
func (r *compiledRule) overrideLabels() []string {
	labels := make([]string, 0, len(r.Resources.Overrides))
	for l := range r.Resources.Overrides {
		labels = append(labels, l)
	}
	sort.Strings(labels)
	return labels
}
