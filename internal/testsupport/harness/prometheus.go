package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// PrometheusBinary finds the Prometheus 3 server the tests run:
// $PROMETHEUS_BIN when set, else the one scripts/build-test-bins.sh builds
// from integration/e2e/bins/prometheus into its cache (on first use; after
// that it only prints the path). Never a Prometheus from PATH, whose version
// the tests cannot know.
func PrometheusBinary(ctx context.Context) (string, error) {
	if bin := os.Getenv("PROMETHEUS_BIN"); bin != "" {
		return bin, nil
	}
	bins, err := ThirdPartyBinaries(ctx, "prometheus")
	if err != nil {
		return "", fmt.Errorf("no Prometheus server (set PROMETHEUS_BIN to use another): %w", err)
	}
	return bins["E2E_PROMETHEUS_BIN"], nil
}

// Prometheus is a running Prometheus server.
type Prometheus struct {
	*Process
	URL string // http://127.0.0.1:port
}

// StartPrometheus runs a Prometheus server with the given configuration
// file content, storing its data under dir. ctx bounds finding (or
// building) the binary, not the server's life: Stop ends it.
func StartPrometheus(ctx context.Context, dir, config string) (*Prometheus, error) {
	bin, err := PrometheusBinary(ctx)
	if err != nil {
		return nil, err
	}
	cfg := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfg, []byte(config), 0o644); err != nil {
		return nil, fmt.Errorf("writing Prometheus config: %w", err)
	}
	p, err := Start("prometheus", bin, []string{
		"--config.file=" + cfg,
		"--storage.tsdb.path=" + filepath.Join(dir, "data"),
		"--web.listen-address=" + AnyPort,
		"--log.level=info", // for the port it picked, logged as exporter-toolkit's "Listening on"
	}, nil)
	if err != nil {
		return nil, err
	}
	addr, err := p.LoggedValue(time.Minute, "address", "msg", "Listening on")
	if err != nil {
		p.Stop(5 * time.Second)
		return nil, err
	}
	prom := &Prometheus{Process: p, URL: "http://" + addr}
	if err := WaitHTTP(prom.URL+"/-/ready", p, time.Minute); err != nil {
		p.Stop(5 * time.Second)
		return nil, err
	}
	return prom, nil
}

// Sample is one series of an instant query's result.
type Sample struct {
	Metric map[string]string
	Value  float64
}

// Query evaluates an instant query through Prometheus' HTTP API.
func (p *Prometheus) Query(ctx context.Context, expr string) ([]Sample, error) {
	body, err := Get(ctx, p.URL+"/api/v1/query?query="+url.QueryEscape(expr))
	if err != nil {
		return nil, err
	}
	var resp struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		return nil, fmt.Errorf("decoding query result: %w", err)
	}
	if resp.Status != "success" {
		return nil, fmt.Errorf("query %q: %s", expr, resp.Error)
	}
	var out []Sample
	for _, r := range resp.Data.Result {
		s, _ := r.Value[1].(string)
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, fmt.Errorf("query %q: value %v: %w", expr, r.Value[1], err)
		}
		out = append(out, Sample{Metric: r.Metric, Value: v})
	}
	return out, nil
}

// Series lists the label sets of the series matching a selector.
func (p *Prometheus) Series(ctx context.Context, match string) ([]map[string]string, error) {
	body, err := Get(ctx, p.URL+"/api/v1/series?match[]="+url.QueryEscape(match))
	if err != nil {
		return nil, err
	}
	var resp struct {
		Status string              `json:"status"`
		Data   []map[string]string `json:"data"`
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		return nil, fmt.Errorf("decoding series: %w", err)
	}
	return resp.Data, nil
}
