// Package doctor walks the autoscaling chain of one Service, from the
// extension file to the HPA or KEDA ScaledObject, and names the first
// broken link with its fix. Its checks are pure decisions over Answers,
// what the cluster answered (recorded as JSON for the tests); Fetch
// gathers them through the API server.
package doctor

// Answers is everything the checks decide on: what the API server, the
// sidecars (through the pods' proxy subresource), Prometheus and the custom
// metrics API answered. Each field is what one request returned, or the
// error it failed with.
type Answers struct {
	// Namespace and Service name the Service whose metric scales
	// something: the Kubernetes Service Kong routes to.
	Namespace string `json:"namespace"`
	Service   string `json:"service"`
	// Target is what the user named: service/x, hpa/x or scaledobject/x.
	Target string `json:"target"`

	Extension ExtensionAnswer `json:"extension"`
	Pods      []PodAnswer     `json:"pods"`
	Injector  InjectorAnswer  `json:"injector"`

	// Services are the Services of Namespace (for the monitors' selectors).
	Services []ServiceAnswer `json:"services"`
	// NamespaceLabels are the labels of the namespaces a selector may need.
	NamespaceLabels map[string]map[string]string `json:"namespaceLabels,omitempty"`
	Monitors        []MonitorAnswer              `json:"monitors"`
	Prometheuses    []PrometheusResource         `json:"prometheuses"`
	Prometheus      PrometheusAnswer             `json:"prometheus"`

	CustomMetrics CustomMetricsAnswer  `json:"customMetrics"`
	HPAs          []HPAAnswer          `json:"hpas"`
	ScaledObjects []ScaledObjectAnswer `json:"scaledObjects"`
}

// Fetched is one HTTP answer: its body, or why there is none.
type Fetched struct {
	Body  string `json:"body,omitempty"`
	Error string `json:"error,omitempty"`
}

// ExtensionAnswer is the ConfigMap holding the extension file.
type ExtensionAnswer struct {
	ConfigMap string `json:"configMap"`
	Found     bool   `json:"found"`
	Error     string `json:"error,omitempty"`
	// Data is its config.yaml.
	Data string `json:"data,omitempty"`
	// HasKey says whether the ConfigMap has config.yaml at all.
	HasKey bool `json:"hasKey"`
}

// PodAnswer is one pod of the namespace that runs Kong or opted in.
type PodAnswer struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels,omitempty"`
	// OptedIn: the pod carries kong-metrics-sidecar.io/inject: "true".
	OptedIn bool `json:"optedIn"`
	// Kong: one of its containers runs a Kong image or is named proxy.
	Kong bool `json:"kong"`
	// Sidecar: the pod has the injected sidecar container.
	Sidecar bool `json:"sidecar"`
	// SidecarPort is the sidecar's metrics port and SidecarPortName its name.
	SidecarPort     int    `json:"sidecarPort,omitempty"`
	SidecarPortName string `json:"sidecarPortName,omitempty"`
	Ready           bool   `json:"ready"`
	// Owner is the kind/name of its controller, if any.
	Owner string `json:"owner,omitempty"`
	// Metrics is the sidecar's /metrics, KongPage its /metrics/kong.
	Metrics  *Fetched `json:"metrics,omitempty"`
	KongPage *Fetched `json:"kongPage,omitempty"`
}

// InjectorAnswer is what the API server says about the injector.
type InjectorAnswer struct {
	// Webhook: a MutatingWebhookConfiguration calls inject.kong-metrics-sidecar.io.
	Webhook       bool   `json:"webhook"`
	FailurePolicy string `json:"failurePolicy,omitempty"`
	// Service is the namespace/name the webhook calls.
	Service string `json:"service,omitempty"`
	// ReadyEndpoints counts the ready addresses of that Service, -1 when
	// the Service has no selector (ExternalName or endpoints kept by hand).
	ReadyEndpoints int `json:"readyEndpoints"`
	// Log is the tail of the injector's log lines that name a skip.
	Log []string `json:"log,omitempty"`
	// Probe is a server-side dry run of a pod that lacks the sidecar:
	// what the webhook does with it now.
	Probe *ProbeAnswer `json:"probe,omitempty"`
}

// ProbeAnswer is the outcome of creating a copy of a pod with dryRun=All:
// the API server calls the webhook as for a real pod and stores nothing.
type ProbeAnswer struct {
	Pod      string   `json:"pod"`
	Injected bool     `json:"injected"`
	Warnings []string `json:"warnings,omitempty"`
	Error    string   `json:"error,omitempty"`
}

// ServiceAnswer is a Service of the namespace.
type ServiceAnswer struct {
	Name     string            `json:"name"`
	Labels   map[string]string `json:"labels,omitempty"`
	Selector map[string]string `json:"selector,omitempty"`
	Ports    []ServicePort     `json:"ports,omitempty"`
}

// ServicePort is one port of a Service; TargetPort is a number or a name.
type ServicePort struct {
	Name       string `json:"name,omitempty"`
	Port       int    `json:"port"`
	TargetPort string `json:"targetPort"`
}

// LabelSelector is metav1.LabelSelector's matchLabels and matchExpressions.
type LabelSelector struct {
	MatchLabels      map[string]string `json:"matchLabels,omitempty"`
	MatchExpressions []Requirement     `json:"matchExpressions,omitempty"`
}

// Requirement is one matchExpressions entry.
type Requirement struct {
	Key      string   `json:"key"`
	Operator string   `json:"operator"`
	Values   []string `json:"values,omitempty"`
}

// MonitorAnswer is a ServiceMonitor or PodMonitor.
type MonitorAnswer struct {
	Kind      string            `json:"kind"`
	Namespace string            `json:"namespace"`
	Name      string            `json:"name"`
	Labels    map[string]string `json:"labels,omitempty"`
	Selector  LabelSelector     `json:"selector"`
	// AnyNamespace and MatchNames are its namespaceSelector; neither
	// means its own namespace.
	AnyNamespace bool     `json:"anyNamespace,omitempty"`
	MatchNames   []string `json:"matchNames,omitempty"`
	// Ports are its endpoints' port (a name) or targetPort, in order.
	Ports []string `json:"ports"`
}

// PrometheusResource is a Prometheus Operator Prometheus resource.
type PrometheusResource struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// Nil selectors select nothing; an empty one selects everything.
	ServiceMonitorSelector          *LabelSelector `json:"serviceMonitorSelector,omitempty"`
	ServiceMonitorNamespaceSelector *LabelSelector `json:"serviceMonitorNamespaceSelector,omitempty"`
	PodMonitorSelector              *LabelSelector `json:"podMonitorSelector,omitempty"`
	PodMonitorNamespaceSelector     *LabelSelector `json:"podMonitorNamespaceSelector,omitempty"`
}

// PrometheusAnswer is what Prometheus' HTTP API answered.
type PrometheusAnswer struct {
	// Via says how it was reached (a Service's proxy, or a URL).
	Via string `json:"via"`
	// Targets is /api/v1/targets?state=active.
	Targets Fetched `json:"targets"`
	// Series is the query for the Service's series by exported labels,
	// Unlabelled the query for series of the Service without them.
	Series     Fetched `json:"series"`
	Unlabelled Fetched `json:"unlabelled"`
}

// CustomMetricsAnswer is the aggregated custom metrics API.
type CustomMetricsAnswer struct {
	APIService string `json:"apiService"`
	Found      bool   `json:"found"`
	Available  bool   `json:"available"`
	Reason     string `json:"reason,omitempty"`
	Message    string `json:"message,omitempty"`
	// Resources are the discovery document's resource names
	// (services/<metric>), or why discovery failed.
	Resources      []string `json:"resources,omitempty"`
	DiscoveryError string   `json:"discoveryError,omitempty"`
	// Values are GETs of each metric for the Service, by metric name.
	Values map[string]MetricValue `json:"values,omitempty"`
}

// MetricValue is one custom metric's value for the Service, or its error.
type MetricValue struct {
	Value string `json:"value,omitempty"`
	Code  int    `json:"code,omitempty"`
	Error string `json:"error,omitempty"`
}

// Condition is a status condition.
type Condition struct {
	Type    string `json:"type"`
	Status  string `json:"status"`
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
}

// Event is an event of an HPA or ScaledObject.
type Event struct {
	Type    string `json:"type"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
	Count   int32  `json:"count,omitempty"`
}

// HPAAnswer is a HorizontalPodAutoscaler using a metric of the Service.
type HPAAnswer struct {
	Name            string      `json:"name"`
	Min             int32       `json:"min"`
	Max             int32       `json:"max"`
	CurrentReplicas int32       `json:"currentReplicas"`
	DesiredReplicas int32       `json:"desiredReplicas"`
	Metrics         []string    `json:"metrics"` // the Object metric names on the Service
	Conditions      []Condition `json:"conditions,omitempty"`
	Events          []Event     `json:"events,omitempty"`
	// ManagedBy is the ScaledObject that made it, if KEDA did.
	ManagedBy string `json:"managedBy,omitempty"`
}

// ScaledObjectAnswer is a KEDA ScaledObject.
type ScaledObjectAnswer struct {
	Name       string      `json:"name"`
	Triggers   []string    `json:"triggers"` // each trigger's type
	Query      string      `json:"query,omitempty"`
	Conditions []Condition `json:"conditions,omitempty"`
	Events     []Event     `json:"events,omitempty"`
	HPA        string      `json:"hpa,omitempty"`
}
