package relabel

import "strings"

// Unresolved says why a Kong service name resolved to no Kubernetes
// Service and what would resolve it, for the sidecar's log line and
// -check-config.
type Unresolved struct {
	// Reason is a short identifier: route_rule, no_backend, konnect or
	// no_rule.
	Reason string
	// Fix is one sentence for the person reading the log.
	Fix string
}

// ExplainUnresolved classifies a Kong service name that neither the
// mappings, the Admin API's tags nor the naming rules resolved.
func ExplainUnresolved(kong string) Unresolved {
	var parts [6]string
	n := splitDots(kong, parts[:])
	switch {
	case strings.HasPrefix(kong, "httproute.") && strings.HasSuffix(kong, ".svc._"):
		return Unresolved{"no_backend", "an HTTPRoute rule without backends routes to no Service; nothing to resolve"}
	case (parts[0] == "httproute" || parts[0] == "grpcroute") && n >= 4 && isDigits(parts[n-1]):
		return Unresolved{"route_rule", "the name of " + map[string]string{"httproute": "an HTTPRoute", "grpcroute": "a GRPCRoute"}[parts[0]] +
			" rule, which names the route, not its backend: publish the route mapping to this namespace " +
			"(the injector's INJECTOR_ROUTE_MAPPING_NAMESPACES, chart value kongNamespaces) or map it with a KongServiceMapping entry in the extension file"}
	case parts[0] == "http" && strings.Contains(kong, ".cp"):
		return Unresolved{"konnect", "a Konnect hybrid data plane's name, which names no Kubernetes Service: map it with a KongServiceMapping entry in the extension file"}
	}
	return Unresolved{"no_rule", "fits none of the Kong Ingress Controller's naming rules: map it with a KongServiceMapping entry in the extension file, " +
		"or set SIDECAR_KONG_ADMIN_URL so that the Admin API's k8s-* tags resolve it"}
}
