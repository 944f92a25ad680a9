package test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/testsupport/harness"
)

// The alerting rules: the plain rule file, its promtool unit tests, the
// runbooks their runbook_url annotations point into, and where on the
// repository's site those are.
var (
	alertsDir     = filepath.Join(manifestsDir, "alerts")
	ruleFile      = "kong-metrics-sidecar.rules.yaml"
	ruleTestFile  = "kong-metrics-sidecar.rules.test.yaml"
	runbooksFile  = filepath.Join(manifestsDir, "..", "docs", "runbooks.md")
	runbooksURL   = "https://github.com/kong-metrics-sidecar/kong-metrics-sidecar/blob/main/docs/runbooks.md"
	severities    = []string{"critical", "warning", "info"}
	chartYAMLFile = filepath.Join(manifestsDir, "..", "charts", "kong-metrics-sidecar", "Chart.yaml")
)

// promtool returns the promtool that scripts/build-test-bins.sh builds
// from integration/e2e/bins/prometheus ($E2E_PROMTOOL_BIN when make set it).
func promtool(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	bins, err := harness.ThirdPartyBinaries(ctx, "prometheus")
	if err != nil {
		t.Fatal(err)
	}
	return bins["E2E_PROMTOOL_BIN"]
}

// runPromtool runs promtool with args in dir and returns its output and
// whether it succeeded.
func runPromtool(t *testing.T, dir string, args ...string) (string, bool) {
	t.Helper()
	cmd := exec.Command(promtool(t), args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	var exited *exec.ExitError
	if err != nil && !errors.As(err, &exited) {
		t.Fatalf("promtool %s: %v", strings.Join(args, " "), err)
	}
	return string(out), err == nil
}

// TestAlertRules runs promtool check rules (syntax, PromQL, templates, and
// its lint) on the shipped rule file, and promtool test rules on its unit
// tests: every alert with series that fire it and series that must not.
func TestAlertRules(t *testing.T) {
	if out, ok := runPromtool(t, alertsDir, "check", "rules", "--lint=all", "--lint-fatal", ruleFile); !ok {
		t.Errorf("promtool check rules %s:\n%s", ruleFile, out)
	}
	out, ok := runPromtool(t, alertsDir, "test", "rules", ruleTestFile)
	if !ok {
		t.Errorf("promtool test rules %s:\n%s", ruleTestFile, out)
	}
	t.Logf("promtool test rules:\n%s", out)
}

// TestAlertRuleTestsFail shows that the unit tests can fail: each mutation
// of the rule file is one a careless edit could make, and promtool test
// rules must reject it.
func TestAlertRuleTestsFail(t *testing.T) {
	rules, err := os.ReadFile(filepath.Join(alertsDir, ruleFile))
	if err != nil {
		t.Fatal(err)
	}
	tests, err := os.ReadFile(filepath.Join(alertsDir, ruleTestFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []struct{ what, old, new string }{
		{"the chain alert without its traffic condition (a Kong with no traffic fires)",
			`(rate(kong_request_latency_ms_count{exported_namespace!="", exported_service!=""}[5m])) > 0`,
			`(rate(kong_request_latency_ms_count{exported_namespace!="", exported_service!=""}[5m])) >= 0`},
		{"the chain alert's traffic over every family at once (rate drops the name: same labels collide)",
			`sum by (exported_namespace, exported_service) (rate(kong_request_latency_ms_count{exported_namespace!="", exported_service!=""}[5m])) > 0`,
			`sum by (exported_namespace, exported_service) (rate({__name__=~"kong_request_latency_ms_count|kong_kong_latency_ms_count", exported_namespace!="", exported_service!=""}[5m])) > 0`},
		{"the chain alert without the Kong-activity condition on lost series", "multi_backend\"}) > 0)\n      )\n    for: 10m", "multi_backend\"}) >= 0)\n      )\n    for: 10m"},
		{"the target-down job matching any job ending in the name", `up{job=~"(.+/)?kong-metrics-sidecar"}`, `up{job=~".*kong-metrics-sidecar"}`},
		{"the extension-rejected alert firing on a sidecar with none too", `
      unless ignoring (sha256)
      kong_metrics_sidecar_config_info{sha256=""} == 1`, ""},
		{"the unresolved alert on the gauge alone", `
      or
      (
        sum without (reason) (kong_metrics_sidecar_series_dropped{reason="unresolved"}) > 0
        unless
        kong_metrics_sidecar_unresolved_kong_services
      )`, ""},
		{"the unresolved alert on dropped series where the gauge says none", `
        unless
        kong_metrics_sidecar_unresolved_kong_services`, ""},
		{"the certificate warning at 30 days", `< 7 * 86400`, `< 30 * 86400`},
		{"a for duration changed", "for: 5m\n    labels:\n      severity: warning\n    annotations:\n      summary: A kong-metrics-sidecar cannot", "for: 3m\n    labels:\n      severity: warning\n    annotations:\n      summary: A kong-metrics-sidecar cannot"},
	} {
		t.Run(m.what, func(t *testing.T) {
			t.Parallel() // each runs its own promtool
			if !bytes.Contains(rules, []byte(m.old)) {
				t.Fatalf("the rule file no longer contains %q", m.old)
			}
			dir := t.TempDir()
			mutated := bytes.Replace(rules, []byte(m.old), []byte(m.new), 1)
			if err := os.WriteFile(filepath.Join(dir, ruleFile), mutated, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, ruleTestFile), tests, 0o644); err != nil {
				t.Fatal(err)
			}
			if out, ok := runPromtool(t, dir, "test", "rules", ruleTestFile); ok {
				t.Errorf("promtool test rules passed on the mutated rules:\n%s", out)
			}
		})
	}
}

// ruleGroups reads a plain rule file strictly into the operator's types.
func ruleGroups(t *testing.T, path string) []monitoringv1.RuleGroup {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []monitoringv1.RuleGroup `json:"groups"`
	}
	if err := decodeStrict(data, &f); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return f.Groups
}

// TestPrometheusRule checks manifests/alerts: one PrometheusRule, selected
// by kube-prometheus-stack's default ruleSelector (release: prometheus),
// whose groups are the plain rule file's exactly.
func TestPrometheusRule(t *testing.T) {
	pr := find[monitoringv1.PrometheusRule](t, render(t, "alerts"), "kong-metrics-sidecar")
	if pr.Labels["release"] != "prometheus" {
		t.Errorf("PrometheusRule labels %v, want release: prometheus (kube-prometheus-stack's ruleSelector)", pr.Labels)
	}
	want := ruleGroups(t, filepath.Join(alertsDir, ruleFile))
	if !reflect.DeepEqual(pr.Spec.Groups, want) {
		got, _ := json.MarshalIndent(pr.Spec.Groups, "", "  ")
		w, _ := json.MarshalIndent(want, "", "  ")
		t.Errorf("the PrometheusRule's groups differ from %s:\n--- PrometheusRule\n%s\n--- %s\n%s", ruleFile, got, ruleFile, w)
	}
}

// runbookAnchors are GitHub's anchors of the level-2 headings of
// docs/runbooks.md.
func runbookAnchors(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile(runbooksFile)
	if err != nil {
		t.Fatal(err)
	}
	var anchors []string
	drop := regexp.MustCompile(`[^a-z0-9 _-]`)
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if h, ok := strings.CutPrefix(sc.Text(), "## "); ok {
			anchors = append(anchors, strings.ReplaceAll(drop.ReplaceAllString(strings.ToLower(h), ""), " ", "-"))
		}
	}
	return anchors
}

// TestAlertAnnotations checks what a person paged needs on every alert: a
// severity as kube-prometheus's mixins use them, a summary, a description,
// and a runbook_url at the alert's own section of docs/runbooks.md on the
// repository's site (the chart's home). Every alert has a section.
func TestAlertAnnotations(t *testing.T) {
	chart, err := os.ReadFile(chartYAMLFile)
	if err != nil {
		t.Fatal(err)
	}
	home := regexp.MustCompile(`(?m)^home: (\S+)$`).FindSubmatch(chart)
	if home == nil || string(home[1])+"/blob/main/docs/runbooks.md" != runbooksURL {
		t.Fatalf("the chart's home %q is not the repository the runbooks are at (%s)", home, runbooksURL)
	}
	anchors := runbookAnchors(t)
	alerts := 0
	for _, g := range ruleGroups(t, filepath.Join(alertsDir, ruleFile)) {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			alerts++
			if !slices.Contains(severities, r.Labels["severity"]) {
				t.Errorf("%s: severity %q, want one of %v", r.Alert, r.Labels["severity"], severities)
			}
			for _, a := range []string{"summary", "description"} {
				if r.Annotations[a] == "" {
					t.Errorf("%s: no %s", r.Alert, a)
				}
			}
			anchor := strings.ToLower(r.Alert)
			if got, want := r.Annotations["runbook_url"], runbooksURL+"#"+anchor; got != want {
				t.Errorf("%s: runbook_url %q, want %q", r.Alert, got, want)
			}
			if !slices.Contains(anchors, anchor) {
				t.Errorf("%s: docs/runbooks.md has no section ## %s", r.Alert, r.Alert)
			}
		}
	}
	if alerts == 0 {
		t.Fatalf("no alert in %s", ruleFile)
	}
}
