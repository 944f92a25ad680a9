package kongsim

import (
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
)

// ParseServices parses a comma-separated list of services, each in one of
// these forms, into Kong services named as the Kong Ingress Controller 3.x
// names them:
//
//	fixture                      the three services of the fixture
//	<ns>/<svc>:<port>[@<host>]   an Ingress rule: service <ns>.<svc>.<port>,
//	                             route <ns>.<svc>.<svc>.<host>.<port>, upstream
//	                             <svc>.<ns>.<port>.svc, path prefix /<svc>
//	httproute/<ns>/<name>/<rule> an HTTPRoute rule with backend Service <name>:
//	                             service and upstream httproute.<ns>.<name>.<rule>,
//	                             route httproute.<ns>.<name>.<rule>.0, path prefix /<name>
//	httproute/<ns>/<name>/<rule>=<kong service>
//	                             the same with the Kong service (and upstream) named as
//	                             given: the combined-services name KIC gives the rule,
//	                             such as httproute.<ns>.svc.<ns>.<name>.80.1
//
// An empty spec means no services. A service of the fixture keeps the fixture's targets; any other gets one
// target with an address derived from its name.
func ParseServices(spec string) ([]Service, error) {
	if strings.TrimSpace(spec) == "" {
		return nil, nil
	}
	fixture := map[string]Service{}
	for _, svc := range FixtureServices() {
		fixture[svc.Name] = svc
	}
	var out []Service
	for i, entry := range strings.Split(spec, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "fixture" {
			out = append(out, FixtureServices()...)
			continue
		}
		svc, err := parseService(entry)
		if err != nil {
			return nil, fmt.Errorf("service %d (%q): %w", i, entry, err)
		}
		if f, ok := fixture[svc.Name]; ok {
			svc = f
		}
		out = append(out, svc)
	}
	return out, nil
}

func parseService(entry string) (Service, error) {
	if rest, ok := strings.CutPrefix(entry, "httproute/"); ok {
		rest, named, hasName := strings.Cut(rest, "=")
		if hasName && strings.TrimSpace(named) == "" {
			return Service{}, fmt.Errorf("empty Kong service name after =")
		}
		parts := strings.Split(rest, "/")
		if len(parts) != 3 || parts[0] == "" || parts[1] == "" {
			return Service{}, fmt.Errorf("want httproute/<ns>/<name>/<rule>")
		}
		if _, err := strconv.Atoi(parts[2]); err != nil {
			return Service{}, fmt.Errorf("rule %q is not a number", parts[2])
		}
		ns, name, rule := parts[0], parts[1], parts[2]
		kong := "httproute." + ns + "." + name + "." + rule
		route := kong + ".0" // KIC names routes after the rule whatever the service's name
		if hasName {
			kong = named // the upstream is named after the Kong service's host, its name
		}
		return Service{
			Name:        kong,
			Route:       route,
			PathPrefix:  "/" + name,
			Upstream:    kong,
			Targets:     []Target{{Target: derivedTarget(kong)}},
			Namespace:   ns,
			ServiceName: name,
		}, nil
	}
	rest, host, _ := strings.Cut(entry, "@")
	ns, rest, ok := strings.Cut(rest, "/")
	if !ok || ns == "" {
		return Service{}, fmt.Errorf("want <ns>/<svc>:<port>[@<host>] or httproute/<ns>/<name>/<rule>")
	}
	name, port, ok := strings.Cut(rest, ":")
	if !ok || name == "" {
		return Service{}, fmt.Errorf("want <ns>/<svc>:<port>[@<host>]")
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return Service{}, fmt.Errorf("port %q is not a port number", port)
	}
	kong := ns + "." + name + "." + port
	return Service{
		Name:        kong,
		Route:       ns + "." + name + "." + name + "." + host + "." + port,
		PathPrefix:  "/" + name,
		Upstream:    name + "." + ns + "." + port + ".svc",
		Targets:     []Target{{Target: derivedTarget(kong)}},
		Namespace:   ns,
		ServiceName: name,
	}, nil
}

// derivedTarget returns a pod address for a service, stable across runs.
func derivedTarget(name string) string {
	h := fnv.New32a()
	h.Write([]byte(name))
	v := h.Sum32()
	return fmt.Sprintf("10.244.%d.%d:8080", v%4, 2+(v/4)%250)
}
