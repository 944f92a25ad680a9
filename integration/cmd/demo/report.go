package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
)

// The tutorial's HorizontalPodAutoscaler (manifests/examples/hpa.yaml):
// the Object metric's Value target and the replica bounds. A test keeps
// them equal to the manifest.
const (
	hpaTarget      = 40.0 // ms, kong_upstream_latency_ms_60s_average
	hpaMinReplicas = 1
	hpaMaxReplicas = 10
	// hpaTolerance is the HPA controller's default: no rescale while the
	// ratio of metric to target is within 10% of 1.
	hpaTolerance = 0.1
	// averageMetric is the metric prometheus-adapter's rule serves.
	averageMetric = "kong_upstream_latency_ms_60s_average"
)

// pages are what the report is made from, read once the traffic had
// stopped, so that Kong's counters no longer moved between the two reads.
type pages struct {
	kong    []byte // Kong's page as the sidecar read it (/metrics/kong)
	sidecar []byte // the sidecar's /metrics
}

// dropReasons are the values of kong_metrics_sidecar_series_dropped's
// reason label, in the order the report lists them, with what each means.
var dropReasons = []struct{ reason, meaning string }{
	{"family", "a family no flag of the extension keeps (Kong's memory, nginx, node info, ...)"},
	{"unselected", "a flag's family no document enables for the Service (here statusCode, bandwidth, upstreamHealth)"},
	{"unresolved", "a Kong service name that resolves to no Kubernetes Service"},
	{"malformed", "a line that is not valid text format"},
	{"multi_backend", "a Kong service standing for several Services"},
}

// writeReport prints Kong's latency series beside the sidecar's, what the
// sidecar kept and dropped by reason, and the value prometheus-adapter's
// rule would serve for Service kong/command against the HPA's target.
func writeReport(w io.Writer, p pages) error {
	kong := seriesLines(p.kong)
	side := seriesLines(p.sidecar)

	fmt.Fprintln(w, "1. Kong's series and the sidecar's, one pair at a time")
	var sum, count float64
	pairs := 0
	for _, name := range []string{"kong_upstream_latency_ms_sum", "kong_upstream_latency_ms_count"} {
		for _, k := range kong {
			if k.name != name || k.labels["service"] != "kong.command.80" {
				continue
			}
			s, ok := findEnriched(side, k)
			if !ok {
				return fmt.Errorf("the sidecar has no series for Kong's %s", k.line)
			}
			fmt.Fprintf(w, "   Kong:    %s\n   sidecar: %s\n", k.line, s.line)
			if name == "kong_upstream_latency_ms_sum" {
				sum += s.value
			} else {
				count += s.value
			}
			pairs++
		}
	}
	if pairs == 0 {
		return fmt.Errorf("no kong_upstream_latency_ms series for kong.command.80 on Kong's page:\n%s", p.kong)
	}
	fmt.Fprintln(w, "   Kong's label service is now kong_service; added: kubernetes_namespace, kubernetes_name,")
	fmt.Fprintln(w, "   kubernetes_kind, exported_namespace, exported_service. The value is Kong's, byte for byte.")

	fmt.Fprintf(w, "\n2. What the sidecar kept of Kong's %d series, and what it dropped\n", len(kong))
	own := map[string]float64{}
	for _, s := range side {
		switch s.name {
		case "kong_metrics_sidecar_series_kept":
			own["kept"] = s.value
		case "kong_metrics_sidecar_series_dropped":
			own[s.labels["reason"]] = s.value
		}
	}
	fmt.Fprintf(w, "   %-22s %5.0f  the families the extension enables (latency) for Service kong/command\n", "kept", own["kept"])
	for _, d := range dropReasons {
		fmt.Fprintf(w, "   %-22s %5.0f  %s\n", "dropped "+d.reason, own[d.reason], d.meaning)
	}

	fmt.Fprintf(w, "\n3. What the HorizontalPodAutoscaler would read\n")
	fmt.Fprintf(w, "   prometheus-adapter's rule serves %s for Service kong/command as\n", averageMetric)
	fmt.Fprintln(w, "   rate(kong_upstream_latency_ms_sum[60s:10s]) / rate(kong_upstream_latency_ms_count[60s:10s]);")
	fmt.Fprintln(w, "   the demo's traffic fits in one 60 s window, so that is the sidecar's sum / count:")
	if count == 0 {
		fmt.Fprintf(w, "   %s = %s / %s: no requests, NaN, which the HPA cannot compute a scale from\n", averageMetric, num(sum), num(count))
		return nil
	}
	avg := sum / count
	fmt.Fprintf(w, "   %s = %s / %s = %.1f ms\n", averageMetric, num(sum), num(count), avg)
	fmt.Fprintf(w, "   %s\n", hpaDecision(avg, hpaMinReplicas))
	return nil
}

// hpaDecision says what the HPA controller would do at its next sync, at
// replicas replicas, for an Object metric with a Value target:
// ceil(replicas × metric / target), within the tolerance and the bounds.
func hpaDecision(metric float64, replicas int) string {
	ratio := metric / hpaTarget
	head := fmt.Sprintf("against the HPA's target of %g ms: ratio %.2f,", hpaTarget, ratio)
	if math.Abs(ratio-1) <= hpaTolerance {
		return fmt.Sprintf("%s within the HPA's %g%% tolerance:\n   it keeps Deployment command at %d replica(s)", head, hpaTolerance*100, replicas)
	}
	want := int(math.Ceil(float64(replicas) * ratio))
	want = min(max(want, hpaMinReplicas), hpaMaxReplicas)
	switch {
	case want > replicas:
		return fmt.Sprintf("%s above it:\n   the HPA scales Deployment command from %d to %d replicas (at most %d)", head, replicas, want, hpaMaxReplicas)
	case want < replicas:
		return fmt.Sprintf("%s below it:\n   the HPA scales Deployment command from %d down to %d (at least %d)", head, replicas, want, hpaMinReplicas)
	default:
		return fmt.Sprintf("%s below it:\n   Deployment command is at its minimum of %d replica(s): no change", head, hpaMinReplicas)
	}
}

// num prints a sample value as the text format does, without an exponent
// for the counts the demo reaches.
func num(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

// series is one sample line of a text-format page.
type series struct {
	line, name string
	labels     map[string]string
	value      float64
}

// seriesLines parses the sample lines of a page the sidecar or Kong wrote:
// name{label="value",...} value. Comments and lines it cannot read are
// left out; the demo only reads pages the real programs wrote.
func seriesLines(page []byte) []series {
	var out []series
	sc := bufio.NewScanner(bytes.NewReader(page))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err != nil {
			continue
		}
		s := series{line: line, value: v, labels: map[string]string{}}
		head := line[:sp]
		name, rest, hasLabels := strings.Cut(head, "{")
		s.name = name
		if hasLabels {
			s.labels = parseLabels(strings.TrimSuffix(rest, "}"))
		}
		out = append(out, s)
	}
	return out
}

// parseLabels reads label="value" pairs with text-format escapes.
func parseLabels(s string) map[string]string {
	labels := map[string]string{}
	for s != "" {
		name, rest, ok := strings.Cut(s, `="`)
		if !ok {
			break
		}
		var b strings.Builder
		i := 0
		for ; i < len(rest) && rest[i] != '"'; i++ {
			if rest[i] == '\\' && i+1 < len(rest) {
				i++
				switch rest[i] {
				case 'n':
					b.WriteByte('\n')
				default:
					b.WriteByte(rest[i])
				}
				continue
			}
			b.WriteByte(rest[i])
		}
		labels[name] = b.String()
		s = strings.TrimPrefix(rest[min(i+1, len(rest)):], ",")
	}
	return labels
}

// consistent reports whether the two pages come from the same state of
// Kong: the sidecar's latency series carry the values of Kong's.
func consistent(p pages) bool {
	side := seriesLines(p.sidecar)
	found := false
	for _, k := range seriesLines(p.kong) {
		if !strings.HasPrefix(k.name, "kong_upstream_latency_ms_") || k.labels["service"] != "kong.command.80" {
			continue
		}
		s, ok := findEnriched(side, k)
		if !ok || s.value != k.value {
			return false
		}
		found = true
	}
	return found
}

// findEnriched finds the sidecar's series for Kong's: the same name, Kong's
// service as kong_service, and Kong's other labels unchanged.
func findEnriched(side []series, k series) (series, bool) {
	i := slices.IndexFunc(side, func(s series) bool {
		if s.name != k.name || s.labels["kong_service"] != k.labels["service"] {
			return false
		}
		for name, v := range k.labels {
			if name != "service" && s.labels[name] != v {
				return false
			}
		}
		return true
	})
	if i < 0 {
		return series{}, false
	}
	return side[i], true
}
