package dashboard

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Prometheus runs queries through a Prometheus server's HTTP API, as
// Grafana's Prometheus data source sends them.
type Prometheus struct {
	URL string // such as http://127.0.0.1:9090
}

// Point is one sample of a range query's series.
type Point struct {
	T time.Time
	V float64
}

// Series is one series of a range query's result.
type Series struct {
	Metric map[string]string
	Points []Point
}

// QueryRange evaluates expr from start to end every step (GET
// /api/v1/query_range), as Grafana runs a time series panel's query.
func (p Prometheus) QueryRange(ctx context.Context, expr string, start, end time.Time, step time.Duration) ([]Series, error) {
	q := url.Values{
		"query": {expr},
		"start": {formatTime(start)},
		"end":   {formatTime(end)},
		"step":  {strconv.FormatFloat(step.Seconds(), 'f', -1, 64)},
	}
	var data struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Metric map[string]string `json:"metric"`
			Values [][2]any          `json:"values"`
		} `json:"result"`
	}
	if err := p.get(ctx, "/api/v1/query_range", q, &data); err != nil {
		return nil, fmt.Errorf("query %q: %w", expr, err)
	}
	if data.ResultType != "matrix" {
		return nil, fmt.Errorf("query %q: result type %q, want matrix", expr, data.ResultType)
	}
	out := make([]Series, 0, len(data.Result))
	for _, r := range data.Result {
		s := Series{Metric: r.Metric}
		for _, v := range r.Values {
			t, ok := v[0].(float64)
			str, ok2 := v[1].(string)
			if !ok || !ok2 {
				return nil, fmt.Errorf("query %q: sample %v is not [time, \"value\"]", expr, v)
			}
			f, err := strconv.ParseFloat(str, 64)
			if err != nil {
				return nil, fmt.Errorf("query %q: value %q: %w", expr, str, err)
			}
			s.Points = append(s.Points, Point{T: time.UnixMilli(int64(t * 1000)), V: f})
		}
		out = append(out, s)
	}
	return out, nil
}

// labelValuesQuery matches Grafana's label_values(label) and
// label_values(selector, label) variable queries.
var labelValuesQuery = regexp.MustCompile(`^\s*label_values\(\s*(?:(.*\S)\s*,\s*)?([a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*$`)

// LabelValues runs a label_values(...) variable query over [start, end]
// the way Grafana's Prometheus data source does: GET
// /api/v1/label/<label>/values with the selector as match[]. Other
// variable query forms are an error.
func (p Prometheus) LabelValues(ctx context.Context, query string, start, end time.Time) ([]string, error) {
	m := labelValuesQuery.FindStringSubmatch(query)
	if m == nil {
		return nil, fmt.Errorf("variable query %q is not label_values([selector,] label)", query)
	}
	q := url.Values{"start": {formatTime(start)}, "end": {formatTime(end)}}
	if m[1] != "" {
		q.Set("match[]", m[1])
	}
	var values []string
	if err := p.get(ctx, "/api/v1/label/"+m[2]+"/values", q, &values); err != nil {
		return nil, fmt.Errorf("variable query %q: %w", query, err)
	}
	return values, nil
}

// get calls the API and decodes a successful answer's data into v.
func (p Prometheus) get(ctx context.Context, path string, q url.Values, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.URL+path+"?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("reading the answer: %w", err)
	}
	var envelope struct {
		Status    string          `json:"status"`
		ErrorType string          `json:"errorType"`
		Error     string          `json:"error"`
		Warnings  []string        `json:"warnings"`
		Data      json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(body, &envelope); err != nil {
		return fmt.Errorf("HTTP %s: %w: %s", resp.Status, err, strings.TrimSpace(string(body)))
	}
	if envelope.Status != "success" {
		return fmt.Errorf("%s: %s", envelope.ErrorType, envelope.Error)
	}
	if len(envelope.Warnings) > 0 {
		return fmt.Errorf("warnings: %s", strings.Join(envelope.Warnings, "; "))
	}
	if err := json.Unmarshal(envelope.Data, v); err != nil {
		return fmt.Errorf("decoding the data: %w", err)
	}
	return nil
}

func formatTime(t time.Time) string {
	return strconv.FormatFloat(float64(t.UnixMilli())/1000, 'f', 3, 64)
}
