package e2e_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// serviceMonitorInterval is the scrape interval of the shipped
// ServiceMonitor's endpoint.
func serviceMonitorInterval(t *testing.T, objs []*unstructured.Unstructured) time.Duration {
	t.Helper()
	sm, err := find(objs, "ServiceMonitor", "kong-metrics-sidecar")
	if err != nil {
		t.Fatal(err)
	}
	eps, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
	if len(eps) != 1 {
		t.Fatalf("the ServiceMonitor has %d endpoints, want 1", len(eps))
	}
	ep, _ := eps[0].(map[string]any)
	s, _ := ep["interval"].(string)
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Fatalf("the ServiceMonitor's interval %q: %v", s, err)
	}
	return d
}

// haWindow is how many scrape intervals the HA step counts fetches over.
const haWindow = 3

// stepHA checks the HA pair: each Prometheus runs with its own
// prometheus_replica, both scrape every sidecar, and with
// SIDECAR_MIN_FETCH_INTERVAL each Kong is fetched once per scrape interval,
// not once per scrape. Over a window of haWindow intervals each replica
// scrapes each pod haWindow times and each Kong simulator counts about
// haWindow fetches; without the interval it would count twice as many.
// A window of n intervals holds n periodic events, n ± 1 when one falls on
// an edge or the fetching replica changes: so at most n+1 fetches, at
// least n-1 scrapes per replica.
func stepHA(ctx context.Context, t *testing.T, w *world, objs []*unstructured.Unstructured, proms []*promReplica, dp *dataPlanes) {
	t.Helper()
	interval := serviceMonitorInterval(t, objs)
	if minFetchInterval >= interval || 2*minFetchInterval <= interval {
		t.Fatalf("SIDECAR_MIN_FETCH_INTERVAL %s: want less than the scrape interval %s and more than half of it", minFetchInterval, interval)
	}
	if len(proms) != 2 {
		t.Fatalf("%d Prometheus replicas, want the resource's 2", len(proms))
	}
	for _, r := range proms {
		cfg, err := loadedConfig(ctx, r.URL)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(cfg, "prometheus_replica: "+r.pc.pod) {
			t.Fatalf("Prometheus %d runs without external label prometheus_replica %s:\n%s", r.index, r.pc.pod, cfg)
		}
	}
	pods := dp.running()
	for _, k := range pods {
		if got := k.injected["SIDECAR_MIN_FETCH_INTERVAL"]; got != minFetchInterval.String() {
			t.Fatalf("pod %s: the injected sidecar has SIDECAR_MIN_FETCH_INTERVAL=%q, want the injector's INJECTOR_SIDECAR_MIN_FETCH_INTERVAL %s", k.name, got, minFetchInterval)
		}
	}
	w.waitFor(ctx, 60*time.Second, "every Prometheus has every sidecar's target up", func() (bool, string) {
		done := true
		var obs []string
		for i, r := range proms {
			tg, err := activeTargets(ctx, r.URL)
			if err != nil {
				return false, err.Error()
			}
			for _, k := range pods {
				done = done && tg[k.name] == "up"
			}
			obs = append(obs, fmt.Sprintf("Prometheus %d: %v", i, tg))
		}
		return done, strings.Join(obs, "; ")
	})

	before := make([]uint64, len(pods))
	for i, k := range pods {
		n, err := k.metricsFetches(ctx)
		if err != nil {
			t.Fatal(err)
		}
		before[i] = n
	}
	window := haWindow * interval
	select {
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	case <-time.After(window):
	}
	var lines []string
	for i, k := range pods {
		n, err := k.metricsFetches(ctx)
		if err != nil {
			t.Fatal(err)
		}
		fetches := int(n - before[i])
		scrapes := 0
		var per []string
		for _, r := range proms {
			s, err := r.Query(ctx, fmt.Sprintf(`count_over_time(up{job="kong-metrics-sidecar",pod=%q}[%ds])`, k.name, int(window.Seconds())))
			if err != nil || len(s) != 1 {
				t.Fatalf("Prometheus %d: scrapes of %s: %v %v", r.index, k.name, s, err)
			}
			if int(s[0].Value) < haWindow-1 {
				t.Fatalf("Prometheus %d scraped %s %v times in %s, want at least %d", r.index, k.name, s[0].Value, window, haWindow-1)
			}
			scrapes += int(s[0].Value)
			per = append(per, fmt.Sprintf("%.0f", s[0].Value))
		}
		if fetches < haWindow-1 || fetches > haWindow+1 {
			t.Fatalf("Kong in pod %s was fetched %d times in %s (%d scrapes by the two Prometheus), want %d ± 1: one per scrape interval", k.name, fetches, window, scrapes, haWindow)
		}
		lines = append(lines, fmt.Sprintf("%s: %d fetches for %s scrapes", k.name, fetches, strings.Join(per, "+")))
	}
	w.step("step 3d passed: HA pair: %s and %s (prometheus_replica each its own) scrape every sidecar; with SIDECAR_MIN_FETCH_INTERVAL=%s each Kong counted one /metrics fetch per %s interval over %s: %s",
		proms[0].pc.pod, proms[1].pc.pod, minFetchInterval, interval, window, strings.Join(lines, "; "))
}

// stepSpread checks that the tutorial's traffic, sent to Kong's proxy
// Service, was spread over the Kong pods: each served about a third of the
// last minute's requests.
func stepSpread(ctx context.Context, t *testing.T, w *world, prom *promReplica, pods []string) {
	t.Helper()
	obs := w.waitFor(ctx, 30*time.Second, "the last minute's requests spread over every Kong pod", func() (bool, string) {
		s, err := prom.Query(ctx, `sum by (pod) (increase(kong_upstream_latency_ms_count{exported_service="command"}[1m]))`)
		if err != nil {
			return false, err.Error()
		}
		total := 0.0
		by := map[string]float64{}
		for _, x := range s {
			by[x.Metric["pod"]] = x.Value
			total += x.Value
		}
		done := len(by) == len(pods) && total > 0
		var parts []string
		for _, p := range pods {
			share := by[p] / total
			done = done && share > 1.0/float64(len(pods))-0.1 && share < 1.0/float64(len(pods))+0.1
			parts = append(parts, fmt.Sprintf("%s %.0f (%.0f%%)", p, by[p], 100*share))
		}
		return done, strings.Join(parts, ", ")
	})
	w.step("step 4 passed: the traffic is spread over the %d Kong pods: %s", len(pods), obs)
}
