// Package inject is a mutating admission webhook that adds the
// kong-metrics-sidecar container to Kong pods that opt in with the label
// kong-metrics-sidecar.io/inject: "true".
//
// It has two halves. Mutate is pure: it turns a Pod into an RFC 6902 JSON
// patch, or explains why there is none. Handler, Server and CertReloader
// are the transport: they decode admission.k8s.io/v1 AdmissionReviews from
// HTTPS requests, answer them, serve health and metrics, and reload the
// serving certificate when it changes on disk.
package inject

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"
)

// The label and annotations the injector reads and writes on pods.
const (
	// LabelInject opts a pod in when its value is "true".
	LabelInject = "kong-metrics-sidecar.io/inject"
	// AnnotationConfig names the ConfigMap holding config.yaml
	// (default Config.DefaultConfigMap).
	AnnotationConfig = "kong-metrics-sidecar.io/config"
	// AnnotationStatusPort is Kong's status port, or "off"; it wins over
	// what the Kong container says.
	AnnotationStatusPort = "kong-metrics-sidecar.io/status-port"
	// AnnotationCPURequest overrides the sidecar's CPU request
	// (Config.SidecarCPURequest).
	AnnotationCPURequest = "kong-metrics-sidecar.io/cpu-request"
	// AnnotationMemoryRequest overrides the sidecar's memory request
	// (Config.SidecarMemoryRequest).
	AnnotationMemoryRequest = "kong-metrics-sidecar.io/memory-request"
	// AnnotationMemoryLimit overrides the sidecar's memory limit
	// (Config.SidecarMemoryLimit).
	AnnotationMemoryLimit = "kong-metrics-sidecar.io/memory-limit"
	// AnnotationMinFetchInterval sets the sidecar's
	// SIDECAR_MIN_FETCH_INTERVAL, a Go duration such as 12s; it wins over
	// Config.MinFetchInterval.
	AnnotationMinFetchInterval = "kong-metrics-sidecar.io/min-fetch-interval"
	// AnnotationInjected is set on injected pods to the injector's version.
	AnnotationInjected = "kong-metrics-sidecar.io/injected"
)

// What the injector adds to a pod.
const (
	ContainerName   = "kong-metrics-sidecar"
	VolumeName      = "kong-metrics-sidecar-config"
	ConfigDir       = "/etc/kong-metrics-sidecar"
	ConfigKey       = "config.yaml"
	SidecarPort     = 9542
	SidecarPortName = "sidecar-metrics"
	SidecarUID      = 65532
	// RoutesVolumeName is the volume of the route mapping's ConfigMap
	// (Config.RouteMappingConfigMap), mounted at RoutesDir; the sidecar
	// reads RoutesKey from it (SIDECAR_ROUTE_MAPPING_FILE).
	RoutesVolumeName = "kong-metrics-sidecar-routes"
	RoutesDir        = ConfigDir + "-routes" // beside the extension file's mount, not in it: no mount inside a ConfigMap volume
	RoutesKey        = "routes.json.gz"
	// DefaultRouteMappingConfigMap is the route mapping's ConfigMap where
	// Config.RouteMappingConfigMap is empty.
	DefaultRouteMappingConfigMap = "kong-metrics-sidecar-routes"
)

// Config is what Mutate needs besides the pod. It is read only.
type Config struct {
	// Image is the sidecar's image.
	Image string
	// Mode says whether the sidecar is a native sidecar or a container.
	Mode Mode
	// DefaultConfigMap is used when a pod has no AnnotationConfig.
	DefaultConfigMap string
	// Version is the value of AnnotationInjected.
	Version string
	// SidecarCPURequest, SidecarMemoryRequest and SidecarMemoryLimit are
	// the sidecar's resources where a pod has no annotation for them; a
	// zero quantity means the built-in default (DefaultCPURequest,
	// DefaultMemoryRequest, DefaultMemoryLimit).
	SidecarCPURequest, SidecarMemoryRequest, SidecarMemoryLimit resource.Quantity
	// StatusPort is Kong's status port where neither AnnotationStatusPort
	// nor Kong's container (KONG_STATUS_LISTEN, a port named status or
	// metrics) names one; 0 means DefaultStatusPort.
	StatusPort int
	// MinFetchInterval is the sidecar's SIDECAR_MIN_FETCH_INTERVAL where a
	// pod has no AnnotationMinFetchInterval; 0 leaves it unset (the
	// sidecar's default, 0s: every scrape fetches Kong).
	MinFetchInterval time.Duration
	// RouteMappingConfigMap is the ConfigMap, in the pod's namespace, that
	// holds the route mapping (key RoutesKey) the injector's Deployment
	// publishes; every sidecar mounts it, optional. Empty means
	// DefaultRouteMappingConfigMap.
	RouteMappingConfigMap string
	// ExtraEnv, ExtraVolumes and ExtraVolumeMounts are added to the
	// sidecar after the injector's own (LoadSettings checks that they
	// clash with none of them).
	ExtraEnv          []corev1.EnvVar
	ExtraVolumes      []corev1.Volume
	ExtraVolumeMounts []corev1.VolumeMount
}

// Outcome is what Mutate decided for a pod.
type Outcome string

// The outcomes. The handler adds "error" for requests it cannot answer.
const (
	// Injected: the patch adds the sidecar.
	Injected Outcome = "injected"
	// Skipped: the pod did not opt in or already has the sidecar.
	Skipped Outcome = "skipped"
	// Invalid: the pod opted in but cannot get the sidecar; the warnings
	// say why.
	Invalid Outcome = "invalid"
)

// Result is Mutate's answer.
type Result struct {
	Outcome Outcome
	// Patch is nil unless Outcome is Injected.
	Patch []Operation
	// Warnings are for the AdmissionResponse (kubectl prints them).
	Warnings []string
	// Reason explains a Skipped or Invalid outcome, for logs.
	Reason string
	// UpstreamURL is the injected SIDECAR_UPSTREAM_URL, and UpstreamFrom
	// says where its port came from, for logs.
	UpstreamURL, UpstreamFrom string
}

// Mutate decides whether pod gets the sidecar and returns the patch that
// adds it. Mutate does not modify pod. Running it on its own output gives
// an empty patch: a pod that already has the container or the injected
// annotation is skipped.
func Mutate(pod *corev1.Pod, cfg Config) Result {
	if v, ok := pod.Labels[LabelInject]; !ok || v != "true" {
		return Result{Outcome: Skipped, Reason: fmt.Sprintf("no %s=true label", LabelInject)}
	}
	if v, ok := pod.Annotations[AnnotationInjected]; ok {
		return Result{Outcome: Skipped, Reason: fmt.Sprintf("already injected (annotation %s=%s)", AnnotationInjected, clip(v))}
	}
	if hasContainer(pod, ContainerName) {
		return Result{Outcome: Skipped, Reason: fmt.Sprintf("already has a container named %s", ContainerName)}
	}

	if len(pod.Spec.Containers) == 0 {
		// The API server rejects such a pod anyway; a patch into a spec
		// that may not exist would only turn that into a webhook error.
		return Result{Outcome: Invalid, Warnings: []string{"kong-metrics-sidecar not injected: the pod has no containers"}, Reason: "no containers"}
	}

	var problems []string
	configMap := cfg.DefaultConfigMap
	if v, ok := pod.Annotations[AnnotationConfig]; ok {
		configMap = v
		if len(validation.IsDNS1123Subdomain(v)) > 0 {
			problems = append(problems, fmt.Sprintf("annotation %s=%s is not a ConfigMap name (lower-case letters, digits, '-' and '.')", AnnotationConfig, clip(v)))
		}
	}
	resources, resourceProblems := sidecarResources(cfg, pod.Annotations)
	problems = append(problems, resourceProblems...)
	interval, err := minFetchInterval(cfg, pod.Annotations)
	if err != nil {
		problems = append(problems, err.Error())
	}
	target, err := statusTargetOf(pod, cfg.StatusPort)
	if err != nil {
		problems = append(problems, err.Error())
	}
	problems = append(problems, conflicts(pod, target)...)
	problems = append(problems, extraVolumeConflicts(pod, cfg.ExtraVolumes)...)
	if len(problems) > 0 {
		problems = capProblems(problems)
		warnings := make([]string, len(problems))
		for i, p := range problems {
			warnings[i] = clipWarning("kong-metrics-sidecar not injected: " + p)
		}
		return Result{Outcome: Invalid, Warnings: warnings, Reason: strings.Join(problems, "; ")}
	}

	r := Result{
		Outcome:      Injected,
		Patch:        patch(pod, cfg, withExtras(sidecarContainer(cfg, target, resources, interval), cfg), sidecarVolumes(cfg, configMap)),
		UpstreamURL:  target.upstreamURL(),
		UpstreamFrom: target.source,
	}
	if target.warning != "" {
		r.Warnings = []string{clipWarning("kong-metrics-sidecar: " + target.warning)}
	}
	return r
}

// statusTargetOf finds Kong's status listener: the status-port annotation,
// else Kong's container, with defaultPort (0: DefaultStatusPort) where
// Kong's container names none.
func statusTargetOf(pod *corev1.Pod, defaultPort int) (statusTarget, error) {
	if v, ok := pod.Annotations[AnnotationStatusPort]; ok {
		if v == "off" {
			return statusTarget{}, fmt.Errorf("annotation %s is off: Kong has no status listener to scrape", AnnotationStatusPort)
		}
		n, err := strconv.Atoi(v)
		if !isDigits(v) || err != nil || n < 1 || n > 65535 {
			return statusTarget{}, fmt.Errorf("annotation %s=%s: want a port number from 1 to 65535, or off", AnnotationStatusPort, clip(v))
		}
		return statusTarget{port: n, source: "annotation " + AnnotationStatusPort}, nil
	}
	i := kongContainer(pod)
	if i < 0 {
		return statusTarget{}, fmt.Errorf("no Kong container (none named proxy, no image kong or kong-gateway); set annotation %s to inject anyway", AnnotationStatusPort)
	}
	t, err := kongStatusTarget(&pod.Spec.Containers[i], defaultPort)
	if err == nil {
		return t, nil
	}
	if errors.Is(err, errStatusListenOff) {
		return t, fmt.Errorf("container %s has KONG_STATUS_LISTEN=off: Kong has no status listener to scrape", clip(pod.Spec.Containers[i].Name))
	}
	return t, err
}

// conflicts lists what in pod would clash with the sidecar.
func conflicts(pod *corev1.Pod, target statusTarget) []string {
	var problems []string
	for _, v := range pod.Spec.Volumes {
		if v.Name == VolumeName || v.Name == RoutesVolumeName {
			problems = append(problems, fmt.Sprintf("the pod already has a volume named %s", v.Name))
		}
	}
	for _, list := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, c := range list {
			for _, p := range c.Ports {
				if p.ContainerPort == SidecarPort && (p.Protocol == "" || p.Protocol == corev1.ProtocolTCP) {
					problems = append(problems, fmt.Sprintf("container %s already uses port %d, the sidecar's", clip(c.Name), SidecarPort))
				}
			}
		}
	}
	if target.port == SidecarPort {
		problems = append(problems, fmt.Sprintf("Kong's status port is %d, the sidecar's own port", SidecarPort))
	}
	return problems
}

func hasContainer(pod *corev1.Pod, name string) bool {
	for _, list := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, c := range list {
			if c.Name == name {
				return true
			}
		}
	}
	return false
}
