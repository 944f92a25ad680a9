package inject

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/envconfig"
)

// EnvPrefix is the prefix of every injector setting.
const EnvPrefix = "INJECTOR_"

// Settings are the injector's settings, read from INJECTOR_* variables.
type Settings struct {
	ListenAddr       string `env:"LISTEN_ADDR" envDefault:":9443" help:"HTTPS address of POST /mutate, /healthz and /readyz"`
	TLSCertFile      string `env:"TLS_CERT_FILE" envDefault:"/etc/kong-metrics-injector/tls/tls.crt" help:"serving certificate (PEM, chain allowed); reloaded when it changes"`
	TLSKeyFile       string `env:"TLS_KEY_FILE" envDefault:"/etc/kong-metrics-injector/tls/tls.key" help:"private key of the serving certificate (PEM); reloaded when it changes"`
	MetricsAddr      string `env:"METRICS_ADDR" envDefault:":9090" help:"plain-HTTP address of the injector's own /metrics"`
	SidecarImage     string `env:"SIDECAR_IMAGE" help:"image of the injected sidecar (required)"`
	SidecarMode      Mode   `env:"SIDECAR_MODE" envDefault:"native" help:"native (an init container with restartPolicy: Always, Kubernetes >= 1.29) or container (a regular container)"`
	DefaultConfigMap string `env:"DEFAULT_CONFIGMAP" envDefault:"kong-metrics-sidecar" help:"ConfigMap holding config.yaml, when a pod has no kong-metrics-sidecar.io/config annotation"`
	// The sidecar's resources, quantities such as 10m or 32Mi, where a pod
	// has no annotation for them; there is no CPU limit.
	SidecarCPURequest       string        `env:"SIDECAR_CPU_REQUEST" envDefault:"10m" help:"the sidecar's CPU request, when a pod has no kong-metrics-sidecar.io/cpu-request annotation"`
	SidecarMemoryRequest    string        `env:"SIDECAR_MEMORY_REQUEST" envDefault:"32Mi" help:"the sidecar's memory request, when a pod has no kong-metrics-sidecar.io/memory-request annotation"`
	SidecarMemoryLimit      string        `env:"SIDECAR_MEMORY_LIMIT" envDefault:"128Mi" help:"the sidecar's memory limit, when a pod has no kong-metrics-sidecar.io/memory-limit annotation"`
	SidecarMinFetchInterval time.Duration `env:"SIDECAR_MIN_FETCH_INTERVAL" envDefault:"0s" help:"the sidecar's SIDECAR_MIN_FETCH_INTERVAL, when a pod has no kong-metrics-sidecar.io/min-fetch-interval annotation; 0s leaves it unset (every scrape fetches Kong); below the scrape interval and above half of it (12s for 15s) when several scrapers (an HA Prometheus pair, the /metrics/kong monitor) share one Kong"`
	DefaultStatusPort       Port          `env:"DEFAULT_STATUS_PORT" envDefault:"8100" help:"Kong's status port, when neither a pod's kong-metrics-sidecar.io/status-port annotation nor Kong's container (KONG_STATUS_LISTEN, a port named status or metrics) names one"`
	// The route mapping (package routemap): the injector's Deployment
	// watches HTTPRoutes and GRPCRoutes and publishes which Service each
	// route rule's Kong service stands for, in a ConfigMap in each of these
	// namespaces, which it mounts into the sidecars it injects there.
	RouteMappingNamespaces []string `env:"ROUTE_MAPPING_NAMESPACES" envSeparator:"," help:"namespaces of Kong pods to publish the HTTPRoute/GRPCRoute mapping to, comma-separated (empty: the mapping is not published)"`
	RouteMappingConfigMap  string   `env:"ROUTE_MAPPING_CONFIGMAP" envDefault:"kong-metrics-sidecar-routes" help:"ConfigMap that holds the route mapping in each namespace; the injector mounts it (optional) into every sidecar"`
	Kubeconfig             string   `env:"KUBECONFIG" help:"kubeconfig for the route mapping's API access (empty: the pod's service account)"`
	// Any other SIDECAR_* setting of the injected sidecar, with the volumes
	// its files come from, as JSON arrays of the pod spec's objects.
	SidecarExtraEnv          JSONList[corev1.EnvVar]      `env:"SIDECAR_EXTRA_ENV" help:"more variables of the sidecar, a JSON array of EnvVar (name, value or valueFrom); names start with SIDECAR_ and are none the injector sets"`
	SidecarExtraVolumes      JSONList[corev1.Volume]      `env:"SIDECAR_EXTRA_VOLUMES" help:"volumes added to the pod for the sidecar, a JSON array of Volume (such as a Secret with the Admin API's client certificate)"`
	SidecarExtraVolumeMounts JSONList[corev1.VolumeMount] `env:"SIDECAR_EXTRA_VOLUME_MOUNTS" help:"mounts of INJECTOR_SIDECAR_EXTRA_VOLUMES in the sidecar, a JSON array of VolumeMount, outside /etc/kong-metrics-sidecar"`
	envconfig.LogSettings
}

// LoadSettings reads the injector's settings from environ ("KEY=value"
// pairs). A variable set to "" takes its default. The error lists every
// problem, one a line, each naming the variable.
func LoadSettings(environ []string) (Settings, error) {
	s, err := envconfig.ParseEnv[Settings](EnvPrefix, environ)
	errs := []error{err}
	for _, a := range []struct{ name, value string }{{"LISTEN_ADDR", s.ListenAddr}, {"METRICS_ADDR", s.MetricsAddr}} {
		if err := checkListenAddr(a.value); err != nil {
			errs = append(errs, fmt.Errorf("%s%s=%q: %w", EnvPrefix, a.name, a.value, err))
		}
	}
	if s.SidecarImage == "" {
		errs = append(errs, fmt.Errorf("%sSIDECAR_IMAGE: required, the image of the sidecar (for example ghcr.io/kong-metrics-sidecar/kong-metrics-sidecar:v1.0.0)", EnvPrefix))
	} else if !imageReference.MatchString(s.SidecarImage) {
		errs = append(errs, fmt.Errorf("%sSIDECAR_IMAGE=%q: not an image reference such as registry.example.com/team/name:tag or name@sha256:<digest>", EnvPrefix, s.SidecarImage))
	}
	if len(validation.IsDNS1123Subdomain(s.DefaultConfigMap)) > 0 {
		errs = append(errs, fmt.Errorf("%sDEFAULT_CONFIGMAP=%q: not a ConfigMap name (lower-case letters, digits, '-' and '.', at most 253)", EnvPrefix, s.DefaultConfigMap))
	}
	if len(validation.IsDNS1123Subdomain(s.RouteMappingConfigMap)) > 0 {
		errs = append(errs, fmt.Errorf("%sROUTE_MAPPING_CONFIGMAP=%q: not a ConfigMap name (lower-case letters, digits, '-' and '.', at most 253)", EnvPrefix, s.RouteMappingConfigMap))
	}
	for _, ns := range s.RouteMappingNamespaces {
		if len(validation.IsDNS1123Label(ns)) > 0 {
			errs = append(errs, fmt.Errorf("%sROUTE_MAPPING_NAMESPACES: %q is not a namespace name (a DNS-1123 label)", EnvPrefix, ns))
		}
	}
	quantities := map[string]resource.Quantity{}
	for _, q := range []struct{ name, value string }{
		{"SIDECAR_CPU_REQUEST", s.SidecarCPURequest}, {"SIDECAR_MEMORY_REQUEST", s.SidecarMemoryRequest}, {"SIDECAR_MEMORY_LIMIT", s.SidecarMemoryLimit},
	} {
		parsed, err := resource.ParseQuantity(q.value)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("%s%s=%q: not a quantity such as 10m, 0.5 or 64Mi", EnvPrefix, q.name, q.value))
		case parsed.Sign() <= 0:
			errs = append(errs, fmt.Errorf("%s%s=%q: must be more than zero", EnvPrefix, q.name, q.value))
		default:
			quantities[q.name] = parsed
		}
	}
	if req, ok := quantities["SIDECAR_MEMORY_REQUEST"]; ok {
		if limit, ok := quantities["SIDECAR_MEMORY_LIMIT"]; ok && req.Cmp(limit) > 0 {
			errs = append(errs, fmt.Errorf("%sSIDECAR_MEMORY_REQUEST=%q is more than %sSIDECAR_MEMORY_LIMIT=%q: the API server would reject every injected pod",
				EnvPrefix, s.SidecarMemoryRequest, EnvPrefix, s.SidecarMemoryLimit))
		}
	}
	if s.SidecarMinFetchInterval < 0 {
		errs = append(errs, fmt.Errorf("%sSIDECAR_MIN_FETCH_INTERVAL=%s: must not be negative", EnvPrefix, s.SidecarMinFetchInterval))
	}
	if err == nil || !strings.Contains(err.Error(), EnvPrefix+"SIDECAR_EXTRA_") {
		// Once one of them is not JSON, the others' cross-checks would
		// only mislead.
		errs = append(errs, checkSidecarExtras(s.SidecarExtraEnv, s.SidecarExtraVolumes, s.SidecarExtraVolumeMounts)...)
	}
	if s.DefaultStatusPort == SidecarPort {
		errs = append(errs, fmt.Errorf("%sDEFAULT_STATUS_PORT=%q: the sidecar's own port", EnvPrefix, strconv.Itoa(SidecarPort)))
	}
	return s, errors.Join(errs...)
}

// Config is the Config that s gives Mutate, with version as the value of
// AnnotationInjected. A quantity that does not parse (LoadSettings reports
// it) takes the built-in default.
func (s Settings) Config(version string) Config {
	quantity := func(v string) resource.Quantity {
		q, _ := resource.ParseQuantity(v)
		return q
	}
	return Config{
		Image:                s.SidecarImage,
		Mode:                 s.SidecarMode,
		DefaultConfigMap:     s.DefaultConfigMap,
		Version:              version,
		SidecarCPURequest:    quantity(s.SidecarCPURequest),
		SidecarMemoryRequest: quantity(s.SidecarMemoryRequest),
		SidecarMemoryLimit:   quantity(s.SidecarMemoryLimit),
		StatusPort:           int(s.DefaultStatusPort),
		MinFetchInterval:     s.SidecarMinFetchInterval,

		RouteMappingConfigMap: s.RouteMappingConfigMap,
		ExtraEnv:              s.SidecarExtraEnv,
		ExtraVolumes:          s.SidecarExtraVolumes,
		ExtraVolumeMounts:     s.SidecarExtraVolumeMounts,
	}
}

// checkListenAddr accepts what net.Listen("tcp", addr) accepts for a
// listener: an optional host and a numeric port (the sidecar's rule).
func checkListenAddr(addr string) error { return envconfig.CheckListenAddr(addr) }

// imageReference is the grammar of github.com/distribution/reference:
// [domain[:port]/]path[:tag][@digest], with lower-case path components.
var imageReference = regexp.MustCompile(`^` +
	`(?:(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?/)?` + // domain
	`[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*` + // path
	`(?::[\w][\w.-]{0,127})?` + // tag
	`(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?` + // digest
	`$`)

// Port is a TCP port number, from 1 to 65535.
type Port int

// UnmarshalText implements encoding.TextUnmarshaler.
func (p *Port) UnmarshalText(text []byte) error {
	n, err := strconv.Atoi(string(text))
	if !isDigits(string(text)) || err != nil || n < 1 || n > 65535 {
		return errors.New("not a port number from 1 to 65535")
	}
	*p = Port(n)
	return nil
}

// Mode is how the sidecar is added to a pod.
type Mode string

// The sidecar modes.
const (
	// ModeNative adds an init container with restartPolicy: Always, a
	// native sidecar (Kubernetes 1.29 and later): it starts before Kong's
	// containers and does not keep a Job-like pod from completing.
	ModeNative Mode = "native"
	// ModeContainer adds a regular container, for older clusters.
	ModeContainer Mode = "container"
)

// UnmarshalText implements encoding.TextUnmarshaler.
func (m *Mode) UnmarshalText(text []byte) error {
	switch s := Mode(text); s {
	case ModeNative, ModeContainer:
		*m = s
		return nil
	default:
		return fmt.Errorf("want native or container, not %q", s)
	}
}

func isDigits(s string) bool {
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}
