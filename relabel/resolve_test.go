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
		// HTTPRoute with one backend under combined services.
		{"httproute.kong.svc.kong.command.80", Service{"kong", "command"}},
		{"httproute.default.svc.other-ns.echo.1027", Service{"other-ns", "echo"}},
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
