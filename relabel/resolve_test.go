package relabel

import (
	"strings"
	"testing"
)

func TestResolveServiceName(t *testing.T) {
	tests := []struct {
		kong string
		want Service // zero: unresolved
	}{
		// KIC 2.8+ and 3.x Ingress: <ns>.<svc>.<port>, number or name.
		{"kong.command.80", Service{"kong", "command"}},
		{"default.billing.8080", Service{"default", "billing"}},
		{"default.billing.http", Service{"default", "billing"}},
		// Older KIC.
		{"default.billing.pnum-8080", Service{"default", "billing"}},
		{"default.billing.pname-http", Service{"default", "billing"}},
		// HTTPRoute with one backend under combined services. KIC v3.5.13
		// and Kong Operator v2.2.0,
		// internal/dataplane/translator/subtranslator/httproute.go,
		// getKongServiceNameByBackendRefs:
		//   backendFullName := backendNamespace + "." + string(backendRef.Name)
		//   backendFullName = backendFullName + "." + strconv.Itoa(int(*backendRef.Port))   (if Port != nil)
		//   backendFullName = backendFullName + "." + strconv.Itoa(int(*backendRef.Weight)) (if Weight != nil)
		//   name := fmt.Sprintf("httproute.%s.svc.%s", m.parentRoute.Namespace, strings.Join(backendNames, "_"))
		{"httproute.kong.svc.kong.command.80", Service{"kong", "command"}},
		{"httproute.default.svc.other-ns.echo.1027", Service{"other-ns", "echo"}},
		// The same with the weight, which the Gateway API CRD defaults to 1
		// (+kubebuilder:default=1), so the API server stores it: the
		// tutorial's route under Kong Operator 2.1 and later.
		{"httproute.kong.svc.kong.command.80.1", Service{"kong", "command"}},
		{"httproute.kong.svc.kong.command.80.0", Service{"kong", "command"}},
		{"httproute.default.svc.other-ns.echo.1027.1000000", Service{"other-ns", "echo"}},
		{"httproute.kong.svc.kong.command.80.1000001", Service{}},
		{"httproute.kong.svc.kong.command.80.01", Service{}},
		{"httproute.kong.svc.kong.command.80.-1", Service{}},
		{"httproute.kong.svc.kong.command.http.1", Service{}}, // a backendRef's port is a number
		{"httproute.kong.svc.kong.command.80.1.2", Service{}},
		{"httproute.Kong.svc.kong.command.80.1", Service{}},
		// Several backends, sorted and joined with '_', or trimmed past 511
		// characters to the first backend and _combined.<sha256>: no single
		// Service (IsMultiBackendName).
		{"httproute.kong.svc.kong.command.80.1_kong.other.80.1", Service{}},
		{"httproute.kong.svc.kong.command.80.1_combined.0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", Service{}},
		// A rule without backends: fmt.Sprintf("httproute.%s.svc._", ns).
		{"httproute.kong.svc._", Service{}},
		// HTTPRoute rules say nothing of their backend.
		{"httproute.default.echo.0", Service{}},
		{"httproute.kong.command.0", Service{}},
		// Not Kubernetes names.
		{"Kong.command.80", Service{}},
		{"kong.Command.80", Service{}},
		{"kong.1command.80", Service{}},
		{"kong.command-.80", Service{}},
		{"kong.command.0", Service{}},
		{"kong.command.65536", Service{}},
		{"kong.command.080", Service{}},
		{"kong.command.", Service{}},
		{"kong..80", Service{}},
		{".command.80", Service{}},
		{"kong.command", Service{}},
		{"kong.command.80.extra", Service{}},
		{"kong.com\"mand.80", Service{}},
		{"kong.command.80\n", Service{}},
		{strings.Repeat("a", 64) + ".command.80", Service{}},
		{"kong." + strings.Repeat("a", 64) + ".80", Service{}},
		{"", Service{}},
		{"httproute.kong.svc.kong.command", Service{}},
		{"httproute.kong.route.kong.command.80", Service{}},
	}
	for _, tc := range tests {
		got, ok := ResolveServiceName(tc.kong)
		if ok != (tc.want != Service{}) || got != tc.want {
			t.Errorf("ResolveServiceName(%q) = %v, %v; want %v", tc.kong, got, ok, tc.want)
		}
	}
}

func TestResolveUpstreamName(t *testing.T) {
	tests := []struct {
		kong string
		want Service
	}{
		{"command.kong.80.svc", Service{"kong", "command"}},
		{"billing.default.8080.svc", Service{"default", "billing"}},
		{"billing.default.http.svc", Service{"default", "billing"}},
		{"httproute.default.echo.0", Service{}},
		// An HTTPRoute's upstream is named after its Kong service's host,
		// which is the Kong service's name (KIC v3.5.13,
		// internal/dataplane/translator/translate_upstreams.go:
		// "name := *service.Host").
		{"httproute.kong.svc.kong.command.80.1", Service{"kong", "command"}},
		{"httproute.kong.svc.kong.command.80", Service{"kong", "command"}},
		{"httproute.kong.svc.kong.command.80.1_kong.other.80.1", Service{}},
		{"command.kong.80", Service{}},
		{"command.kong.80.svc.cluster", Service{}},
		{"Command.kong.80.svc", Service{}},
		{"command.kong.0.svc", Service{}},
	}
	for _, tc := range tests {
		got, ok := ResolveUpstreamName(tc.kong)
		if ok != (tc.want != Service{}) || got != tc.want {
			t.Errorf("ResolveUpstreamName(%q) = %v, %v; want %v", tc.kong, got, ok, tc.want)
		}
	}
}

func TestIsMultiBackendName(t *testing.T) {
	tests := []struct {
		kong string
		want bool
	}{
		{"httproute.kong.svc.kong.command.80.1_kong.other.80.1", true},
		{"httproute.kong.svc.a.b.80_a.c.80", true},
		{"httproute.kong.svc.kong.command.80.1_combined.0123456789abcdef", true},
		{"httproute.kong.svc.kong.command.80.1", false},
		{"httproute.kong.svc._", false}, // no backends at all
		{"httproute.kong.command.0", false},
		{"httproute.Kong.svc.a.b.80_a.c.80", false},
		{"kong.command_x.80", false},
		{"grpcroute.kong.svc.a.b.80_a.c.80", false}, // KIC names GRPCRoutes per rule, never by backends
		{"", false},
	}
	for _, tc := range tests {
		if got := IsMultiBackendName(tc.kong); got != tc.want {
			t.Errorf("IsMultiBackendName(%q) = %v, want %v", tc.kong, got, tc.want)
		}
	}
}

func TestExplainUnresolved(t *testing.T) {
	tests := []struct{ kong, reason, fixHas string }{
		// KIC v3.5.13 subtranslator/httproute.go, combined services off:
		// fmt.Sprintf("httproute.%s.%s.%d", route.Namespace, route.Name, rulesMeta[0].RuleNumber)
		{"httproute.kong.command.0", "route_rule", "INJECTOR_ROUTE_MAPPING_NAMESPACES"},
		// KIC v3.5.13 translate_utils.go: fmt.Sprintf("%s.%d", getUniqueKongServiceNameForObject(route), ruleNumber),
		// and grpcroute_atc.go KongServiceNameFromSplitGRPCRouteMatch: grpcroute.<ns>.<name>.<host|_>.<rule>.
		{"grpcroute.default.grpcbin.0", "route_rule", "GRPCRoute"},
		{"grpcroute.default.grpcbin.example.com.1", "route_rule", "GRPCRoute"},
		{"httproute.kong.svc._", "no_backend", "without backends"},
		// Kong Operator v2.2.0 controller/hybridgateway/namegen/name.go.
		{"http.kong-command-80.1.cp1a2b3c4d.5e6f7a8b", "konnect", "KongServiceMapping"},
		{"my-service", "no_rule", "SIDECAR_KONG_ADMIN_URL"},
		{"kong.Command.80", "no_rule", "KongServiceMapping"},
	}
	for _, tc := range tests {
		got := ExplainUnresolved(tc.kong)
		if got.Reason != tc.reason || !strings.Contains(got.Fix, tc.fixHas) {
			t.Errorf("ExplainUnresolved(%q) = %+v, want reason %s and a fix naming %q", tc.kong, got, tc.reason, tc.fixHas)
		}
	}
}
