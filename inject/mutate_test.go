package inject

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// kongPod is an opted-in pod with one Kong container.
func kongPod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "kong-", Labels: map[string]string{LabelInject: "true"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "proxy", Image: "kong:3.9"}}},
	}
}

func TestMutate(t *testing.T) {
	cases := []struct {
		name     string
		edit     func(*corev1.Pod)
		outcome  Outcome
		warnings []string // each in the warning with the same index
	}{
		{"opted in", func(*corev1.Pod) {}, Injected, nil},
		{"label value is case-sensitive", func(p *corev1.Pod) { p.Labels[LabelInject] = "True" }, Skipped, nil},
		{"label absent", func(p *corev1.Pod) { p.Labels = nil }, Skipped, nil},
		{"injected annotation alone", func(p *corev1.Pod) { p.Annotations = map[string]string{AnnotationInjected: "v0.0.1"} }, Skipped, nil},
		{"sidecar as a container", func(p *corev1.Pod) {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: ContainerName})
		}, Skipped, nil},
		{"sidecar as an init container", func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: ContainerName}}
		}, Skipped, nil},
		{"no containers", func(p *corev1.Pod) { p.Spec.Containers = nil }, Invalid, []string{"the pod has no containers"}},
		{"status-port annotation without a Kong container", func(p *corev1.Pod) {
			p.Spec.Containers[0] = corev1.Container{Name: "web", Image: "nginx"}
			p.Annotations = map[string]string{AnnotationStatusPort: "8100"}
		}, Injected, nil},
		{"status-port annotation wins over a bad KONG_STATUS_LISTEN", func(p *corev1.Pod) {
			p.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "KONG_STATUS_LISTEN", Value: "garbage"}}
			p.Annotations = map[string]string{AnnotationStatusPort: "8100"}
		}, Injected, nil},
		{"status-port 0", func(p *corev1.Pod) { p.Annotations = map[string]string{AnnotationStatusPort: "0"} }, Invalid, []string{"want a port number"}},
		{"status-port empty", func(p *corev1.Pod) { p.Annotations = map[string]string{AnnotationStatusPort: ""} }, Invalid, []string{"want a port number"}},
		{"status-port OFF", func(p *corev1.Pod) { p.Annotations = map[string]string{AnnotationStatusPort: "OFF"} }, Invalid, []string{"want a port number"}},
		{"volume name taken", func(p *corev1.Pod) { p.Spec.Volumes = []corev1.Volume{{Name: VolumeName}} }, Invalid, []string{"already has a volume named kong-metrics-sidecar-config"}},
		{"routes volume name taken", func(p *corev1.Pod) { p.Spec.Volumes = []corev1.Volume{{Name: RoutesVolumeName}} }, Invalid, []string{"already has a volume named kong-metrics-sidecar-routes"}},
		{"port taken", func(p *corev1.Pod) {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "exporter", Ports: []corev1.ContainerPort{{ContainerPort: SidecarPort}}})
		}, Invalid, []string{`container "exporter" already uses port 9542`}},
		{"status port is the sidecar's", func(p *corev1.Pod) { p.Annotations = map[string]string{AnnotationStatusPort: "9542"} }, Invalid, []string{"status port is 9542"}},
		{"every problem reported", func(p *corev1.Pod) {
			p.Annotations = map[string]string{AnnotationConfig: "-", AnnotationCPURequest: "x", AnnotationMemoryLimit: "0", AnnotationMinFetchInterval: "-1s", AnnotationStatusPort: "y"}
		}, Invalid, []string{"config=", "cpu-request=", "memory-limit=", "min-fetch-interval=", "status-port="}},
		{"long values are clipped", func(p *corev1.Pod) {
			p.Annotations = map[string]string{AnnotationStatusPort: strings.Repeat("9", 100000)}
		}, Invalid, []string{`status-port="9999999999999999999999999999999999999999999999999999999999999999"…`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pod := kongPod()
			tc.edit(pod)
			before, err := json.Marshal(pod)
			if err != nil {
				t.Fatal(err)
			}
			r := Mutate(pod, testConfig)
			after, _ := json.Marshal(pod)
			if string(before) != string(after) {
				t.Error("Mutate modified its pod")
			}
			if r.Outcome != tc.outcome {
				t.Fatalf("outcome %s (%s), want %s", r.Outcome, r.Reason, tc.outcome)
			}
			if (r.Patch != nil) != (tc.outcome == Injected) {
				t.Errorf("patch %v for outcome %s", r.Patch, r.Outcome)
			}
			if len(r.Warnings) != len(tc.warnings) {
				t.Fatalf("warnings %q, want %d", r.Warnings, len(tc.warnings))
			}
			for i, w := range tc.warnings {
				if !strings.Contains(r.Warnings[i], w) || len(r.Warnings[i]) > maxWarning {
					t.Errorf("warning %q, want one containing %q, at most %d bytes", r.Warnings[i], w, maxWarning)
				}
			}
		})
	}
}

func TestMutatePatchLayout(t *testing.T) {
	cases := []struct {
		name  string
		mode  Mode
		edit  func(*corev1.Pod)
		paths []string
	}{
		{"native, no parents", ModeNative, func(*corev1.Pod) {}, []string{
			"/metadata/annotations", "/metadata/annotations/kong-metrics-sidecar.io~1injected",
			"/spec/volumes", "/spec/volumes/-", "/spec/volumes/-", "/spec/initContainers", "/spec/initContainers/-"}},
		{"container, no parents", ModeContainer, func(*corev1.Pod) {}, []string{
			"/metadata/annotations", "/metadata/annotations/kong-metrics-sidecar.io~1injected",
			"/spec/volumes", "/spec/volumes/-", "/spec/volumes/-", "/spec/containers/-"}},
		{"native, every parent", ModeNative, func(p *corev1.Pod) {
			p.Annotations = map[string]string{"a": "b"}
			p.Spec.Volumes = []corev1.Volume{{Name: "tmp"}}
			p.Spec.InitContainers = []corev1.Container{{Name: "init"}}
		}, []string{"/metadata/annotations/kong-metrics-sidecar.io~1injected", "/spec/volumes/-", "/spec/volumes/-", "/spec/initContainers/-"}},
		{"empty parents exist", ModeNative, func(p *corev1.Pod) {
			p.Annotations = map[string]string{}
			p.Spec.Volumes = []corev1.Volume{}
			p.Spec.InitContainers = []corev1.Container{}
		}, []string{"/metadata/annotations/kong-metrics-sidecar.io~1injected", "/spec/volumes/-", "/spec/volumes/-", "/spec/initContainers/-"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pod := kongPod()
			tc.edit(pod)
			cfg := testConfig
			cfg.Mode = tc.mode
			cfg.Version = "v1.2.3"
			r := Mutate(pod, cfg)
			var paths []string
			for _, op := range r.Patch {
				paths = append(paths, op.Path)
				if op.Op != "add" {
					t.Errorf("op %q", op.Op)
				}
			}
			if !reflect.DeepEqual(paths, tc.paths) {
				t.Errorf("paths\n  %q\nwant\n  %q", paths, tc.paths)
			}
			for _, op := range r.Patch {
				if op.Path == "/metadata/annotations/kong-metrics-sidecar.io~1injected" && op.Value != "v1.2.3" {
					t.Errorf("injected annotation %v, want the configured version", op.Value)
				}
			}
		})
	}
}

func TestEscapePointer(t *testing.T) {
	cases := []struct{ in, want string }{
		{"plain", "plain"},
		{"kong-metrics-sidecar.io/injected", "kong-metrics-sidecar.io~1injected"},
		{"a~b", "a~0b"},
		{"~1", "~01"}, // a literal "~1" must not read back as "/"
		{"/~", "~1~0"},
		{"~~//", "~0~0~1~1"},
		{"", ""},
	}
	for _, tc := range cases {
		if got := escapePointer(tc.in); got != tc.want {
			t.Errorf("escapePointer(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestSidecarResources(t *testing.T) {
	cases := []struct {
		name        string
		annotations map[string]string
		cpu, mem    string // requests
		limit       string // memory limit
		problem     string
	}{
		{"defaults", nil, "10m", "32Mi", "128Mi", ""},
		{"all overridden", map[string]string{AnnotationCPURequest: "0.25", AnnotationMemoryRequest: "100M", AnnotationMemoryLimit: "1Gi"}, "250m", "100M", "1Gi", ""},
		{"request equal to limit", map[string]string{AnnotationMemoryRequest: "128Mi"}, "10m", "128Mi", "128Mi", ""},
		{"limit below the request", map[string]string{AnnotationMemoryRequest: "64Mi", AnnotationMemoryLimit: "48Mi"}, "", "", "", "memory request 64Mi is more than memory limit 48Mi"},
		{"not a quantity", map[string]string{AnnotationMemoryRequest: "32 Mi"}, "", "", "", `memory-request="32 Mi" is not a quantity`},
		{"zero", map[string]string{AnnotationCPURequest: "0"}, "", "", "", `cpu-request="0" must be more than zero`},
		{"negative", map[string]string{AnnotationMemoryLimit: "-1Gi"}, "", "", "", `memory-limit="-1Gi" must be more than zero`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, problems := sidecarResources(Config{}, tc.annotations)
			if tc.problem != "" {
				if len(problems) != 1 || !strings.Contains(problems[0], tc.problem) {
					t.Fatalf("problems %q, want one containing %q", problems, tc.problem)
				}
				return
			}
			if len(problems) > 0 {
				t.Fatalf("problems %q", problems)
			}
			got := [3]string{r.Requests.Cpu().String(), r.Requests.Memory().String(), r.Limits.Memory().String()}
			if want := [3]string{tc.cpu, tc.mem, tc.limit}; got != want {
				t.Errorf("requests cpu, memory and limit memory %q, want %q", got, want)
			}
			if _, ok := r.Limits[corev1.ResourceCPU]; ok {
				t.Error("a CPU limit")
			}
		})
	}
}

// TestSidecarResourcesConfigured checks the injector's settings
// (Config.Sidecar*) replace the built-in defaults and the annotations
// still win over them.
// TestMinFetchInterval checks which SIDECAR_MIN_FETCH_INTERVAL the
// sidecar gets: the annotation's, else the injector's, else none.
func TestMinFetchInterval(t *testing.T) {
	cases := []struct {
		name        string
		configured  time.Duration
		annotations map[string]string
		env         string // "" when the variable must be absent
		problem     string
	}{
		{"neither", 0, nil, "", ""},
		{"configured", 14 * time.Second, nil, "14s", ""},
		{"annotation", 0, map[string]string{AnnotationMinFetchInterval: "9s"}, "9s", ""},
		{"annotation wins", 14 * time.Second, map[string]string{AnnotationMinFetchInterval: "1m30s"}, "1m30s", ""},
		{"annotation turns it off", 14 * time.Second, map[string]string{AnnotationMinFetchInterval: "0s"}, "", ""},
		{"no unit", 0, map[string]string{AnnotationMinFetchInterval: "14"}, "", `min-fetch-interval="14" is not a duration`},
		{"negative", 0, map[string]string{AnnotationMinFetchInterval: "-5s"}, "", `min-fetch-interval="-5s" must not be negative`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pod := kongPod()
			pod.Annotations = tc.annotations
			cfg := testConfig
			cfg.MinFetchInterval = tc.configured
			r := Mutate(pod, cfg)
			if tc.problem != "" {
				if r.Outcome != Invalid || len(r.Warnings) != 1 || !strings.Contains(r.Warnings[0], tc.problem) {
					t.Fatalf("outcome %s, warnings %q; want invalid with %q", r.Outcome, r.Warnings, tc.problem)
				}
				return
			}
			if r.Outcome != Injected {
				t.Fatalf("outcome %s (%s), want injected", r.Outcome, r.Reason)
			}
			c := sidecarOf(t, r)
			var got []string
			for _, e := range c.Env {
				if e.Name == "SIDECAR_MIN_FETCH_INTERVAL" {
					got = append(got, e.Value)
				}
			}
			switch {
			case tc.env == "" && len(got) > 0:
				t.Errorf("SIDECAR_MIN_FETCH_INTERVAL=%q, want it unset", got)
			case tc.env != "" && (len(got) != 1 || got[0] != tc.env):
				t.Errorf("SIDECAR_MIN_FETCH_INTERVAL %q, want once %q", got, tc.env)
			}
		})
	}
}

// TestRouteMappingVolume checks which ConfigMap the route mapping's volume
// names: the configured one, else the default.
func TestRouteMappingVolume(t *testing.T) {
	for _, tc := range []struct{ configured, want string }{
		{"", "kong-metrics-sidecar-routes"},
		{"routes-v2", "routes-v2"},
	} {
		cfg := testConfig
		cfg.RouteMappingConfigMap = tc.configured
		r := Mutate(kongPod(), cfg)
		var got []string
		for _, op := range r.Patch {
			if v, ok := op.Value.(corev1.Volume); ok && v.Name == RoutesVolumeName && v.ConfigMap != nil {
				got = append(got, v.ConfigMap.Name)
			}
		}
		if len(got) != 1 || got[0] != tc.want {
			t.Errorf("configured %q: route mapping volumes of ConfigMaps %q, want one of %q", tc.configured, got, tc.want)
		}
	}
}

// sidecarOf is the container r's patch adds.
func sidecarOf(t *testing.T, r Result) corev1.Container {
	t.Helper()
	for _, op := range r.Patch {
		if c, ok := op.Value.(corev1.Container); ok && c.Name == ContainerName {
			return c
		}
	}
	t.Fatalf("the patch adds no container %s", ContainerName)
	return corev1.Container{}
}

func TestSidecarResourcesConfigured(t *testing.T) {
	cfg := Config{
		SidecarCPURequest:    resource.MustParse("25m"),
		SidecarMemoryRequest: resource.MustParse("64Mi"),
		SidecarMemoryLimit:   resource.MustParse("256Mi"),
	}
	cases := []struct {
		name        string
		cfg         Config
		annotations map[string]string
		cpu, mem    string // requests
		limit       string // memory limit
		problem     string
	}{
		{"configured", cfg, nil, "25m", "64Mi", "256Mi", ""},
		{"one configured", Config{SidecarMemoryLimit: resource.MustParse("1Gi")}, nil, "10m", "32Mi", "1Gi", ""},
		{"annotations win", cfg, map[string]string{AnnotationCPURequest: "50m", AnnotationMemoryLimit: "512Mi"}, "50m", "64Mi", "512Mi", ""},
		{"annotated limit below the configured request", cfg, map[string]string{AnnotationMemoryLimit: "48Mi"}, "", "", "", "memory request 64Mi is more than memory limit 48Mi"},
		{"example is the configured value", cfg, map[string]string{AnnotationCPURequest: "ten"}, "", "", "", `cpu-request="ten" is not a quantity such as 25m`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, problems := sidecarResources(tc.cfg, tc.annotations)
			if tc.problem != "" {
				if len(problems) != 1 || !strings.Contains(problems[0], tc.problem) {
					t.Fatalf("problems %q, want one containing %q", problems, tc.problem)
				}
				return
			}
			if len(problems) > 0 {
				t.Fatalf("problems %q", problems)
			}
			got := [3]string{r.Requests.Cpu().String(), r.Requests.Memory().String(), r.Limits.Memory().String()}
			if want := [3]string{tc.cpu, tc.mem, tc.limit}; got != want {
				t.Errorf("requests cpu, memory and limit memory %q, want %q", got, want)
			}
		})
	}
}
