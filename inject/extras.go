package inject

import (
	"errors"
	"fmt"
	"path"
	"reflect"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	kjson "sigs.k8s.io/json"
)

// JSONList is a setting holding a JSON array of Kubernetes objects, such as
// INJECTOR_SIDECAR_EXTRA_ENV='[{"name":"SIDECAR_LOG_LEVEL","value":"debug"}]'.
// Field names are case-sensitive; an unknown or repeated field is an error,
// so that a typo such as "mountpath" is not silently dropped.
type JSONList[T any] []T

// UnmarshalText implements encoding.TextUnmarshaler.
func (l *JSONList[T]) UnmarshalText(text []byte) error {
	var list []T
	strict, err := kjson.UnmarshalStrict(text, &list, kjson.DisallowDuplicateFields, kjson.DisallowUnknownFields)
	if err != nil {
		return fmt.Errorf("not a JSON array of %s objects: %w", reflect.TypeFor[T]().Name(), err)
	}
	if len(strict) > 0 {
		return fmt.Errorf("%w", errors.Join(strict...))
	}
	*l = list
	return nil
}

// injectedEnv are the sidecar variables the injector sets itself, each with
// what to set instead; INJECTOR_SIDECAR_EXTRA_ENV must not hold them.
var injectedEnv = map[string]string{
	"SIDECAR_UPSTREAM_URL":       "the injector finds Kong's status listener; set the pod annotation " + AnnotationStatusPort + " or INJECTOR_DEFAULT_STATUS_PORT",
	"SIDECAR_CONFIG_FILE":        "the injector mounts the extension file; set the pod annotation " + AnnotationConfig + " or INJECTOR_DEFAULT_CONFIGMAP",
	"SIDECAR_ROUTE_MAPPING_FILE": "the injector mounts the route mapping; set INJECTOR_ROUTE_MAPPING_CONFIGMAP",
	"SIDECAR_MIN_FETCH_INTERVAL": "set INJECTOR_SIDECAR_MIN_FETCH_INTERVAL or the pod annotation " + AnnotationMinFetchInterval,
	"SIDECAR_LISTEN_ADDR":        fmt.Sprintf("the sidecar's port %d is fixed: its container port, liveness probe and the monitors use it", SidecarPort),
}

// checkSidecarExtras checks the extra variables, volumes and mounts of the
// sidecar (INJECTOR_SIDECAR_EXTRA_*), so that a mistake stops the injector
// at start rather than every Kong pod at creation. It returns one error a
// problem, each naming its setting.
func checkSidecarExtras(env []corev1.EnvVar, volumes []corev1.Volume, mounts []corev1.VolumeMount) []error {
	var errs []error
	fail := func(setting, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s%s: %s", EnvPrefix, setting, fmt.Sprintf(format, args...)))
	}
	seen := map[string]bool{}
	for _, e := range env {
		switch {
		case !strings.HasPrefix(e.Name, "SIDECAR_"):
			fail("SIDECAR_EXTRA_ENV", "%q does not start with SIDECAR_ (the sidecar reads only SIDECAR_* variables)", e.Name)
		case injectedEnv[e.Name] != "":
			fail("SIDECAR_EXTRA_ENV", "%s is set by the injector: %s", e.Name, injectedEnv[e.Name])
		case seen[e.Name]:
			fail("SIDECAR_EXTRA_ENV", "%s is given twice", e.Name)
		case e.ValueFrom != nil && e.Value != "":
			fail("SIDECAR_EXTRA_ENV", "%s has both value and valueFrom", e.Name)
		case e.ValueFrom != nil && setFields(*e.ValueFrom) != 1:
			fail("SIDECAR_EXTRA_ENV", "%s: valueFrom needs exactly one of secretKeyRef, configMapKeyRef, fieldRef, resourceFieldRef", e.Name)
		}
		seen[e.Name] = true
	}
	names := map[string]bool{} // of every volume given
	valid := map[string]bool{} // of those without a problem
	for _, v := range volumes {
		switch {
		case len(validation.IsDNS1123Label(v.Name)) > 0:
			fail("SIDECAR_EXTRA_VOLUMES", "%q is not a volume name (a DNS-1123 label)", v.Name)
		case v.Name == VolumeName || v.Name == RoutesVolumeName:
			fail("SIDECAR_EXTRA_VOLUMES", "%s is the name of a volume the injector adds", v.Name)
		case names[v.Name]:
			fail("SIDECAR_EXTRA_VOLUMES", "%s is given twice", v.Name)
		case setFields(v.VolumeSource) != 1:
			fail("SIDECAR_EXTRA_VOLUMES", "%s needs exactly one source (secret, configMap, projected, …)", v.Name)
		default:
			valid[v.Name] = true
		}
		names[v.Name] = true
	}
	used := map[string]bool{}
	paths := map[string]bool{}
	for _, m := range mounts {
		switch {
		case !names[m.Name]:
			fail("SIDECAR_EXTRA_VOLUME_MOUNTS", "%q is not one of INJECTOR_SIDECAR_EXTRA_VOLUMES", m.Name)
		case !path.IsAbs(m.MountPath) || path.Clean(m.MountPath) != m.MountPath:
			fail("SIDECAR_EXTRA_VOLUME_MOUNTS", "mountPath %q of %s is not a clean absolute path", m.MountPath, m.Name)
		case within(m.MountPath, ConfigDir) || within(ConfigDir, m.MountPath):
			fail("SIDECAR_EXTRA_VOLUME_MOUNTS", "mountPath %s of %s overlaps %s, where the injector mounts the extension file and the route mapping", m.MountPath, m.Name, ConfigDir)
		case paths[m.MountPath]:
			fail("SIDECAR_EXTRA_VOLUME_MOUNTS", "mountPath %s is given twice", m.MountPath)
		}
		used[m.Name] = true
		paths[m.MountPath] = true
	}
	for _, v := range volumes {
		if valid[v.Name] && !used[v.Name] {
			fail("SIDECAR_EXTRA_VOLUMES", "%s is mounted by none of INJECTOR_SIDECAR_EXTRA_VOLUME_MOUNTS", v.Name)
			used[v.Name] = true
		}
	}
	return errs
}

// within reports whether p is dir or a path inside it.
func within(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, strings.TrimSuffix(dir, "/")+"/")
}

// setFields counts the pointer fields of a one-of struct (VolumeSource,
// EnvVarSource) that are set.
func setFields(v any) int {
	rv := reflect.ValueOf(v)
	n := 0
	for i := range rv.NumField() {
		if f := rv.Field(i); f.Kind() == reflect.Pointer && !f.IsNil() {
			n++
		}
	}
	return n
}

// extraVolumeConflicts lists the pod's volumes whose names the extra
// volumes would take.
func extraVolumeConflicts(pod *corev1.Pod, extra []corev1.Volume) []string {
	var problems []string
	for _, v := range pod.Spec.Volumes {
		if slices.ContainsFunc(extra, func(e corev1.Volume) bool { return e.Name == v.Name }) {
			problems = append(problems, fmt.Sprintf("the pod already has a volume named %s, which INJECTOR_SIDECAR_EXTRA_VOLUMES adds", v.Name))
		}
	}
	return problems
}

// withExtras is c with cfg's extra variables and mounts after its own.
func withExtras(c corev1.Container, cfg Config) corev1.Container {
	c.Env = append(c.Env, cfg.ExtraEnv...)
	c.VolumeMounts = append(c.VolumeMounts, cfg.ExtraVolumeMounts...)
	return c
}
