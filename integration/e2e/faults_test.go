package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/integration/e2e/cluster"
	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/testsupport/harness"
)

// The faults run at 10 replicas with the traffic at sleep 0.1, where the
// metric (100 ms) is 2.5 times the HPA's target: a dip below 36 ms, or a
// metric of 0, would scale command down at once (stabilization 1 s), so
// "no rescale" can fail there. A rise cannot show at maxReplicas, so the
// metric itself is sampled too and must stay at 100 ms ± 10%.

// metricMilli is the custom metric now, in thousandths of a millisecond.
func metricMilli(ctx context.Context, c *cluster.Cluster) (int64, error) {
	list, code, err := customMetric(ctx, c)
	if err != nil {
		return 0, fmt.Errorf("HTTP %d: %w", code, err)
	}
	if len(list.Items) != 1 {
		return 0, fmt.Errorf("%d items", len(list.Items))
	}
	return list.Items[0].Value.MilliValue(), nil
}

func near100ms(mv int64) bool { return mv >= 90_000 && mv <= 110_000 }

// samples keeps the custom metric's values during a fault, for the
// timeline.
type samples []int64

// take samples the metric, failing the test if it is unavailable or leaves
// 100 ms ± 10%.
func (s *samples) take(ctx context.Context, t *testing.T, c *cluster.Cluster, during string) {
	t.Helper()
	mv, err := metricMilli(ctx, c)
	if err != nil {
		t.Fatalf("the custom metric was unavailable while %s: %v", during, err)
	}
	if !near100ms(mv) {
		t.Fatalf("the custom metric was %dm while %s, want 100ms ± 10%%; before: %v", mv, during, *s)
	}
	*s = append(*s, mv)
}

func (s samples) String() string {
	if len(s) == 0 {
		return "no samples"
	}
	return fmt.Sprintf("%d samples, %dm to %dm", len(s), slices.Min(s), slices.Max(s))
}

// activeTargets is the health of each pod's target of the ServiceMonitor's
// job in a Prometheus (GET /api/v1/targets).
func activeTargets(ctx context.Context, promURL string) (map[string]string, error) {
	body, err := harness.Get(ctx, promURL+"/api/v1/targets?state=active")
	if err != nil {
		return nil, err
	}
	var resp struct {
		Data struct {
			ActiveTargets []struct {
				Labels map[string]string `json:"labels"`
				Health string            `json:"health"`
			} `json:"activeTargets"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		return nil, fmt.Errorf("decoding /api/v1/targets: %w", err)
	}
	out := map[string]string{}
	for _, tg := range resp.Data.ActiveTargets {
		if tg.Labels["job"] == "kong-metrics-sidecar" {
			out[tg.Labels["pod"]] = tg.Health
		}
	}
	return out, nil
}

// stepPodDeleted deletes one Kong pod: its processes stop, the endpoints
// controller drops it and every Prometheus drops its target; the
// ReplicaSet's replacement is injected, runs, and becomes a target that is
// up in every Prometheus. All the while the metric stays at 100 ms ± 10%,
// the HPA neither rescales nor fails to get it.
func stepPodDeleted(ctx context.Context, t *testing.T, w *world, c *cluster.Cluster, dp *dataPlanes, proms []*promReplica, base eventCounts) {
	t.Helper()
	victim := dp.running()[0].name
	if err := c.Client.CoreV1().Pods("kong").Delete(ctx, victim, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	deleted := time.Now()
	var ms samples
	var goneAfter time.Duration
	obs := w.waitFor(ctx, 120*time.Second, "pod "+victim+" deleted: its target gone from every Prometheus, its replacement's up in each, for at least 30s", func() (bool, string) {
		ms.take(ctx, t, c, "a Kong pod was deleted")
		hold := holdAt10(ctx, t, c, base, true)
		running := podNames(dp.running())
		done := len(running) == kongReplicas && !slices.Contains(running, victim)
		gone := true
		var obs []string
		for i, r := range proms {
			tg, err := activeTargets(ctx, r.URL)
			if err != nil {
				return false, err.Error()
			}
			_, has := tg[victim]
			gone = gone && !has
			for _, p := range running {
				done = done && tg[p] == "up"
			}
			obs = append(obs, fmt.Sprintf("Prometheus %d targets %v", i, tg))
		}
		if gone && goneAfter == 0 {
			goneAfter = time.Since(deleted)
		}
		done = done && gone && time.Since(deleted) > 30*time.Second
		return done, fmt.Sprintf("%s; running %v; %s", hold, running, strings.Join(obs, "; "))
	})
	w.step("step 5d passed: Kong pod %s deleted: its target gone from both Prometheus after %s, the replacement injected and scraped (%s); metric %s; no rescale, no FailedGetObjectMetric",
		victim, goneAfter.Round(100*time.Millisecond), obs, ms)
}

// stepKongRestart restarts one pod's Kong: its counters start from zero,
// Prometheus sees the reset (resets() > 0 in every replica), and the rule's
// rate() absorbs it: the metric, sampled across the restart, stays at
// 100 ms ± 10%; the HPA neither rescales nor fails to get it.
func stepKongRestart(ctx context.Context, t *testing.T, w *world, c *cluster.Cluster, dp *dataPlanes, proms []*promReplica, base eventCounts) {
	t.Helper()
	k := dp.running()[0]
	oldPid := k.simulator().Pid()
	fetches, err := k.metricsFetches(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ms samples
	ms.take(ctx, t, c, "Kong was about to restart")
	if err := dp.restartKong(k); err != nil {
		t.Fatalf("restarting Kong in pod %s: %v", k.name, err)
	}
	restarted := time.Now()
	after, err := k.metricsFetches(ctx)
	if err != nil || after >= fetches {
		t.Fatalf("Kong's counters did not start again from zero: /metrics fetches %d before, %d after (%v)", fetches, after, err)
	}
	w.step("step 5e: Kong in pod %s restarted (simulator pid %d, now %d): its counters start from zero (%d /metrics fetches before, %d after)",
		k.name, oldPid, k.simulator().Pid(), fetches, after)
	var seen time.Time
	query := fmt.Sprintf(`resets(kong_upstream_latency_ms_count{exported_service="command",pod=%q}[2m])`, k.name)
	obs := w.waitFor(ctx, 90*time.Second, "every Prometheus sees the counter reset, then 20s pass with the metric held", func() (bool, string) {
		ms.take(ctx, t, c, "Kong restarted")
		hold := holdAt10(ctx, t, c, base, true)
		all := true
		var obs []string
		for i, r := range proms {
			s, err := r.Query(ctx, query)
			if err != nil {
				return false, err.Error()
			}
			n := 0.0
			for _, x := range s {
				n += x.Value
			}
			all = all && n > 0
			obs = append(obs, fmt.Sprintf("Prometheus %d: %.0f resets", i, n))
		}
		if all && seen.IsZero() {
			seen = time.Now()
		}
		return all && time.Since(seen) > 20*time.Second, hold + "; " + strings.Join(obs, "; ")
	})
	w.step("step 5e passed: Kong's counter reset seen by every Prometheus %s after the restart (%s); metric across it %s; no rescale, no FailedGetObjectMetric",
		seen.Sub(restarted).Round(100*time.Millisecond), obs, ms)
}

// stepPrometheusRestart kills the Prometheus the adapter queries: the
// metric becomes unavailable and the HPA holds its 10 replicas, reporting
// FailedGetObjectMetric; started again on its data, the metric comes back
// at 100 ms ± 10% and the HPA still has not rescaled.
func stepPrometheusRestart(ctx context.Context, t *testing.T, w *world, c *cluster.Cluster, proms []*promReplica, base eventCounts) {
	t.Helper()
	r := proms[0]
	if err := r.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = r.Wait(10 * time.Second) // killed: its exit error says so
	killed := time.Now()
	w.step("step 5f: Prometheus 0 (%s), the one the adapter queries, killed (SIGKILL)", r.pc.pod)
	var failed string
	obs := w.waitFor(ctx, 60*time.Second, "the metric unavailable, the HPA at 10 with a FailedGetObjectMetric event and ScalingActive False (FailedGetObjectMetric), for 6s (three syncs)", func() (bool, string) {
		hold := holdAt10(ctx, t, c, base, false)
		_, err := metricMilli(ctx, c)
		events, eerr := hpaEvents(ctx, c)
		if eerr != nil {
			return false, eerr.Error()
		}
		if f := base.since(events, reasonFailedMetric); len(f) > 0 && failed == "" {
			failed = f[0].message
		}
		active, why, aerr := scalingActive(ctx, c)
		if aerr != nil {
			return false, aerr.Error()
		}
		inactive := !active && why == reasonFailedMetric
		return err != nil && failed != "" && inactive && time.Since(killed) > 6*time.Second,
			fmt.Sprintf("%s; metric: %v; FailedGetObjectMetric: %q; ScalingActive %v (%s)", hold, err, failed, active, why)
	})
	down := time.Since(killed).Round(100 * time.Millisecond)
	r.start(t, w)
	restarted := time.Now()
	w.step("step 5f: Prometheus 0 started again on its data after %s down (%s)", down, obs)
	var ms samples
	var back time.Time
	w.waitFor(ctx, 120*time.Second, "the metric back at 100ms ± 10% for 10s, the HPA still at 10 and ScalingActive again", func() (bool, string) {
		hold := holdAt10(ctx, t, c, base, false)
		mv, err := metricMilli(ctx, c)
		// Served from its replayed data alone, the metric could still
		// vanish: an adapter relist that looks back past the last sample
		// before the kill finds no series. It is back once Prometheus 0
		// has scraped every Kong pod again.
		if err == nil && back.IsZero() {
			fresh, ferr := scrapedSince(ctx, r, restarted)
			if ferr != nil {
				return false, ferr.Error()
			}
			if len(fresh) < kongReplicas {
				return false, fmt.Sprintf("%s; metric %dm from the data before the kill; %d of %d Kong pods scraped since the restart", hold, mv, len(fresh), kongReplicas)
			}
			back = time.Now()
		}
		if !back.IsZero() {
			ms.take(ctx, t, c, "Prometheus had come back")
		}
		active, why, aerr := scalingActive(ctx, c)
		if aerr != nil {
			return false, aerr.Error()
		}
		return !back.IsZero() && time.Since(back) > 10*time.Second && active, fmt.Sprintf("%s; metric %dm (%v); ScalingActive %v (%s)", hold, mv, err, active, why)
	})
	w.step("step 5f passed: the metric unavailable for %s (the HPA held 10 replicas, ScalingActive False: %q), back %s after the restart, ScalingActive again; then %s; no rescale",
		back.Sub(killed).Round(100*time.Millisecond), failed, back.Sub(restarted).Round(100*time.Millisecond), ms)
}
