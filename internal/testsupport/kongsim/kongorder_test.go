package kongsim

import (
	"bytes"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/golden"
)

// kongMetricData re-renders a body (one subsystem's block, without raw
// newlines in label values) the way Kong's metric_data does, as a model
// independent of writeFamilies: it turns every sample line back into the
// key Kong stores (no "kong_" prefix, le zero-padded with the bucket format
// of its family, +Inf stored as "Inf"), sorts the keys bytewise, and prints
// each with # HELP and # TYPE before the first key whose name, minus a
// _bucket suffix, is a registered family.
func kongMetricData(t *testing.T, body []byte) []byte {
	t.Helper()
	help, typ := map[string]string{}, map[string]string{}
	values := map[string]string{}
	var keys []string
	for line := range strings.Lines(string(body)) {
		line = strings.TrimSuffix(line, "\n")
		if text, ok := strings.CutPrefix(line, "# HELP kong_"); ok {
			name, h, _ := strings.Cut(text, " ")
			help[name] = h
			continue
		}
		if text, ok := strings.CutPrefix(line, "# TYPE kong_"); ok {
			name, ty, _ := strings.Cut(text, " ")
			typ[name] = ty
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		key := strings.TrimPrefix(line[:sp], "kong_")
		if i := strings.LastIndex(key, `,le="`); i >= 0 {
			le := key[i+len(`,le="`) : len(key)-len(`"}`)]
			format := "%07.1f" // bounds up to 60000: 5 digits and one decimal
			if strings.HasPrefix(key, "kong_latency_ms_bucket{") {
				format = "%06.1f" // bounds up to 6000
			}
			if le == "+Inf" {
				le = "Inf"
			} else {
				v, err := strconv.ParseFloat(le, 64)
				if err != nil {
					t.Fatalf("le in %q: %v", line, err)
				}
				le = fmt.Sprintf(format, v)
			}
			key = key[:i] + `,le="` + le + `"}`
		}
		if _, dup := values[key]; dup {
			t.Fatalf("key %q twice in one block", key)
		}
		values[key] = line[sp+1:]
		keys = append(keys, key)
	}
	slices.Sort(keys)

	var out bytes.Buffer
	seen := map[string]bool{}
	for _, key := range keys {
		short := key
		if i := strings.IndexByte(key, '{'); i >= 0 {
			short = key[:i]
			if j := strings.Index(key, "_bucket{"); j >= 0 && strings.Contains(key, "le=") {
				short = key[:j]
			}
		}
		if !seen[short] {
			seen[short] = true
			if h, ok := help[short]; ok {
				fmt.Fprintf(&out, "# HELP kong_%s %s\n", short, h)
				fmt.Fprintf(&out, "# TYPE kong_%s %s\n", short, typ[short])
			}
		}
		printed := key
		if i := strings.LastIndex(key, `,le="`); i >= 0 {
			le := key[i+len(`,le="`) : len(key)-len(`"}`)]
			if le == "Inf" {
				le = "+Inf"
			} else {
				v, _ := strconv.ParseFloat(le, 64)
				le = formatValue(v)
			}
			printed = key[:i] + `,le="` + le + `"}`
		}
		fmt.Fprintf(&out, "kong_%s %s\n", printed, values[key])
	}
	return out.Bytes()
}

// TestKongOrder checks bodies against the model of Kong's metric_data.
func TestKongOrder(t *testing.T) {
	page := &bytes.Buffer{}
	if err := WritePage(page, 100); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		body []byte
	}{
		{"fixture", readFixture(t)},
		{"fixture traffic", writeMetrics(t, fixtureSimulator(t))},
		{"recorded golden case", goldenOutput(t, "recorded")},
		{"toggles-off golden case", goldenOutput(t, "toggles-off")},
		{"100-route page", page.Bytes()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := kongMetricData(t, tc.body)
			if !bytes.Equal(tc.body, want) {
				t.Errorf("not in Kong's order: %s", golden.FirstDiff(want, tc.body))
			}
		})
	}
}

// TestKongOrderModelFails makes sure the model can tell a wrong order.
func TestKongOrderModelFails(t *testing.T) {
	body := readFixture(t)
	lines := strings.SplitAfter(string(body), "\n")
	// Swap two bucket lines of one series.
	for i, l := range lines {
		if strings.Contains(l, `le="25"`) {
			lines[i], lines[i+1] = lines[i+1], lines[i]
			break
		}
	}
	swapped := []byte(strings.Join(lines, ""))
	if bytes.Equal(kongMetricData(t, swapped), swapped) {
		t.Fatal("the model accepted buckets out of order")
	}
}
