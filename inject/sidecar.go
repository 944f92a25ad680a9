package inject

import (
	"fmt"
	"path"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// The sidecar's built-in default resources: small, because it holds one
// scrape of Kong's /metrics at a time. There is no CPU limit, so that a
// large scrape is slow rather than throttled into a timeout.
const (
	DefaultCPURequest    = "10m"
	DefaultMemoryRequest = "32Mi"
	DefaultMemoryLimit   = "128Mi"
)

// resourceAnnotations are the sidecar's resources, each with the
// annotation that overrides it, its built-in default and its Config field.
var resourceAnnotations = []struct {
	annotation string
	resource   corev1.ResourceName
	limit      bool
	def        string
	configured func(Config) resource.Quantity
}{
	{AnnotationCPURequest, corev1.ResourceCPU, false, DefaultCPURequest, func(c Config) resource.Quantity { return c.SidecarCPURequest }},
	{AnnotationMemoryRequest, corev1.ResourceMemory, false, DefaultMemoryRequest, func(c Config) resource.Quantity { return c.SidecarMemoryRequest }},
	{AnnotationMemoryLimit, corev1.ResourceMemory, true, DefaultMemoryLimit, func(c Config) resource.Quantity { return c.SidecarMemoryLimit }},
}

// sidecarResources returns the sidecar's resources: cfg's (the built-in
// default where cfg's quantity is zero), each overridden by its
// annotation. Problems name the annotation.
func sidecarResources(cfg Config, annotations map[string]string) (corev1.ResourceRequirements, []string) {
	r := corev1.ResourceRequirements{Requests: corev1.ResourceList{}, Limits: corev1.ResourceList{}}
	var problems []string
	for _, a := range resourceAnnotations {
		q := a.configured(cfg)
		if q.IsZero() {
			q = resource.MustParse(a.def)
		}
		if v, ok := annotations[a.annotation]; ok {
			parsed, err := resource.ParseQuantity(v)
			switch {
			case err != nil:
				problems = append(problems, fmt.Sprintf("annotation %s=%s is not a quantity such as %s", a.annotation, clip(v), q.String()))
				continue
			case parsed.Sign() <= 0:
				problems = append(problems, fmt.Sprintf("annotation %s=%s must be more than zero", a.annotation, clip(v)))
				continue
			case outOfBounds(a.annotation, a.resource, a.limit, parsed) != "":
				problems = append(problems, outOfBounds(a.annotation, a.resource, a.limit, parsed))
				continue
			}
			q = parsed
		}
		if a.limit {
			r.Limits[a.resource] = q
		} else {
			r.Requests[a.resource] = q
		}
	}
	req, reqOK := r.Requests[corev1.ResourceMemory]
	limit, limitOK := r.Limits[corev1.ResourceMemory]
	if reqOK && limitOK && req.Cmp(limit) > 0 && len(problems) == 0 {
		// The API server would reject the pod; say which annotation to set.
		problems = append(problems, fmt.Sprintf("memory request %s is more than memory limit %s; set annotations %s and %s together",
			req.String(), limit.String(), AnnotationMemoryRequest, AnnotationMemoryLimit))
	}
	return r, problems
}

// minFetchInterval is the sidecar's SIDECAR_MIN_FETCH_INTERVAL:
// AnnotationMinFetchInterval if the pod has it, else cfg's; 0 means unset.
// The error names the annotation.
func minFetchInterval(cfg Config, annotations map[string]string) (time.Duration, error) {
	v, ok := annotations[AnnotationMinFetchInterval]
	if !ok {
		return cfg.MinFetchInterval, nil
	}
	d, err := time.ParseDuration(v)
	switch {
	case err != nil:
		return 0, fmt.Errorf("annotation %s=%s is not a duration such as 12s", AnnotationMinFetchInterval, clip(v))
	case d < 0:
		return 0, fmt.Errorf("annotation %s=%s must not be negative", AnnotationMinFetchInterval, clip(v))
	case d > MaxMinFetchInterval:
		return 0, fmt.Errorf("annotation %s=%s is above %s: scrapes would get frozen numbers", AnnotationMinFetchInterval, clip(v), MaxMinFetchInterval)
	}
	return d, nil
}

// sidecarContainer is the injected container; interval 0 leaves
// SIDECAR_MIN_FETCH_INTERVAL unset.
func sidecarContainer(cfg Config, target statusTarget, resources corev1.ResourceRequirements, interval time.Duration) corev1.Container {
	c := corev1.Container{
		Name:  ContainerName,
		Image: cfg.Image,
		Env: []corev1.EnvVar{
			{Name: "SIDECAR_UPSTREAM_URL", Value: target.upstreamURL()},
			{Name: "SIDECAR_CONFIG_FILE", Value: path.Join(ConfigDir, ConfigKey)},
			{Name: "SIDECAR_ROUTE_MAPPING_FILE", Value: path.Join(RoutesDir, RoutesKey)},
		},
		Ports: []corev1.ContainerPort{
			{Name: SidecarPortName, ContainerPort: SidecarPort, Protocol: corev1.ProtocolTCP},
		},
		Resources: resources,
		// Directory mounts, never subPath: the kubelet updates a
		// ConfigMap directory in place but never a subPath file. RoutesDir
		// lies inside ConfigDir: the kubelet creates the mount point in a
		// ConfigMap volume for a mount nested in it (Kubernetes 1.10 and
		// later).
		VolumeMounts: []corev1.VolumeMount{
			{Name: VolumeName, MountPath: ConfigDir, ReadOnly: true},
			{Name: RoutesVolumeName, MountPath: RoutesDir, ReadOnly: true},
		},
		// A liveness probe only. A readiness probe would let the sidecar
		// take the Kong pod out of its Services' endpoints.
		LivenessProbe: &corev1.Probe{
			ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
				Path:   "/healthz",
				Port:   intstr.FromString(SidecarPortName),
				Scheme: corev1.URISchemeHTTP,
			}},
			InitialDelaySeconds: 5,
			PeriodSeconds:       10,
			TimeoutSeconds:      2,
			SuccessThreshold:    1,
			FailureThreshold:    3,
		},
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
		SecurityContext: &corev1.SecurityContext{
			RunAsNonRoot:             new(true),
			RunAsUser:                new(int64(SidecarUID)),
			ReadOnlyRootFilesystem:   new(true),
			AllowPrivilegeEscalation: new(false),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
	}
	if interval > 0 {
		c.Env = append(c.Env, corev1.EnvVar{Name: "SIDECAR_MIN_FETCH_INTERVAL", Value: interval.String()})
	}
	if cfg.Mode == ModeNative {
		c.RestartPolicy = new(corev1.ContainerRestartPolicyAlways)
	}
	return c
}

// sidecarVolumes are the sidecar's volumes: configMap's, holding the
// extension file, the route mapping's, and cfg.ExtraVolumes.
func sidecarVolumes(cfg Config, configMap string) []corev1.Volume {
	routes := cfg.RouteMappingConfigMap
	if routes == "" {
		routes = DefaultRouteMappingConfigMap
	}
	volumes := []corev1.Volume{configMapVolume(VolumeName, configMap), configMapVolume(RoutesVolumeName, routes)}
	return append(volumes, cfg.ExtraVolumes...)
}

// configMapVolume is a ConfigMap volume of the sidecar. It is optional so
// that a missing ConfigMap leaves the sidecar without its file rather than
// the whole Kong pod stuck in ContainerCreating; the route mapping's
// ConfigMap, in particular, is only created once the injector publishes it.
func configMapVolume(name, configMap string) corev1.Volume {
	return corev1.Volume{
		Name: name,
		VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: configMap},
			Optional:             new(true),
		}},
	}
}
