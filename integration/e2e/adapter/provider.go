package adapter

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/metrics/pkg/apis/custom_metrics"
	"sigs.k8s.io/custom-metrics-apiserver/pkg/provider"
	"sigs.k8s.io/custom-metrics-apiserver/pkg/provider/helpers"
)

// Options configure NewProvider.
type Options struct {
	Config     *Config
	Prometheus string // base URL
	Mapper     apimeta.RESTMapper
	Client     dynamic.Interface
	// Relist is how often series are discovered again; MaxAge how far back
	// discovery looks (prometheus-adapter's --metrics-max-age, which
	// defaults to the relist interval).
	Relist, MaxAge time.Duration
	Logger         *slog.Logger
}

// Provider serves the rules' object metrics. It is safe for concurrent use.
type Provider struct {
	opts  Options
	rules []*compiledRule
	http  *http.Client

	mu    sync.RWMutex // Protects known.
	known map[provider.CustomMetricInfo]seriesRef
}

// seriesRef is what a discovered metric is queried with.
type seriesRef struct {
	rule   *compiledRule
	series string
	// resourceLabel and namespaceLabel are the series labels that name the
	// object and its namespace.
	resourceLabel, namespaceLabel string
}

// NewProvider compiles the config's rules. Call Run to discover series.
func NewProvider(opts Options) (*Provider, error) {
	p := &Provider{opts: opts, http: &http.Client{Timeout: 10 * time.Second}, known: map[provider.CustomMetricInfo]seriesRef{}}
	for i, r := range opts.Config.Rules {
		cr, err := compile(i, r)
		if err != nil {
			return nil, err
		}
		for _, l := range cr.overrideLabels() {
			if _, err := p.groupResource(cr.Resources.Overrides[l]); err != nil {
				return nil, fmt.Errorf("rule #%d: resources.overrides.%s: %w", i, l, err)
			}
		}
		p.rules = append(p.rules, cr)
	}
	if p.opts.MaxAge == 0 {
		p.opts.MaxAge = p.opts.Relist
	}
	return p, nil
}

func (p *Provider) groupResource(gr GroupResource) (schema.GroupResource, error) {
	gvr, err := p.opts.Mapper.ResourceFor(schema.GroupVersionResource{Group: gr.Group, Resource: gr.Resource})
	if err != nil {
		return schema.GroupResource{}, err
	}
	return gvr.GroupResource(), nil
}

// Run discovers series now and then every Relist until ctx ends.
func (p *Provider) Run(ctx context.Context) {
	t := time.NewTicker(p.opts.Relist)
	defer t.Stop()
	for {
		if err := p.discover(ctx); err != nil {
			p.opts.Logger.Warn("Discovering series failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

var namespaces = schema.GroupResource{Resource: "namespaces"}

func (p *Provider) discover(ctx context.Context) error {
	known := map[provider.CustomMetricInfo]seriesRef{}
	for _, r := range p.rules {
		series, err := p.series(ctx, r.SeriesQuery, time.Now().Add(-p.opts.MaxAge))
		if err != nil {
			return err
		}
		labels := r.overrideLabels()
		// The label naming the namespace of the other resources.
		nsLabel := ""
		resources := map[string]schema.GroupResource{}
		for _, l := range labels {
			gr, err := p.groupResource(r.Resources.Overrides[l])
			if err != nil {
				return err
			}
			resources[l] = gr
			if gr == namespaces {
				nsLabel = l
			}
		}
		for _, s := range series {
			name, ok := r.metricName(s["__name__"])
			if !ok {
				continue
			}
			for _, l := range labels {
				if s[l] == "" {
					continue
				}
				gr := resources[l]
				info := provider.CustomMetricInfo{GroupResource: gr, Namespaced: gr != namespaces, Metric: name}
				ref := seriesRef{rule: r, series: s["__name__"], resourceLabel: l}
				if info.Namespaced {
					ref.namespaceLabel = nsLabel
				}
				known[info] = ref
			}
		}
	}
	p.mu.Lock()
	p.known = known
	p.mu.Unlock()
	return nil
}

// ListAllMetrics implements provider.CustomMetricsProvider.
func (p *Provider) ListAllMetrics() []provider.CustomMetricInfo {
	p.mu.RLock()
	defer p.mu.RUnlock()
	out := make([]provider.CustomMetricInfo, 0, len(p.known))
	for info := range p.known {
		out = append(out, info)
	}
	return out
}

func (p *Provider) lookup(info provider.CustomMetricInfo) (seriesRef, bool) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	ref, ok := p.known[info]
	return ref, ok
}

// GetMetricByName implements provider.CustomMetricsProvider.
func (p *Provider) GetMetricByName(ctx context.Context, name types.NamespacedName, info provider.CustomMetricInfo, metricSelector labels.Selector) (*custom_metrics.MetricValue, error) {
	values, err := p.query(ctx, info, name.Namespace, []string{name.Name}, metricSelector)
	if err != nil {
		return nil, err
	}
	v, ok := values[name.Name]
	if !ok {
		return nil, provider.NewMetricNotFoundForError(info.GroupResource, info.Metric, name.Name)
	}
	return p.metricValue(name, info, v)
}

// GetMetricBySelector implements provider.CustomMetricsProvider.
func (p *Provider) GetMetricBySelector(ctx context.Context, namespace string, selector labels.Selector, info provider.CustomMetricInfo, metricSelector labels.Selector) (*custom_metrics.MetricValueList, error) {
	names, err := helpers.ListObjectNames(p.opts.Mapper, p.opts.Client, namespace, selector, info)
	if err != nil {
		return nil, err
	}
	list := &custom_metrics.MetricValueList{}
	if len(names) == 0 {
		return list, nil
	}
	values, err := p.query(ctx, info, namespace, names, metricSelector)
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		v, ok := values[n]
		if !ok {
			continue
		}
		mv, err := p.metricValue(types.NamespacedName{Namespace: namespace, Name: n}, info, v)
		if err != nil {
			return nil, err
		}
		list.Items = append(list.Items, *mv)
	}
	return list, nil
}

// query evaluates the metric's metricsQuery for the named objects and
// returns the values by object name. An undiscovered metric is NotFound.
func (p *Provider) query(ctx context.Context, info provider.CustomMetricInfo, namespace string, names []string, metricSelector labels.Selector) (map[string]float64, error) {
	ref, ok := p.lookup(info)
	if !ok {
		return nil, provider.NewMetricNotFoundError(info.GroupResource, info.Metric)
	}
	extra, err := matchers(metricSelector)
	if err != nil {
		return nil, err
	}
	q, err := ref.rule.buildQuery(ref.series, extra, ref.resourceLabel, names, ref.namespaceLabel, namespace)
	if err != nil {
		return nil, err
	}
	samples, err := p.instant(ctx, q)
	if err != nil {
		return nil, err
	}
	values := map[string]float64{}
	for _, s := range samples {
		values[s.labels[ref.resourceLabel]] = s.value
	}
	return values, nil
}

func (p *Provider) metricValue(name types.NamespacedName, info provider.CustomMetricInfo, v float64) (*custom_metrics.MetricValue, error) {
	ref, err := helpers.ReferenceFor(p.opts.Mapper, name, info)
	if err != nil {
		return nil, err
	}
	// prometheus-adapter serves 0/0 (traffic stopped) as 0.
	if math.IsNaN(v) {
		v = 0
	}
	return &custom_metrics.MetricValue{
		DescribedObject: ref,
		Metric:          custom_metrics.MetricIdentifier{Name: info.Metric},
		Timestamp:       metav1.Now(),
		Value:           *resource.NewMilliQuantity(int64(v*1000), resource.DecimalSI),
	}, nil
}

// matchers turns a metric label selector into PromQL matchers.
func matchers(sel labels.Selector) ([]string, error) {
	if sel == nil {
		return nil, nil
	}
	reqs, selectable := sel.Requirements()
	if !selectable {
		return nil, nil
	}
	var out []string
	for _, r := range reqs {
		vals := r.Values().UnsortedList()
		switch r.Operator() {
		case selection.Equals, selection.DoubleEquals:
			out = append(out, fmt.Sprintf("%s=%q", r.Key(), vals[0]))
		case selection.NotEquals:
			out = append(out, fmt.Sprintf("%s!=%q", r.Key(), vals[0]))
		case selection.In:
			out = append(out, fmt.Sprintf("%s=~%q", r.Key(), strings.Join(vals, "|")))
		case selection.NotIn:
			out = append(out, fmt.Sprintf("%s!~%q", r.Key(), strings.Join(vals, "|")))
		case selection.Exists:
			out = append(out, fmt.Sprintf("%s=~%q", r.Key(), ".+"))
		case selection.DoesNotExist:
			out = append(out, fmt.Sprintf("%s=%q", r.Key(), ""))
		default:
			return nil, fmt.Errorf("metric selector operator %q is not supported", r.Operator())
		}
	}
	return out, nil
}

type sample struct {
	labels map[string]string
	value  float64
}

// series asks Prometheus for the label sets matching match since start.
func (p *Provider) series(ctx context.Context, match string, start time.Time) ([]map[string]string, error) {
	v := url.Values{"match[]": {match}, "start": {strconv.FormatInt(start.Unix(), 10)}}
	var data []map[string]string
	if err := p.api(ctx, "/api/v1/series", v, &data); err != nil {
		return nil, err
	}
	return data, nil
}

// instant evaluates an instant query that must return a vector.
func (p *Provider) instant(ctx context.Context, q string) ([]sample, error) {
	var data struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		} `json:"result"`
	}
	if err := p.api(ctx, "/api/v1/query", url.Values{"query": {q}}, &data); err != nil {
		return nil, err
	}
	if data.ResultType != "vector" {
		return nil, fmt.Errorf("query %q: result type %q, want vector", q, data.ResultType)
	}
	out := make([]sample, 0, len(data.Result))
	for _, r := range data.Result {
		s, _ := r.Value[1].(string)
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, fmt.Errorf("query %q: value %v: %w", q, r.Value[1], err)
		}
		out = append(out, sample{labels: r.Metric, value: v})
	}
	return out, nil
}

func (p *Provider) api(ctx context.Context, path string, v url.Values, data any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.opts.Prometheus+path, strings.NewReader(v.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := p.http.Do(req)
	if err != nil {
		return fmt.Errorf("prometheus %s: %w", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("prometheus %s: reading the answer: %w", path, err)
	}
	var env struct {
		Status string          `json:"status"`
		Error  string          `json:"error"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		return fmt.Errorf("prometheus %s: HTTP %s: %w", path, resp.Status, err)
	}
	if env.Status != "success" {
		return fmt.Errorf("prometheus %s: %s", path, env.Error)
	}
	if err := json.Unmarshal(env.Data, data); err != nil {
		return fmt.Errorf("prometheus %s: decoding data: %w", path, err)
	}
	return nil
}
