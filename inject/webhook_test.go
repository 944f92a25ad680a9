package inject

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	jsonpatch "github.com/evanphx/json-patch/v5"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/golden"
)

// TestFixtures sends AdmissionReviews as API servers send them
// (testdata/admission) through the handler, applies each patch with a real
// JSON-patch library, compares the response and the patched pod with
// testdata/golden, and checks that the webhook leaves its own output alone.
func TestFixtures(t *testing.T) {
	const (
		local8100 = "http://127.0.0.1:8100/metrics"
	)
	cases := []struct {
		name     string // of the golden files testdata/golden/<name>.*.json
		fixture  string // testdata/admission/<fixture>.json
		mode     Mode
		result   string
		warning  string // in the only warning; "" when there must be none
		upstream string // SIDECAR_UPSTREAM_URL of an injected pod
	}{
		// Status listener from KONG_STATUS_LISTEN "0.0.0.0:8100, [::]:8100".
		{"helm-chart", "helm-chart", ModeNative, "injected", "", local8100},
		{"helm-chart-container-mode", "helm-chart", ModeContainer, "injected", "", local8100},
		{"dataplane-operator", "dataplane-operator", ModeNative, "injected", "", local8100},
		{"dataplane-operator-container-mode", "dataplane-operator", ModeContainer, "injected", "", local8100},
		// No annotations, init containers or volumes: the parents are added.
		{"minimal-opted-in", "minimal-opted-in", ModeNative, "injected", "", local8100},
		{"minimal-opted-in-container-mode", "minimal-opted-in", ModeContainer, "injected", "", local8100},
		// Kong found by image, port named status, every annotation set.
		{"annotated-status-port-name", "annotated-status-port-name", ModeNative, "injected", "", "http://127.0.0.1:8007/metrics"},
		{"ipv6-status-listen", "ipv6-status-listen", ModeNative, "injected", "", "http://[::1]:8100/metrics"},
		{"status-port-annotation", "status-port-annotation", ModeNative, "injected", "", "http://127.0.0.1:9100/metrics"},
		{"annotation-keys-escaped", "annotation-keys-escaped", ModeNative, "injected", "", local8100},
		{"status-listen-from-configmap", "status-listen-from-configmap", ModeNative, "injected", "cannot read; using port \"metrics\" 8101", "http://127.0.0.1:8101/metrics"},

		{"already-injected", "already-injected", ModeNative, "skipped", "", ""},
		{"no-labels", "no-labels", ModeNative, "skipped", "", ""},
		{"not-opted-in", "not-opted-in", ModeNative, "skipped", "", ""},
		{"deployment", "deployment", ModeNative, "skipped", "", ""},
		{"pod-update", "pod-update", ModeNative, "skipped", "", ""},

		{"no-kong-container", "no-kong-container", ModeNative, "invalid", "no Kong container", ""},
		{"status-listen-off", "status-listen-off", ModeNative, "invalid", `container "kong" has KONG_STATUS_LISTEN=off`, ""},
		{"status-listen-malformed", "status-listen-malformed", ModeNative, "invalid", `listener "0.0.0.0": want <ip>:<port>`, ""},
		{"status-listen-tls-only", "status-listen-tls-only", ModeNative, "invalid", "no plain-HTTP listener", ""},
		{"invalid-status-port", "invalid-status-port", ModeNative, "invalid", `kong-metrics-sidecar.io/status-port="81OO": want a port number`, ""},
		{"invalid-status-port-off", "invalid-status-port-off", ModeNative, "invalid", "kong-metrics-sidecar.io/status-port is off", ""},
		{"invalid-config", "invalid-config", ModeNative, "invalid", `kong-metrics-sidecar.io/config="Kong_Metrics" is not a ConfigMap name`, ""},
		{"invalid-cpu-request", "invalid-cpu-request", ModeNative, "invalid", `kong-metrics-sidecar.io/cpu-request="ten" is not a quantity`, ""},
		{"invalid-memory-request", "invalid-memory-request", ModeNative, "invalid", `kong-metrics-sidecar.io/memory-request="-32Mi" must be more than zero`, ""},
		{"invalid-memory-limit", "invalid-memory-limit", ModeNative, "invalid", `kong-metrics-sidecar.io/memory-limit="lots" is not a quantity`, ""},
		{"invalid-memory-request-over-limit", "invalid-memory-request-over-limit", ModeNative, "invalid", "memory request 256Mi is more than memory limit 128Mi", ""},
		{"invalid-min-fetch-interval", "invalid-min-fetch-interval", ModeNative, "invalid", `kong-metrics-sidecar.io/min-fetch-interval="14" is not a duration`, ""},

		// Non-default injector settings (settingsOf): they reach the patch
		// where the pod says nothing, and its annotations still win.
		{"injector-settings", "minimal-opted-in", ModeNative, "injected", "", "http://127.0.0.1:8200/metrics"},
		{"injector-settings-annotations-win", "annotated-status-port-name", ModeNative, "injected", "", "http://127.0.0.1:8007/metrics"},
		{"injector-settings-status-listen-wins", "helm-chart", ModeNative, "injected", "", local8100},
		// INJECTOR_SIDECAR_EXTRA_*: the Admin API with its client
		// certificate, a token from a Secret, the log level and the web
		// config file (adminExtras).
		{"sidecar-extras", "helm-chart", ModeNative, "injected", "", local8100},
	}
	// settingsOf are the cases' settings besides Mode, by case name.
	nonDefault := func(c *Config) {
		c.SidecarCPURequest = resource.MustParse("20m")
		c.SidecarMemoryRequest = resource.MustParse("48Mi")
		c.SidecarMemoryLimit = resource.MustParse("192Mi")
		c.StatusPort = 8200
		c.MinFetchInterval = 14 * time.Second
		c.RouteMappingConfigMap = "kong-routes"
	}
	settingsOf := map[string]func(*Config){
		"injector-settings":                    nonDefault,
		"injector-settings-annotations-win":    nonDefault,
		"injector-settings-status-listen-wins": nonDefault,
		"sidecar-extras":                       func(c *Config) { c.ExtraEnv, c.ExtraVolumes, c.ExtraVolumeMounts = adminExtras() },
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			body := readFixture(t, tc.fixture)
			var in admissionv1.AdmissionReview
			if err := json.Unmarshal(body, &in); err != nil {
				t.Fatal(err)
			}
			cfg := testConfig
			cfg.Mode = tc.mode
			if edit, ok := settingsOf[tc.name]; ok {
				edit(&cfg)
			}
			h := newTestHandler(cfg)
			resp := decodeResponse(t, post(h, body))

			if resp.UID != in.Request.UID {
				t.Errorf("uid %q, want %q", resp.UID, in.Request.UID)
			}
			if !resp.Allowed {
				t.Errorf("denied: %+v", resp.Result)
			}
			for _, r := range results {
				want := 0.0
				if r == tc.result {
					want = 1
				}
				if got := admissions(h, r); got != want {
					t.Errorf("admissions_total{result=%q} = %v, want %v", r, got, want)
				}
			}
			switch {
			case tc.warning == "" && len(resp.Warnings) > 0:
				t.Errorf("unexpected warnings %q", resp.Warnings)
			case tc.warning != "" && (len(resp.Warnings) != 1 || !strings.Contains(resp.Warnings[0], tc.warning)):
				t.Errorf("warnings %q, want one containing %q", resp.Warnings, tc.warning)
			}
			golden.Check(t, filepath.Join("testdata", "golden", tc.name+".response.json"), responseGolden(t, resp))

			if tc.result != "injected" {
				if resp.Patch != nil || resp.PatchType != nil {
					t.Fatalf("a %s pod got a patch: %s", tc.result, resp.Patch)
				}
				return
			}
			if resp.PatchType == nil || *resp.PatchType != admissionv1.PatchTypeJSONPatch {
				t.Fatalf("patchType %v, want JSONPatch", resp.PatchType)
			}
			patched := applyPatch(t, in.Request.Object.Raw, resp.Patch)
			golden.Check(t, filepath.Join("testdata", "golden", tc.name+".pod.json"), normalizeJSON(t, patched))
			checkInjectedPod(t, in.Request.Object.Raw, patched, cfg, tc.upstream)

			// The API server calls again (reinvocationPolicy: IfNeeded)
			// with the patched pod: nothing more to do.
			in.Request.Object.Raw = patched
			again, err := json.Marshal(in)
			if err != nil {
				t.Fatal(err)
			}
			resp2 := decodeResponse(t, post(h, again))
			if resp2.Patch != nil || len(resp2.Warnings) > 0 {
				t.Errorf("second pass: patch %s, warnings %q; want neither", resp2.Patch, resp2.Warnings)
			}
			if got := admissions(h, "skipped"); got != 1 {
				t.Errorf("second pass: admissions_total{result=\"skipped\"} = %v, want 1", got)
			}
		})
	}
}

// responseGolden renders the parts of a response that matter, with the
// patch decoded so that the golden file is readable.
func responseGolden(t *testing.T, resp *admissionv1.AdmissionResponse) []byte {
	t.Helper()
	g := map[string]any{"allowed": resp.Allowed, "warnings": resp.Warnings}
	if resp.PatchType != nil {
		g["patchType"] = *resp.PatchType
	}
	if resp.Patch != nil {
		g["patch"] = json.RawMessage(resp.Patch)
	}
	b, err := json.Marshal(g)
	if err != nil {
		t.Fatal(err)
	}
	return normalizeJSON(t, b)
}

// applyPatch applies an RFC 6902 patch with evanphx/json-patch, which fails
// on an add into a parent that does not exist.
func applyPatch(t testing.TB, doc, patch []byte) []byte {
	t.Helper()
	p, err := jsonpatch.DecodePatch(patch)
	if err != nil {
		t.Fatalf("decoding the patch: %v\n%s", err, patch)
	}
	for _, op := range p {
		if op.Kind() != "add" {
			t.Errorf("patch has a %q operation; the webhook only adds", op.Kind())
		}
	}
	out, err := p.Apply(doc)
	if err != nil {
		t.Fatalf("applying the patch: %v\n%s", err, patch)
	}
	return out
}

// checkInjectedPod checks what the golden files would only show: the
// patched pod is a valid Pod, nothing that was there changed, and the
// sidecar is where the mode puts it with the right upstream.
func checkInjectedPod(t *testing.T, before, after []byte, cfg Config, upstream string) {
	t.Helper()
	mode := cfg.Mode
	var old, pod corev1.Pod
	if err := json.Unmarshal(before, &old); err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(after))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&pod); err != nil {
		t.Fatalf("the patched pod is not a Pod: %v", err)
	}
	for k, v := range old.Annotations {
		if pod.Annotations[k] != v {
			t.Errorf("annotation %q changed from %q to %q", k, v, pod.Annotations[k])
		}
	}
	if got := pod.Annotations[AnnotationInjected]; got != testConfig.Version {
		t.Errorf("annotation %s = %q, want %q", AnnotationInjected, got, testConfig.Version)
	}
	if !reflect.DeepEqual(pod.Labels, old.Labels) {
		t.Errorf("labels changed from %v to %v", old.Labels, pod.Labels)
	}
	added := map[Mode]*[]corev1.Container{ModeNative: &pod.Spec.InitContainers, ModeContainer: &pod.Spec.Containers}[mode]
	kept := map[Mode]*[]corev1.Container{ModeNative: &pod.Spec.Containers, ModeContainer: &pod.Spec.InitContainers}[mode]
	oldAdded := map[Mode][]corev1.Container{ModeNative: old.Spec.InitContainers, ModeContainer: old.Spec.Containers}[mode]
	oldKept := map[Mode][]corev1.Container{ModeNative: old.Spec.Containers, ModeContainer: old.Spec.InitContainers}[mode]
	if !sameList(*kept, oldKept) {
		t.Error("containers of the other list changed")
	}
	if len(*added) != len(oldAdded)+1 || !sameList((*added)[:len(oldAdded)], oldAdded) {
		t.Fatalf("want the existing containers untouched and in order, then the sidecar; got %d containers for %d", len(*added), len(oldAdded))
	}
	if len(pod.Spec.Volumes) != len(old.Spec.Volumes)+2+len(cfg.ExtraVolumes) || !sameList(pod.Spec.Volumes[:len(old.Spec.Volumes)], old.Spec.Volumes) {
		t.Fatal("want the existing volumes untouched, then the sidecar's two and the extra ones")
	}
	if extra := pod.Spec.Volumes[len(old.Spec.Volumes)+2:]; !sameList(extra, cfg.ExtraVolumes) {
		t.Errorf("extra volumes %+v, want %+v", extra, cfg.ExtraVolumes)
	}
	for _, v := range pod.Spec.Volumes[len(old.Spec.Volumes) : len(old.Spec.Volumes)+2] {
		if v.ConfigMap == nil || v.ConfigMap.Optional == nil || !*v.ConfigMap.Optional {
			t.Errorf("volume %+v: want an optional ConfigMap volume", v)
		}
	}
	sidecar := (*added)[len(oldAdded)]
	if sidecar.Name != ContainerName || sidecar.Image != testConfig.Image {
		t.Errorf("sidecar is %s (%s)", sidecar.Name, sidecar.Image)
	}
	if native := sidecar.RestartPolicy != nil && *sidecar.RestartPolicy == corev1.ContainerRestartPolicyAlways; native != (mode == ModeNative) {
		t.Errorf("restartPolicy %v in %s mode", sidecar.RestartPolicy, mode)
	}
	env := map[string]string{}
	for _, e := range sidecar.Env {
		env[e.Name] = e.Value
	}
	if env["SIDECAR_UPSTREAM_URL"] != upstream {
		t.Errorf("SIDECAR_UPSTREAM_URL=%q, want %q", env["SIDECAR_UPSTREAM_URL"], upstream)
	}
	if env["SIDECAR_CONFIG_FILE"] != "/etc/kong-metrics-sidecar/config.yaml" {
		t.Errorf("SIDECAR_CONFIG_FILE=%q", env["SIDECAR_CONFIG_FILE"])
	}
	if env["SIDECAR_ROUTE_MAPPING_FILE"] != "/etc/kong-metrics-sidecar-routes/routes.json.gz" {
		t.Errorf("SIDECAR_ROUTE_MAPPING_FILE=%q", env["SIDECAR_ROUTE_MAPPING_FILE"])
	}
	mounts := map[string]string{}
	for _, m := range sidecar.VolumeMounts[:min(2, len(sidecar.VolumeMounts))] {
		if m.SubPath != "" || m.SubPathExpr != "" || !m.ReadOnly {
			t.Errorf("mount %+v: want a read-only directory mount", m)
		}
		mounts[m.Name] = m.MountPath
	}
	if extra := sidecar.VolumeMounts[min(2, len(sidecar.VolumeMounts)):]; !sameList(extra, cfg.ExtraVolumeMounts) {
		t.Errorf("extra mounts %+v, want %+v", extra, cfg.ExtraVolumeMounts)
	}
	for _, e := range cfg.ExtraEnv {
		if !slices.ContainsFunc(sidecar.Env, func(got corev1.EnvVar) bool { return reflect.DeepEqual(got, e) }) {
			t.Errorf("sidecar has no variable %+v", e)
		}
	}
	if want := map[string]string{VolumeName: "/etc/kong-metrics-sidecar", RoutesVolumeName: "/etc/kong-metrics-sidecar-routes"}; !reflect.DeepEqual(mounts, want) {
		t.Errorf("mounts %v, want %v", mounts, want)
	}
	if sidecar.ReadinessProbe != nil || sidecar.StartupProbe != nil {
		t.Error("the sidecar has a readiness or startup probe")
	}
	if sidecar.LivenessProbe == nil || sidecar.LivenessProbe.HTTPGet == nil || sidecar.LivenessProbe.HTTPGet.Path != "/healthz" {
		t.Errorf("liveness probe %+v, want GET /healthz", sidecar.LivenessProbe)
	}
}

// sameList is reflect.DeepEqual, except that nil and empty are the same.
func sameList[T any](a, b []T) bool {
	return len(a) == 0 && len(b) == 0 || reflect.DeepEqual(a, b)
}
