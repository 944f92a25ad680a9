package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/integration/e2e/cluster"
	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/testsupport/harness"
)

// The shipped alerting rules (manifests/alerts) as the end-to-end test
// loads them: Prometheus Operator turns the PrometheusRule into a rule
// file in ConfigMap ruleFilesConfigMap and names it in rule_files; the test
// does the kubelet's and the config-reloader's part.
const (
	// ruleFilesDir is where a Prometheus pod mounts the operator's rule
	// file ConfigMaps; renderPrometheusConfig makes it rules/, relative
	// to the configuration file, which Prometheus resolves rule_files
	// against.
	ruleFilesDir       = "/etc/prometheus/rules/"
	ruleFilesConfigMap = "prometheus-" + promName + "-rulefiles-0"
	// The e2e's for durations and evaluation interval: the faults last
	// tens of seconds, the shipped for durations are minutes.
	alertsFor      = "10s"
	alertsInterval = "5s"
)

// alertGroups are the groups of manifests/alerts, by name.
var alertGroups = []string{"kong-metrics-sidecar", "kong-metrics-injector", "kong-metrics-sidecar-autoscaling"}

// relativeRuleFiles rewrites the operator's rule_files (under
// ruleFilesDir, the ConfigMaps' mount in the pod) into paths relative to
// the configuration file, where the test writes the ConfigMaps' files.
func relativeRuleFiles(cfg map[string]any) error {
	files, ok := cfg["rule_files"].([]any)
	if !ok {
		return nil
	}
	for i, f := range files {
		s, _ := f.(string)
		rel, ok := strings.CutPrefix(s, ruleFilesDir)
		if !ok {
			return fmt.Errorf("rule_files entry %v is not under %s", f, ruleFilesDir)
		}
		files[i] = "rules/" + rel
	}
	return nil
}

// TestRelativeRuleFiles checks the rewrite, and that it refuses a path the
// operator would not write.
func TestRelativeRuleFiles(t *testing.T) {
	cfg := map[string]any{"rule_files": []any{ruleFilesDir + ruleFilesConfigMap + "/*.yaml"}}
	if err := relativeRuleFiles(cfg); err != nil {
		t.Fatal(err)
	}
	if got, want := cfg["rule_files"].([]any)[0], "rules/"+ruleFilesConfigMap+"/*.yaml"; got != want {
		t.Errorf("rule_files %v, want %v", got, want)
	}
	if err := relativeRuleFiles(map[string]any{"rule_files": []any{"/elsewhere/*.yaml"}}); err == nil {
		t.Error("a rule file outside the operator's mount was rewritten")
	}
	if err := relativeRuleFiles(map[string]any{}); err != nil {
		t.Errorf("a configuration without rule_files: %v", err)
	}
}

// alertsKustomization is the e2e's kustomization of manifests/alerts: every
// group evaluated every alertsInterval and every alert's for set to
// alertsFor, by JSON patches at the indices the rule file has.
func alertsKustomization(dir string) (string, error) {
	data, err := os.ReadFile(filepath.Join(harness.RepoRoot(), "manifests", "alerts", "kong-metrics-sidecar.rules.yaml"))
	if err != nil {
		return "", err
	}
	var f struct {
		Groups []struct {
			Name  string
			Rules []struct{ Alert string }
		}
	}
	// Only the groups' and rules' order and the alerts' names matter here.
	if err := yaml.Unmarshal(data, &f); err != nil {
		return "", fmt.Errorf("manifests/alerts rule file: %w", err)
	}
	var ops []string
	for i, g := range f.Groups {
		ops = append(ops, fmt.Sprintf("- {op: add, path: /spec/groups/%d/interval, value: %s}", i, alertsInterval))
		for j, r := range g.Rules {
			if r.Alert != "" {
				ops = append(ops, fmt.Sprintf("- {op: replace, path: /spec/groups/%d/rules/%d/for, value: %s}", i, j, alertsFor))
			}
		}
	}
	alerts, err := filepath.Rel(dir, filepath.Join(harness.RepoRoot(), "manifests", "alerts"))
	if err != nil {
		return "", err
	}
	return `apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
- ` + alerts + `
patches:
- target: {kind: PrometheusRule, name: kong-metrics-sidecar}
  patch: |-
    ` + strings.Join(ops, "\n    ") + "\n", nil
}

// alerting follows the operator's rule file ConfigMap into every
// replica's rules/ directory and reloads the replica when it changes, as
// the kubelet's ConfigMap volume and the config-reloader do.
type alerting struct {
	c     *cluster.Cluster
	proms []*promReplica

	mu   sync.Mutex // Protects last and err.
	last string     // the ConfigMap's resourceVersion last written
	err  error
}

// startAlerts applies the shipped PrometheusRule (with the e2e's for
// durations), follows the operator's rule files into every replica until
// the test ends, and waits until each replica has loaded every group.
func startAlerts(ctx context.Context, t *testing.T, w *world, c *cluster.Cluster, ap *applier, proms []*promReplica, dir string) *alerting {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	k, err := alertsKustomization(dir)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := buildKustomization(dir, k)
	if err != nil {
		t.Fatal(err)
	}
	pr, err := find(objs, "PrometheusRule", "kong-metrics-sidecar")
	if err != nil {
		t.Fatal(err)
	}
	if err := ap.apply(ctx, pr); err != nil {
		t.Fatal(err)
	}
	applied := time.Now()
	a := &alerting{c: c, proms: proms}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			a.follow(rctx)
			select {
			case <-rctx.Done():
				return
			case <-time.After(time.Second):
			}
		}
	}()
	t.Cleanup(func() {
		stop()
		<-done
	})
	obs := w.waitFor(ctx, 90*time.Second, "every Prometheus loads the shipped alerting rules from the operator's rule files", func() (bool, string) {
		all := true
		var obs []string
		for i, r := range proms {
			groups, err := ruleGroupNames(ctx, r.URL)
			if err != nil {
				return false, err.Error()
			}
			for _, g := range alertGroups {
				all = all && slices.Contains(groups, g)
			}
			obs = append(obs, fmt.Sprintf("Prometheus %d groups %v", i, groups))
		}
		a.mu.Lock()
		if a.err != nil {
			obs = append(obs, "last error: "+a.err.Error())
		}
		a.mu.Unlock()
		return all, strings.Join(obs, "; ")
	})
	w.step("alerts: the shipped PrometheusRule (every for %s, evaluated every %s) applied; the operator's rule files loaded by every Prometheus %s after (%s)",
		alertsFor, alertsInterval, time.Since(applied).Round(100*time.Millisecond), obs)
	return a
}

// follow writes the rule file ConfigMap's files into every replica's
// rules/<ConfigMap>/ and reloads each, if the ConfigMap changed.
func (a *alerting) follow(ctx context.Context) {
	cm, err := a.c.Client.CoreV1().ConfigMaps(promNamespace).Get(ctx, ruleFilesConfigMap, metav1.GetOptions{})
	a.mu.Lock()
	defer a.mu.Unlock()
	if err != nil {
		if ctx.Err() == nil {
			a.err = err
		}
		return
	}
	if cm.ResourceVersion == a.last {
		return
	}
	for _, r := range a.proms {
		if err := writeRuleFiles(filepath.Join(filepath.Dir(r.pc.file), "rules", ruleFilesConfigMap), cm); err != nil {
			a.err = err
			return
		}
		if err := reloadPrometheus(ctx, r.URL); err != nil {
			a.err = err
			return
		}
	}
	a.last = cm.ResourceVersion
}

// writeRuleFiles makes dir hold exactly the ConfigMap's keys as files.
func writeRuleFiles(dir string, cm *corev1.ConfigMap) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	old, err := filepath.Glob(filepath.Join(dir, "*"))
	if err != nil {
		return err
	}
	for _, f := range old {
		if _, ok := cm.Data[filepath.Base(f)]; !ok {
			if err := os.Remove(f); err != nil {
				return err
			}
		}
	}
	for name, content := range cm.Data {
		tmp := filepath.Join(dir, "."+name+".tmp")
		if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
			return err
		}
		if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
			return err
		}
	}
	return nil
}

// ruleGroupNames lists the rule groups a Prometheus has loaded
// (GET /api/v1/rules).
func ruleGroupNames(ctx context.Context, promURL string) ([]string, error) {
	groups, err := ruleGroups(ctx, promURL)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, g := range groups {
		names = append(names, g.Name)
	}
	return names, nil
}

// promRuleGroup is a rule group as GET /api/v1/rules lists it, with each
// rule's health after its last evaluation.
type promRuleGroup struct {
	Name  string
	Rules []struct {
		Name      string
		Health    string
		LastError string
	}
}

func ruleGroups(ctx context.Context, promURL string) ([]promRuleGroup, error) {
	body, err := harness.Get(ctx, promURL+"/api/v1/rules")
	if err != nil {
		return nil, err
	}
	var resp struct {
		Data struct{ Groups []promRuleGroup }
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		return nil, fmt.Errorf("decoding /api/v1/rules: %w", err)
	}
	return resp.Data.Groups, nil
}

// unhealthyRules lists the shipped rules whose last evaluation was not
// "ok" in a Prometheus: a rule that fails to evaluate never fires, so a
// quiet Prometheus proves nothing about it.
func unhealthyRules(ctx context.Context, promURL string) ([]string, error) {
	groups, err := ruleGroups(ctx, promURL)
	if err != nil {
		return nil, err
	}
	var bad []string
	for _, g := range groups {
		if !slices.Contains(alertGroups, g.Name) {
			continue
		}
		for _, r := range g.Rules {
			if r.Health != "ok" {
				bad = append(bad, fmt.Sprintf("%s/%s: %s %s", g.Name, r.Name, r.Health, r.LastError))
			}
		}
	}
	return bad, nil
}

// activeAlerts returns the alerts a Prometheus has pending or firing
// (GET /api/v1/alerts), as "name{labels}=state", sorted, and by name the
// state of each.
func activeAlerts(ctx context.Context, promURL string) (map[string]string, []string, error) {
	body, err := harness.Get(ctx, promURL+"/api/v1/alerts")
	if err != nil {
		return nil, nil, err
	}
	var resp struct {
		Data struct {
			Alerts []struct {
				Labels map[string]string
				State  string
			}
		}
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		return nil, nil, fmt.Errorf("decoding /api/v1/alerts: %w", err)
	}
	byName := map[string]string{}
	var all []string
	for _, al := range resp.Data.Alerts {
		if al.State != "pending" && al.State != "firing" {
			continue
		}
		name := al.Labels["alertname"]
		if byName[name] != "firing" {
			byName[name] = al.State
		}
		var ls []string
		for k, v := range al.Labels {
			if k != "alertname" {
				ls = append(ls, k+"="+v)
			}
		}
		sort.Strings(ls)
		all = append(all, fmt.Sprintf("%s{%s}=%s", name, strings.Join(ls, ","), al.State))
	}
	sort.Strings(all)
	return byName, all, nil
}

// waitAlert waits until alert is pending or firing in every Prometheus
// and returns how long that took and what was active.
func waitAlert(ctx context.Context, w *world, proms []*promReplica, alert string, timeout time.Duration) string {
	w.t.Helper()
	start := time.Now()
	obs := w.waitFor(ctx, timeout, alert+" pending or firing in every Prometheus", func() (bool, string) {
		all := true
		var obs []string
		for i, r := range proms {
			byName, active, err := activeAlerts(ctx, r.URL)
			if err != nil {
				return false, err.Error()
			}
			all = all && byName[alert] != ""
			obs = append(obs, fmt.Sprintf("Prometheus %d: %v", i, active))
		}
		return all, strings.Join(obs, "; ")
	})
	return fmt.Sprintf("%s after %s (%s)", alert, time.Since(start).Round(100*time.Millisecond), obs)
}

// stepAlertsQuiet checks the healthy chain: for quiet, every shipped rule
// evaluates without an error and no alert is pending or firing in any
// Prometheus.
func stepAlertsQuiet(ctx context.Context, t *testing.T, w *world, proms []*promReplica, quiet time.Duration) {
	t.Helper()
	for end := time.Now().Add(quiet); ; time.Sleep(time.Second) {
		for i, r := range proms {
			_, active, err := activeAlerts(ctx, r.URL)
			if err != nil {
				t.Fatal(err)
			}
			if len(active) > 0 {
				t.Fatalf("on the healthy chain Prometheus %d has alerts pending or firing: %v", i, active)
			}
			bad, err := unhealthyRules(ctx, r.URL)
			if err != nil {
				t.Fatal(err)
			}
			if len(bad) > 0 {
				t.Fatalf("Prometheus %d: shipped rules that do not evaluate: %v", i, bad)
			}
		}
		if time.Now().After(end) {
			break
		}
	}
	w.step("alerts: on the healthy chain every shipped rule evaluated without an error and no alert was pending or firing in any Prometheus for %s", quiet)
}

// stepKongDownAlert stops Kong in one pod, leaving its sidecar running,
// until KongMetricsSidecarKongUnreachable is pending or firing in every
// Prometheus, then starts it again (counters from zero, as a container
// restart) and waits for the alert to end.
func stepKongDownAlert(ctx context.Context, t *testing.T, w *world, dp *dataPlanes, proms []*promReplica) {
	t.Helper()
	running := dp.running()
	k := running[len(running)-1]
	k.simulator().Stop(10 * time.Second)
	obs := waitAlert(ctx, w, proms, "KongMetricsSidecarKongUnreachable", 90*time.Second)
	if err := k.startSimulator(dp); err != nil {
		t.Fatalf("starting Kong in pod %s again: %v", k.name, err)
	}
	cleared := waitAlertGone(ctx, w, proms, "KongMetricsSidecarKongUnreachable", 90*time.Second)
	w.step("alerts: Kong stopped in pod %s, its sidecar running: %s; Kong started again, the alert gone %s", k.name, obs, cleared)
}

// waitAlertGone waits until alert is neither pending nor firing in any
// Prometheus and says how long that took.
func waitAlertGone(ctx context.Context, w *world, proms []*promReplica, alert string, timeout time.Duration) string {
	w.t.Helper()
	start := time.Now()
	w.waitFor(ctx, timeout, alert+" gone from every Prometheus", func() (bool, string) {
		gone := true
		var obs []string
		for i, r := range proms {
			byName, active, err := activeAlerts(ctx, r.URL)
			if err != nil {
				return false, err.Error()
			}
			gone = gone && byName[alert] == ""
			obs = append(obs, fmt.Sprintf("Prometheus %d: %v", i, active))
		}
		return gone, strings.Join(obs, "; ")
	})
	return "after " + time.Since(start).Round(100*time.Millisecond).String()
}

// stepExtensionBrokenAlert writes an invalid extension file into the
// sidecars' ConfigMap: each sidecar rejects it and keeps the last good one,
// and KongMetricsSidecarExtensionRejected goes pending or firing in every
// Prometheus. The good file restored, the alert ends.
func stepExtensionBrokenAlert(ctx context.Context, t *testing.T, w *world, c *cluster.Cluster, proms []*promReplica) {
	t.Helper()
	cms := c.Client.CoreV1().ConfigMaps("kong")
	cm, err := cms.Get(ctx, "kong-metrics-sidecar", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	good := cm.Data["config.yaml"]
	broken := strings.Replace(good, "latency: true", "latncy: true", 1)
	if broken == good {
		t.Fatalf("config.yaml has no latency: true to misspell:\n%s", good)
	}
	cm.Data["config.yaml"] = broken
	if cm, err = cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	obs := waitAlert(ctx, w, proms, "KongMetricsSidecarExtensionRejected", 120*time.Second)
	cm.Data["config.yaml"] = good
	if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	cleared := waitAlertGone(ctx, w, proms, "KongMetricsSidecarExtensionRejected", 120*time.Second)
	w.step("alerts: extension file broken (latency misspelt): %s; the good file restored, the alert gone %s", obs, cleared)
}

// stepSeriesLostAlert checks the chain alert after step 6: command's
// latency series are gone while Kong still has its series (the sidecars
// drop them as unselected), so KongMetricsSidecarLatencySeriesAbsent for
// kong/command goes pending or firing in every Prometheus.
func stepSeriesLostAlert(ctx context.Context, w *world, proms []*promReplica) {
	w.t.Helper()
	obs := waitAlert(ctx, w, proms, "KongMetricsSidecarLatencySeriesAbsent", 90*time.Second)
	if !strings.Contains(obs, "exported_namespace=kong,exported_service=command") {
		w.t.Fatalf("KongMetricsSidecarLatencySeriesAbsent is not about kong/command: %s", obs)
	}
	w.step("alerts: the command series lost: %s", obs)
}

// TestAlertsKustomization builds the e2e's kustomization of manifests/alerts
// and checks that it changed what it should: every group's interval and
// every alert's for, and nothing else of a rule.
func TestAlertsKustomization(t *testing.T) {
	dir := t.TempDir()
	k, err := alertsKustomization(dir)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := buildKustomization(dir, k)
	if err != nil {
		t.Fatal(err)
	}
	pr, err := find(objs, "PrometheusRule", "kong-metrics-sidecar")
	if err != nil {
		t.Fatal(err)
	}
	groups, _, err := unstructured.NestedSlice(pr.Object, "spec", "groups")
	if err != nil || len(groups) != len(alertGroups) {
		t.Fatalf("%d groups (%v), want %d", len(groups), err, len(alertGroups))
	}
	alerts := 0
	for _, g := range groups {
		g := g.(map[string]any)
		if g["interval"] != alertsInterval {
			t.Errorf("group %v: interval %v, want %s", g["name"], g["interval"], alertsInterval)
		}
		for _, r := range g["rules"].([]any) {
			r := r.(map[string]any)
			if r["alert"] == nil {
				if _, has := r["for"]; has {
					t.Errorf("recording rule %v got a for", r["record"])
				}
				continue
			}
			alerts++
			if r["for"] != alertsFor {
				t.Errorf("alert %v: for %v, want %s", r["alert"], r["for"], alertsFor)
			}
			if r["expr"] == "" || r["labels"] == nil || r["annotations"] == nil {
				t.Errorf("alert %v lost its expr, labels or annotations: %v", r["alert"], r)
			}
		}
	}
	if alerts == 0 {
		t.Fatal("no alerts in the PrometheusRule")
	}
}
