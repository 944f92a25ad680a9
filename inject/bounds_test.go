package inject

import (
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// TestOutOfBoundsAnnotations: values that would keep the pod from running
// or freeze its metrics leave it unchanged, with a warning naming the
// annotation; the bounds themselves are accepted.
func TestOutOfBoundsAnnotations(t *testing.T) {
	cases := []struct {
		name        string
		annotations map[string]string
		problem     string // "" when the pod gets the sidecar
	}{
		{"memory limit without a unit", map[string]string{AnnotationMemoryLimit: "128"}, "memory-limit=\"128\" is below 32Mi"},
		{"memory limit just below the floor", map[string]string{AnnotationMemoryRequest: "16Mi", AnnotationMemoryLimit: "31Mi"}, "is below 32Mi"},
		{"memory limit at the floor", map[string]string{AnnotationMemoryLimit: "32Mi"}, ""},
		{"memory request too large", map[string]string{AnnotationMemoryRequest: "17Gi", AnnotationMemoryLimit: "16Gi"}, "memory-request=\"17Gi\" is above 16Gi"},
		{"memory limit too large", map[string]string{AnnotationMemoryLimit: "1Ti"}, "memory-limit=\"1Ti\" is above 16Gi"},
		{"memory at the ceiling", map[string]string{AnnotationMemoryRequest: "16Gi", AnnotationMemoryLimit: "16Gi"}, ""},
		{"1000 cores", map[string]string{AnnotationCPURequest: "1000"}, "cpu-request=\"1k\" is above 4 cores"},
		{"cpu at the ceiling", map[string]string{AnnotationCPURequest: "4"}, ""},
		{"a century between fetches", map[string]string{AnnotationMinFetchInterval: "876000h"}, "min-fetch-interval=\"876000h\" is above 5m0s"},
		{"interval at the ceiling", map[string]string{AnnotationMinFetchInterval: "5m"}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pod := kongPod()
			pod.Annotations = tc.annotations
			r := Mutate(pod, testConfig)
			if tc.problem == "" {
				if r.Outcome != Injected {
					t.Fatalf("outcome %s (%s), want injected", r.Outcome, r.Reason)
				}
				return
			}
			if r.Outcome != Invalid || r.Patch != nil || len(r.Warnings) != 1 || !strings.Contains(r.Warnings[0], tc.problem) {
				t.Fatalf("outcome %s, patch %v, warnings %q; want the pod unchanged with a warning containing %q", r.Outcome, r.Patch, r.Warnings, tc.problem)
			}
		})
	}
}

// TestWarningsCapped: a pod with thousands of problems (containers on the
// sidecar's port) gets maxWarnings warnings, the last counting the rest,
// and a reason (its log line) of bounded length.
func TestWarningsCapped(t *testing.T) {
	pod := kongPod()
	for i := range 5000 {
		pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{
			Name: fmt.Sprintf("exporter-%d", i), Ports: []corev1.ContainerPort{{ContainerPort: SidecarPort}},
		})
	}
	r := Mutate(pod, testConfig)
	if r.Outcome != Invalid {
		t.Fatalf("outcome %s, want invalid", r.Outcome)
	}
	if len(r.Warnings) != maxWarnings {
		t.Fatalf("%d warnings, want %d", len(r.Warnings), maxWarnings)
	}
	if last := r.Warnings[maxWarnings-1]; !strings.Contains(last, fmt.Sprintf("and %d more problems", 5000-(maxWarnings-1))) {
		t.Errorf("last warning %q does not count the rest", last)
	}
	if len(r.Reason) > maxWarnings*maxWarning {
		t.Errorf("reason of %d bytes, want at most %d", len(r.Reason), maxWarnings*maxWarning)
	}
}
