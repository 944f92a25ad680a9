// Package relabel rewrites the text exposition of Kong's Prometheus plugin
// line by line: it keeps the families a Selection enables, resolves each
// series' Kong service to a Kubernetes Service, renames Kong's `service`
// label to `kong_service` and adds the labels Kong's autoscaling tutorial
// queries (kubernetes_namespace, kubernetes_name, kubernetes_kind,
// exported_namespace, exported_service).
//
// The package does no I/O: callers feed it lines and own the buffers.
package relabel

// Service names a Kubernetes Service.
type Service struct {
	Namespace string
	Name      string
}

func (s Service) String() string { return s.Namespace + "/" + s.Name }

// Selection says which series to keep. It must not be modified once handed
// to New.
type Selection struct {
	// Services maps each selected Kubernetes Service to the flags enabled for it.
	Services map[Service]Metrics
	// Mappings resolves Kong service (or upstream) names that Kong's naming
	// rules cannot, such as HTTPRoute rules named httproute.<ns>.<route>.<rule>.
	// It wins over the naming rules.
	Mappings map[string]Service
	// Tags resolves Kong service names from the tags the Kong Ingress
	// Controller puts on each Kong service, as read from Kong's Admin API.
	// It applies to the service label only (not upstream names), after
	// Mappings and before the naming rules. Nil means no Admin API.
	Tags map[string]Tag
	// MultiBackend holds Kong service names that stand for several
	// Services, such as HTTPRoute rules with several backends as the route
	// mapping lists them: their series are dropped as DropMultiBackend.
	// Mappings wins over it.
	MultiBackend map[string]struct{}
	// OnUnresolved, when set, is called with each Kong service or upstream
	// name that resolves to no Service, the first time the Rewriter meets
	// it as either (a name can be both: an HTTPRoute's upstream is named
	// after its Kong service). It is called on the scrape path, so it must
	// not block.
	OnUnresolved func(name string)
	// OnUnseen, when set, is called with each Kong service name that
	// Tags does not hold, the first time the Rewriter resolves it. It is
	// called on the scrape path, so it must not block.
	OnUnseen func(name string)
}

// Tag is what the Kong Ingress Controller's tags say about one Kong
// service: Kind is the k8s-kind tag ("" for an untagged service) and
// Service the k8s-namespace and k8s-name tags.
type Tag struct {
	Kind    string
	Service Service
}
