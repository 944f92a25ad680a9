package inject

import (
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// The bounds of the values a pod's annotations may give the sidecar. A
// value outside them is a typo that would keep the pod from running (a
// memory limit of "128" is 128 bytes: the sidecar never starts, and in
// native mode Kong's containers wait for it) or from scheduling (1,000
// cores), or would freeze the metrics an HPA reads; the pod is admitted
// unchanged, with a warning that names the annotation.
var (
	// MinMemoryLimit is the smallest memory limit: the sidecar takes about
	// 14 MiB once started, before any page.
	MinMemoryLimit = resource.MustParse("32Mi")
	// MaxMemory is the largest memory request or limit.
	MaxMemory = resource.MustParse("16Gi")
	// MaxCPURequest is the largest CPU request: more than a sidecar could
	// use, and more than many nodes have free.
	MaxCPURequest = resource.MustParse("4")
)

// MaxMinFetchInterval is the largest min-fetch-interval: Prometheus'
// staleness period. A longer one answers scrapes from one fetch for so
// long that an autoscaler reads frozen numbers.
const MaxMinFetchInterval = 5 * time.Minute

// outOfBounds says why q, the value of annotation for the sidecar's
// resource (a limit or a request), is outside the bounds, or "" when it
// is not.
func outOfBounds(annotation string, name corev1.ResourceName, limit bool, q resource.Quantity) string {
	switch {
	case name == corev1.ResourceMemory && limit && q.Cmp(MinMemoryLimit) < 0:
		return fmt.Sprintf("annotation %s=%s is below %s, less than the sidecar needs to start (a unit such as Mi may be missing)", annotation, clip(q.String()), MinMemoryLimit.String())
	case name == corev1.ResourceMemory && q.Cmp(MaxMemory) > 0:
		return fmt.Sprintf("annotation %s=%s is above %s", annotation, clip(q.String()), MaxMemory.String())
	case name == corev1.ResourceCPU && q.Cmp(MaxCPURequest) > 0:
		return fmt.Sprintf("annotation %s=%s is above %s cores (a unit such as m may be missing)", annotation, clip(q.String()), MaxCPURequest.String())
	}
	return ""
}

// maxWarnings caps the warnings of one pod, and the problems its log line
// lists: a pod with thousands of containers on the sidecar's port would
// get as many.
const maxWarnings = 10

// capProblems returns at most maxWarnings problems, the last saying how
// many more there were.
func capProblems(problems []string) []string {
	if len(problems) <= maxWarnings {
		return problems
	}
	capped := append([]string(nil), problems[:maxWarnings-1]...)
	return append(capped, fmt.Sprintf("and %d more problems", len(problems)-(maxWarnings-1)))
}
