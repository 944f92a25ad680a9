package inject

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/version"
)

// TestBuildInfo: kong_metrics_injector_build_info is 1 and carries the
// labels users query (version, revision, goversion) from
// github.com/prometheus/common/version's variables.
func TestBuildInfo(t *testing.T) {
	for name, p := range map[string]*string{"Version": &version.Version, "Revision": &version.Revision, "Branch": &version.Branch} {
		old := *p
		*p = "test-" + name
		t.Cleanup(func() { *p = old })
	}
	reg := prometheus.NewPedanticRegistry()
	NewMetrics(reg)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"version": "test-Version", "revision": "test-Revision", "branch": "test-Branch", "goversion": version.GoVersion}
	for _, mf := range mfs {
		if mf.GetName() != "kong_metrics_injector_build_info" {
			continue
		}
		if len(mf.GetMetric()) != 1 {
			t.Fatalf("%d build_info series, want 1", len(mf.GetMetric()))
		}
		m := mf.GetMetric()[0]
		if v := m.GetGauge().GetValue(); v != 1 {
			t.Errorf("build_info is %v, want 1", v)
		}
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("build_info label %s=%q, want %q (labels %v)", k, got[k], v, got)
			}
		}
		return
	}
	t.Fatal("no kong_metrics_injector_build_info")
}
