//go:build e2escale

package e2e_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/md5"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/integration/e2e/adapter"
	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/integration/e2e/cluster"
	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/testsupport/harness"
)

func gunzip(gz []byte) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		return nil, fmt.Errorf("decompressing %s: %w", promConfigKey, err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		return nil, fmt.Errorf("decompressing %s: %w", promConfigKey, err)
	}
	return raw, nil
}

// shardConfig is the operator's configuration as the config-reloader of
// pod, in shard shard, renders it ($(POD_NAME) and $(SHARD) expanded),
// with the sharding relabelings' modulus set to shards (the operator's
// value, or 1 for the reference, which keeps every target), then given to
// renderPrometheusConfig for the kubeconfig_file of its discovery.
func shardConfig(raw []byte, pod string, shard, shards int, kubeconfig string) ([]byte, error) {
	s := strings.ReplaceAll(string(raw), "$(POD_NAME)", pod)
	s = strings.ReplaceAll(s, "$(SHARD)", strconv.Itoa(shard))
	var cfg map[string]any
	if err := yaml.Unmarshal([]byte(s), &cfg); err != nil {
		return nil, fmt.Errorf("decoding the operator's configuration: %w", err)
	}
	n := 0
	scs, _ := cfg["scrape_configs"].([]any)
	for _, sc := range scs {
		m, _ := sc.(map[string]any)
		rcs, _ := m["relabel_configs"].([]any)
		for _, rc := range rcs {
			r, _ := rc.(map[string]any)
			if r["action"] == "hashmod" && r["target_label"] == "__tmp_hash" {
				r["modulus"] = shards
				n++
			}
		}
	}
	if n == 0 {
		return nil, fmt.Errorf("the operator's configuration has no hashmod relabeling on __tmp_hash")
	}
	out, err := yaml.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("encoding the configuration: %w", err)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	if _, err := zw.Write(out); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	rendered, _, err := renderPrometheusConfig(gz.Bytes(), kubeconfig, pod)
	return rendered, err
}

// target is an active target's health and address (__address__, which
// the operator's sharding hashes).
type target struct{ health, addr string }

// shardTargets maps the pods of a Prometheus's active targets in the
// sidecar's job to their health and address.
func shardTargets(ctx context.Context, promURL string) (map[string]target, error) {
	body, err := harness.Get(ctx, promURL+"/api/v1/targets?state=active")
	if err != nil {
		return nil, err
	}
	var resp struct {
		Data struct {
			ActiveTargets []struct {
				Labels           map[string]string `json:"labels"`
				DiscoveredLabels map[string]string `json:"discoveredLabels"`
				ScrapePool       string            `json:"scrapePool"`
				Health           string            `json:"health"`
			} `json:"activeTargets"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		return nil, fmt.Errorf("decoding /api/v1/targets: %w", err)
	}
	out := map[string]target{}
	for _, at := range resp.Data.ActiveTargets {
		if at.ScrapePool != sidecarJob {
			continue
		}
		if _, dup := out[at.Labels["pod"]]; dup {
			return nil, fmt.Errorf("pod %s is two active targets of %s", at.Labels["pod"], sidecarJob)
		}
		out[at.Labels["pod"]] = target{at.Health, at.DiscoveredLabels["__address__"]}
	}
	return out, nil
}

// assertSharding waits for every Prometheus to scrape its targets and
// checks that the replicas of a shard scrape the same pods, that the
// shards split the fleet with no pod in both, that each has about half
// (5 to 15 of 20: hashmod on 20 addresses splits them as their MD5s fall,
// and each pod must be in the shard its address hashes to), and that the
// reference scrapes them all.
func assertSharding(ctx context.Context, t *testing.T, w *world, mon *monitoring, fleet []*scalePod) {
	t.Helper()
	all := map[string]bool{}
	for _, kp := range fleet {
		all[kp.name] = true
	}
	var summary string
	w.waitFor(ctx, 120*time.Second, "every shard's replicas scrape the same half of the pods, all up", func() (bool, string) {
		perShard := map[int]map[string]target{}
		var counts []string
		for _, pi := range mon.instances {
			ts, err := shardTargets(ctx, pi.prom.URL)
			if err != nil {
				return false, err.Error()
			}
			for pod, tg := range ts {
				if tg.health != "up" {
					return false, fmt.Sprintf("%s: target %s is %s", pi.pod, pod, tg.health)
				}
				if want := hashmod(tg.addr, scaleShards); want != pi.shard {
					t.Fatalf("%s (shard %d) scrapes %s at %s, which hashmod puts in shard %d", pi.pod, pi.shard, pod, tg.addr, want)
				}
			}
			counts = append(counts, fmt.Sprintf("%s: %d", pi.pod, len(ts)))
			if prev, ok := perShard[pi.shard]; ok && !sameKeys(prev, ts) {
				return false, fmt.Sprintf("replicas of shard %d disagree: %d and %d targets", pi.shard, len(prev), len(ts))
			}
			perShard[pi.shard] = ts
		}
		seen := map[string]int{}
		for shard, ts := range perShard {
			for pod := range ts {
				if other, dup := seen[pod]; dup {
					t.Fatalf("pod %s is scraped by shard %d and shard %d", pod, other, shard)
				}
				seen[pod] = shard
			}
		}
		ref, err := shardTargets(ctx, mon.reference.URL)
		if err != nil {
			return false, err.Error()
		}
		summary = strings.Join(counts, ", ")
		obs := fmt.Sprintf("%s; %d pods across shards, reference %d", summary, len(seen), len(ref))
		if len(seen) != len(all) || len(ref) != len(all) {
			return false, obs
		}
		for pod := range seen {
			if !all[pod] {
				t.Fatalf("shards scrape %s, which is not a Kong pod of the fleet", pod)
			}
		}
		// hashmod splits the test's 20 pod addresses 15/5: about half is
		// a fifth to four fifths, not a quarter to three quarters, which
		// that split sits on the edge of.
		for shard, ts := range perShard {
			if len(ts) < len(all)/5 || len(ts) > len(all)*4/5 {
				t.Fatalf("shard %d scrapes %d of %d pods, not about half", shard, len(ts), len(all))
			}
		}
		return true, obs
	})
	w.step("sharding passed: %s; every pod scraped by exactly one shard, by both its replicas", summary)
}

// hashmod is Prometheus's relabel action hashmod on one value: the last
// 8 bytes of its MD5, big-endian, modulo the modulus.
func hashmod(v string, modulus int) int {
	h := md5.Sum([]byte(v))
	return int(binary.BigEndian.Uint64(h[8:]) % uint64(modulus))
}

func sameKeys(a, b map[string]target) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if _, ok := b[k]; !ok {
			return false
		}
	}
	return true
}

// instantQuery evaluates expr at ts and returns its one value; found is
// false for an empty result. extra is added to the query string (Thanos's
// dedup=false).
func instantQuery(ctx context.Context, base, expr string, ts time.Time, extra string) (v float64, found bool, err error) {
	u := base + "/api/v1/query?query=" + url.QueryEscape(expr) + "&time=" + strconv.FormatFloat(float64(ts.UnixMilli())/1000, 'f', 3, 64) + extra
	body, err := harness.Get(ctx, u)
	if err != nil {
		return 0, false, err
	}
	var resp struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		return 0, false, fmt.Errorf("decoding the result of %q: %w", expr, err)
	}
	if resp.Status != "success" {
		return 0, false, fmt.Errorf("query %q: %s", expr, resp.Error)
	}
	switch len(resp.Data.Result) {
	case 0:
		return 0, false, nil
	case 1:
	default:
		return 0, false, fmt.Errorf("query %q: %d series, want one", expr, len(resp.Data.Result))
	}
	s, _ := resp.Data.Result[0].Value[1].(string)
	v, err = strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, false, fmt.Errorf("query %q: value %v: %w", expr, resp.Data.Result[0].Value[1], err)
	}
	return v, true, nil
}

// ruleQuery is the shipped rule's metricsQuery for Service kong/command,
// as prometheus-adapter sends it.
func ruleQuery(t *testing.T) string {
	t.Helper()
	cfg, err := adapter.ParseConfig(shippedAdapterConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	q := strings.ReplaceAll(cfg.Rules[0].MetricsQuery, "<<.LabelMatchers>>", commandMatchers)
	if q == cfg.Rules[0].MetricsQuery {
		t.Fatalf("the rule's metricsQuery has no <<.LabelMatchers>>: %s", q)
	}
	return q
}

func within(a, b, frac float64) bool {
	return math.Abs(a-b) <= frac*math.Abs(b)
}

// compareOnce evaluates q at the same instant through Thanos Query and on
// the reference.
func compareOnce(ctx context.Context, mon *monitoring, q string) (thanos, ref float64, err error) {
	at := time.Now().Add(-5 * time.Second)
	thanos, ok, err := instantQuery(ctx, mon.query.URL, q, at, "")
	if err != nil || !ok {
		return 0, 0, fmt.Errorf("through Thanos: found %v, %w", ok, err)
	}
	ref, ok, err = instantQuery(ctx, mon.reference.URL, q, at, "")
	if err != nil || !ok {
		return 0, 0, fmt.Errorf("on the reference: found %v, %w", ok, err)
	}
	return thanos, ref, nil
}

// assertSameAnswer checks that the rule's query through Thanos (shards,
// replicas deduplicated) gives what it gives on the one Prometheus that
// scrapes every pod, within 5%, ten times 3s apart; and that
// deduplication is what makes the series count equal (twice as many
// without it).
func assertSameAnswer(ctx context.Context, t *testing.T, w *world, mon *monitoring) {
	t.Helper()
	q := ruleQuery(t)
	// Until every Prometheus has a whole rate window (60s) and two more
	// scrapes, they hold different stretches of it, and their answers differ
	// by the traffic of those stretches, not by how the series are spread.
	if d := time.Until(mon.started.Add(90 * time.Second)); d > 0 {
		time.Sleep(d)
	}
	w.waitFor(ctx, 90*time.Second, "the rule's query through Thanos within 5% of the reference", func() (bool, string) {
		th, ref, err := compareOnce(ctx, mon, q)
		if err != nil {
			return false, err.Error()
		}
		return within(th, ref, 0.05), fmt.Sprintf("Thanos %.2f, reference %.2f", th, ref)
	})
	var worst float64
	for range 10 {
		th, ref, err := compareOnce(ctx, mon, q)
		if err != nil {
			t.Fatal(err)
		}
		d := math.Abs(th-ref) / ref
		worst = math.Max(worst, d)
		if d > 0.05 {
			t.Fatalf("the rule's query: Thanos %.3f, reference %.3f: %.1f%% apart", th, ref, 100*d)
		}
		time.Sleep(3 * time.Second)
	}
	// A count at one instant: a failed scrape in any of the five
	// Prometheus (stale markers for the target's series) changes it there,
	// so the counts are read again until they agree.
	count := `count(kong_upstream_latency_ms_count{` + commandMatchers + `})`
	var dedup, raw float64
	w.waitFor(ctx, 30*time.Second, fmt.Sprintf("command's latency count series: Thanos deduplicated = reference (at least %d), %d× it with dedup=false", scaleKongPods, scaleReplicas), func() (bool, string) {
		at := time.Now().Add(-5 * time.Second)
		var ref float64
		var err1, err2, err3 error
		dedup, _, err1 = instantQuery(ctx, mon.query.URL, count, at, "")
		raw, _, err2 = instantQuery(ctx, mon.query.URL, count, at, "&dedup=false")
		ref, _, err3 = instantQuery(ctx, mon.reference.URL, count, at, "")
		if err1 != nil || err2 != nil || err3 != nil {
			return false, fmt.Sprintf("counting series: %v %v %v", err1, err2, err3)
		}
		return dedup == ref && raw == float64(scaleReplicas)*ref && ref >= scaleKongPods,
			fmt.Sprintf("Thanos %v deduplicated, %v with dedup=false, reference %v", dedup, raw, ref)
	})
	w.step("same answer passed: the rule's query through Thanos and on the single Prometheus agree within %.2f%% (10 checks); %v series deduplicated = reference, %v without dedup", 100*worst, dedup, raw)
}

// procStat is a process's CPU time (user+system, in clock ticks) and RSS
// (bytes), from /proc.
func procStat(pid int) (ticks int64, rss int64, err error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// Fields after the parenthesised command: state is field 3; utime and
	// stime are fields 14 and 15.
	rest := string(stat[bytes.LastIndexByte(stat, ')')+2:])
	f := strings.Fields(rest)
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("/proc/%d/stat: utime and stime: %w", pid, errors.Join(err1, err2))
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0, 0, fmt.Errorf("/proc/%d/status VmRSS %q: %w", pid, v, err)
			}
			rss = kb * 1024
		}
	}
	return ut + st, rss, nil
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's times: 100 on
// every Linux architecture Go runs on.
const clockTicks = 100

// sampleLines counts the samples of an exposition page (lines not
// comments), and those of families with the prefix.
func sampleLines(page []byte, prefix string) (all, prefixed int) {
	sc := bufio.NewScanner(bytes.NewReader(page))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		all++
		if strings.HasPrefix(l, prefix) {
			prefixed++
		}
	}
	return all, prefixed
}

// metricSum sums a metric's samples on an exposition page.
func metricSum(page []byte, name string) float64 {
	var sum float64
	sc := bufio.NewScanner(bytes.NewReader(page))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if l != name && !strings.HasPrefix(l, name+" ") && !strings.HasPrefix(l, name+"{") {
			continue
		}
		f := strings.Fields(l)
		if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
			sum += v
		}
	}
	return sum
}

// measureScale prints the figures docs/performance.md quotes: series per
// pod on Kong's page and the sidecar's, the sidecars' CPU and RSS from
// /proc over a window, each Prometheus's ingestion rate over the same
// window, and the rule's query latency through Thanos and on the
// reference.
func measureScale(ctx context.Context, t *testing.T, w *world, mon *monitoring, fleet []*scalePod) {
	t.Helper()
	var kongAll, sideAll, sideKong int
	for _, kp := range fleet {
		page, err := harness.Get(ctx, kp.statusURL+"/metrics")
		if err != nil {
			t.Fatal(err)
		}
		a, _ := sampleLines(page, "kong_")
		kongAll += a
		page, err = harness.Get(ctx, kp.sidecarURL+"/metrics")
		if err != nil {
			t.Fatal(err)
		}
		a, k := sampleLines(page, "kong_")
		sideAll += a
		sideKong += k
	}
	n := float64(len(fleet))
	w.step("figures: series per Kong pod: Kong's page %.0f, the sidecar's page %.0f (%.0f kong_ series)", float64(kongAll)/n, float64(sideAll)/n, float64(sideKong)/n)

	type snap struct {
		ticks, rss int64
	}
	read := func() ([]snap, []float64, error) {
		var ss []snap
		for _, kp := range fleet {
			ticks, rss, err := procStat(kp.sidecar.Pid())
			if err != nil {
				return nil, nil, err
			}
			ss = append(ss, snap{ticks, rss})
		}
		var ing []float64
		for _, p := range append(promList(mon), mon.reference) {
			page, err := harness.Get(ctx, p.URL+"/metrics")
			if err != nil {
				return nil, nil, err
			}
			ing = append(ing, metricSum(page, "prometheus_tsdb_head_samples_appended_total"))
		}
		return ss, ing, nil
	}
	s0, i0, err := read()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	time.Sleep(60 * time.Second)
	s1, i1, err := read()
	if err != nil {
		t.Fatal(err)
	}
	dt := time.Since(start).Seconds()
	var cpus, rsss []float64
	for i := range s0 {
		cpus = append(cpus, float64(s1[i].ticks-s0[i].ticks)/clockTicks/dt)
		rsss = append(rsss, float64(s1[i].rss)/(1<<20))
	}
	sort.Float64s(cpus)
	sort.Float64s(rsss)
	w.step("figures: sidecar CPU per pod over %.0fs: median %.2f%%, max %.2f%% of a core; RSS median %.1f MiB, max %.1f MiB",
		dt, 100*cpus[len(cpus)/2], 100*cpus[len(cpus)-1], rsss[len(rsss)/2], rsss[len(rsss)-1])
	var ing []string
	for i, p := range append(mon.instances, nil) {
		name := "reference"
		if p != nil {
			name = p.pod
		}
		ing = append(ing, fmt.Sprintf("%s %.1f/s", name, (i1[i]-i0[i])/dt))
	}
	w.step("figures: samples appended per second (prometheus_tsdb_head_samples_appended_total): %s", strings.Join(ing, ", "))

	q := ruleQuery(t)
	lat := func(base string) (median, p90 time.Duration) {
		var ds []time.Duration
		for range 30 {
			s := time.Now()
			if _, _, err := instantQuery(ctx, base, q, time.Now(), ""); err != nil {
				t.Fatal(err)
			}
			ds = append(ds, time.Since(s))
		}
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		return ds[len(ds)/2], ds[len(ds)*9/10]
	}
	tm, tp := lat(mon.query.URL)
	rm, rp := lat(mon.reference.URL)
	w.step("figures: the rule's query (30 runs): through Thanos median %s p90 %s; single Prometheus median %s p90 %s; ratio %.1f×",
		tm.Round(100*time.Microsecond), tp.Round(100*time.Microsecond), rm.Round(100*time.Microsecond), rp.Round(100*time.Microsecond), float64(tm)/float64(rm))
}

func promList(mon *monitoring) []*harness.Prometheus {
	var ps []*harness.Prometheus
	for _, pi := range mon.instances {
		ps = append(ps, pi.prom)
	}
	return ps
}

// scaleTo waits for the HPA to scale command to want, its last
// SuccessfulRescale "New size: want; reason: ..." with reason in it.
func scaleTo(ctx context.Context, t *testing.T, w *world, c *cluster.Cluster, want int32, reason string, timeout time.Duration) string {
	t.Helper()
	return w.waitFor(ctx, timeout, fmt.Sprintf("command scaled to %d with a SuccessfulRescale %q", want, reason), func() (bool, string) {
		spec, ready, err := replicas(ctx, c)
		if err != nil {
			return false, err.Error()
		}
		events, err := hpaEvents(ctx, c)
		if err != nil {
			return false, err.Error()
		}
		rs, err := rescales(events)
		if err != nil {
			return false, err.Error()
		}
		last, done := "none", false
		if len(rs) > 0 {
			l := rs[len(rs)-1]
			last, done = l.String(), l.size == int(want) && strings.Contains(l.reason, reason)
		}
		return spec == want && ready == want && done,
			fmt.Sprintf("replicas %d (ready %d); %d rescale events, the last %s", spec, ready, len(rs), last)
	})
}

// stepShardOutage stops both replicas of shard 1, so that half the pods'
// series are in no running Prometheus, for 45s. Thanos Query, with the
// sidecars as strict endpoints and partial responses off, must fail the
// rule's query rather than answer from shard 0's pods alone; through the
// adapter the metric is then unavailable, or, if served, within 5% of the
// reference's value (never wrong), and the HPA holds command where it is.
// Then the shard comes back on its data and the answer is right again.
func stepShardOutage(ctx context.Context, t *testing.T, w *world, c *cluster.Cluster, mon *monitoring) {
	t.Helper()
	q := ruleQuery(t)
	before, _, err := replicas(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	// What shard 0 alone would answer (its pods only, on the reference),
	// against the answer from every pod: what a partial response would
	// have served.
	var pods []string
	for _, pi := range mon.instances {
		if pi.shard == 0 {
			ts, err := shardTargets(ctx, pi.prom.URL)
			if err != nil {
				t.Fatal(err)
			}
			for pod := range ts {
				pods = append(pods, pod)
			}
			break
		}
	}
	sort.Strings(pods)
	partialQ := strings.ReplaceAll(q, commandMatchers+"}", commandMatchers+`,pod=~"`+strings.Join(pods, "|")+`"}`)
	whole, ok1, err1 := instantQuery(ctx, mon.reference.URL, q, time.Now(), "")
	partial, ok2, err2 := instantQuery(ctx, mon.reference.URL, partialQ, time.Now(), "")
	if !ok1 || !ok2 || err1 != nil || err2 != nil {
		t.Fatalf("the reference's whole and shard-0 answers: %v %v %v %v", ok1, ok2, err1, err2)
	}
	w.step("outage: before it, every pod gives %.2f ms, shard 0's %d pods alone %.2f ms (%.1f%% off): what a partial response would serve", whole, len(pods), partial, 100*math.Abs(partial-whole)/whole)
	var down []*promInstance
	for _, pi := range mon.instances {
		if pi.shard == 1 {
			pi.prom.Stop(10 * time.Second)
			down = append(down, pi)
		}
	}
	stopped := time.Now()
	var thanosFailed, unavailable, served int
	var firstErr string
	for time.Since(stopped) < 45*time.Second {
		if _, _, err := instantQuery(ctx, mon.query.URL, q, time.Now(), ""); err != nil {
			thanosFailed++
			if e := err.Error(); firstErr == "" {
				// The URL is long; the reason is at the end.
				firstErr = e[max(0, len(e)-200):]
			}
		}
		list, code, err := customMetric(ctx, c)
		switch {
		case err != nil:
			unavailable++
		case len(list.Items) != 1:
			t.Fatalf("during the outage the metric had %d items", len(list.Items))
		default:
			served++
			ref, ok, err := instantQuery(ctx, mon.reference.URL, q, time.Now(), "")
			if err != nil || !ok {
				t.Fatalf("the reference during the outage: %v %v", ok, err)
			}
			got := float64(list.Items[0].Value.MilliValue()) / 1000
			if !within(got, ref, 0.05) {
				t.Fatalf("during the outage the adapter served %.2f, the reference says %.2f (HTTP %d): a wrong value", got, ref, code)
			}
		}
		spec, _, err := replicas(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		if spec != before {
			t.Fatalf("during the outage the HPA moved command from %d to %d replicas", before, spec)
		}
		time.Sleep(2 * time.Second)
	}
	if thanosFailed == 0 {
		t.Fatal("with both replicas of shard 1 stopped, Thanos Query still answered the rule's query: partial data passed for the whole")
	}
	w.step("outage: shard 1 (both replicas) stopped 45s: Thanos Query refused the rule's query %d times (%s); the custom metric was unavailable %d times, served %d times (each within 5%% of the reference); command stayed at %d",
		thanosFailed, firstErr, unavailable, served, before)
	for _, pi := range down {
		pi.start(t, w)
	}
	restarted := time.Now()
	w.waitFor(ctx, 120*time.Second, "after shard 1's return, the rule's query through Thanos within 5% of the reference", func() (bool, string) {
		th, ref, err := compareOnce(ctx, mon, q)
		if err != nil {
			return false, err.Error()
		}
		return within(th, ref, 0.05), fmt.Sprintf("Thanos %.2f, reference %.2f", th, ref)
	})
	w.step("outage passed: shard 1 back on its data; Thanos agrees with the reference again %s after the restart", time.Since(restarted).Round(time.Second))
}
