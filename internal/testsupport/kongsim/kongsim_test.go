package kongsim

import (
	"strings"
	"testing"
)

func TestNewRejects(t *testing.T) {
	ok := FixtureServices()[0]
	with := func(change func(*Service)) []Service {
		svc := ok
		svc.Targets = append([]Target(nil), ok.Targets...)
		change(&svc)
		return []Service{svc}
	}
	for _, tc := range []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"negative workers", Config{Workers: -1}, "workers is -1"},
		{"negative kong latency", Config{KongLatency: -1}, "kong latency is -1ns"},
		{"no name", Config{Services: with(func(s *Service) { s.Name = "" })}, `service 0 (""): the name is empty`},
		{"no route", Config{Services: with(func(s *Service) { s.Route = "" })}, "the route name is empty"},
		{"relative prefix", Config{Services: with(func(s *Service) { s.PathPrefix = "command" })}, `path prefix "command" does not start with "/"`},
		{"targets without upstream", Config{Services: with(func(s *Service) { s.Upstream = "" })}, "targets but no upstream"},
		{"empty target", Config{Services: with(func(s *Service) { s.Targets[0].Target = "" })}, "target 0 is empty"},
		{"unknown health", Config{Services: with(func(s *Service) { s.Targets[1].Health = "sick" })}, `target 1 ("10.244.2.41:8080"): health "sick" is not one of`},
		{"name twice", Config{Services: []Service{ok, ok}}, `service 1: name "kong.command.80" is used twice`},
		{"prefix twice", Config{Services: append(with(func(s *Service) {}), with(func(s *Service) { s.Name = "other" })...)},
			`service 1 ("other"): path prefix "/command" is already routed to "kong.command.80"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("got error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestNewDefaults(t *testing.T) {
	s, err := New(Config{Services: []Service{{
		Name: "a", Route: "r", Upstream: "u",
		Targets: []Target{{Target: "10.0.0.1:80"}, {Target: "db.example:5432", Health: DNSError}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	svc := s.Services()[0]
	if svc.Workspace != "default" {
		t.Errorf("workspace %q, want default", svc.Workspace)
	}
	if got := svc.Targets[0]; got.Address != "10.0.0.1:80" || got.Health != HealthChecksOff {
		t.Errorf("target %+v, want the address of the target and healthchecks_off", got)
	}
	if got := svc.Targets[1]; got.Address != "" {
		t.Errorf("a dns_error target has address %q, Kong has none", got.Address)
	}
	if s.cfg.Workers != 2 || s.cfg.NodeID != DefaultNodeID || s.cfg.Version != DefaultVersion {
		t.Errorf("node defaults not applied: %+v", s.cfg)
	}
}

func TestParseServices(t *testing.T) {
	for _, tc := range []struct {
		spec      string
		wantNames []string
		wantErr   string
	}{
		{"", nil, ""},
		{"fixture", []string{"kong.command.80", "httproute.default.echo.0", "default.billing.8080"}, ""},
		{"kong/command:80@api.example.com", []string{"kong.command.80"}, ""},
		{"shop/cart:8080, httproute/shop/web/1", []string{"shop.cart.8080", "httproute.shop.web.1"}, ""},
		{"cart:80", nil, `service 0 ("cart:80"): want <ns>/<svc>:<port>`},
		{"shop/cart", nil, "want <ns>/<svc>:<port>[@<host>]"},
		{"shop/cart:http", nil, `port "http" is not a port number`},
		{"httproute/shop/web", nil, "want httproute/<ns>/<name>/<rule>"},
		{"httproute/shop/web/x", nil, `rule "x" is not a number`},
		// The tutorial's route under Kong Operator 2.1+ (combined services).
		{"httproute/kong/command/0=httproute.kong.svc.kong.command.80.1", []string{"httproute.kong.svc.kong.command.80.1"}, ""},
		{"httproute/kong/command/0=", nil, "empty Kong service name"},
	} {
		t.Run(tc.spec, func(t *testing.T) {
			svcs, err := ParseServices(tc.spec)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, s := range svcs {
				names = append(names, s.Name)
			}
			if strings.Join(names, " ") != strings.Join(tc.wantNames, " ") {
				t.Errorf("services %v, want %v", names, tc.wantNames)
			}
			if _, err := New(Config{Services: svcs}); err != nil {
				t.Errorf("the parsed services are invalid: %v", err)
			}
		})
	}
}

func TestParseServicesNaming(t *testing.T) {
	svcs, err := ParseServices("shop/cart:8080@cart.example.com,shop/orders:80,httproute/shop/web/1")
	if err != nil {
		t.Fatal(err)
	}
	want := []Service{{
		Name: "shop.cart.8080", Route: "shop.cart.cart.cart.example.com.8080", PathPrefix: "/cart",
		Upstream: "cart.shop.8080.svc", Namespace: "shop", ServiceName: "cart",
	}, {
		Name: "shop.orders.80", Route: "shop.orders.orders..80", PathPrefix: "/orders",
		Upstream: "orders.shop.80.svc", Namespace: "shop", ServiceName: "orders",
	}, {
		Name: "httproute.shop.web.1", Route: "httproute.shop.web.1.0", PathPrefix: "/web",
		Upstream: "httproute.shop.web.1", Namespace: "shop", ServiceName: "web",
	}}
	for i, w := range want {
		got := svcs[i]
		if len(got.Targets) != 1 || !strings.HasPrefix(got.Targets[0].Target, "10.244.") {
			t.Errorf("service %q has targets %v, want one pod address", got.Name, got.Targets)
		}
		got.Targets = nil
		if got.Name != w.Name || got.Route != w.Route || got.PathPrefix != w.PathPrefix ||
			got.Upstream != w.Upstream || got.Namespace != w.Namespace || got.ServiceName != w.ServiceName {
			t.Errorf("got %+v\nwant %+v", got, w)
		}
	}
	// The fixture's services keep the fixture's targets.
	cmd, err := ParseServices("kong/command:80@api.example.com")
	if err != nil {
		t.Fatal(err)
	}
	if len(cmd[0].Targets) != 2 || cmd[0].Targets[0].Target != "10.244.1.23:8080" {
		t.Errorf("command targets %v, want the fixture's", cmd[0].Targets)
	}
}
