package inject

import (
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Operation is one RFC 6902 JSON patch operation.
type Operation struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value"`
}

// pointerEscaper escapes a JSON pointer reference token (RFC 6901): "~"
// first becomes "~0", then "/" becomes "~1"; a Replacer does both in one
// pass, so "~1" in a key can never be read back as "/".
var pointerEscaper = strings.NewReplacer("~", "~0", "/", "~1")

// escapePointer escapes token for use in a JSON pointer.
func escapePointer(token string) string {
	return pointerEscaper.Replace(token)
}

// patch adds the annotation, the volumes and the sidecar, adding each
// parent that is absent before adding into it. It only appends, so the
// existing containers, volumes and their order are untouched.
func patch(pod *corev1.Pod, cfg Config, sidecar corev1.Container, volumes []corev1.Volume) []Operation {
	var ops []Operation
	add := func(path string, value any) {
		ops = append(ops, Operation{Op: "add", Path: path, Value: value})
	}
	if pod.Annotations == nil {
		add("/metadata/annotations", map[string]string{})
	}
	add("/metadata/annotations/"+escapePointer(AnnotationInjected), cfg.Version)
	if pod.Spec.Volumes == nil {
		add("/spec/volumes", []corev1.Volume{})
	}
	for _, v := range volumes {
		add("/spec/volumes/-", v)
	}
	list := "/spec/containers"
	if cfg.Mode == ModeNative {
		// Last among the init containers: it starts once the others have
		// finished (Kong's own init steps need no metrics) and still
		// before Kong's containers.
		list = "/spec/initContainers"
		if pod.Spec.InitContainers == nil {
			add(list, []corev1.Container{})
		}
	}
	add(list+"/-", sidecar)
	return ops
}
