// Package kongsim simulates the Prometheus plugin of Kong 3.9 for the
// project's tests, demo and benchmarks, where Kong itself cannot run.
//
// A Simulator records proxied traffic per Kong service and route, either
// from real HTTP requests on its proxy handler or from Record calls, and
// renders the /metrics body as Kong does, down to the details a parser has
// to cope with: keys sorted bytewise, a histogram's _bucket, _count and _sum
// lines in three separate runs, never-hit buckets absent, values printed as
// %.14g, label values with only \ and " escaped, and, with a stream
// listener, a second block of families that repeats # HELP and # TYPE. The
// rules are those of testdata/README.md, beside the Kong 3.9 sample they
// describe (Sample).
// Node-level values (memory, connections, timers) are constants taken from
// the fixture.
//
// WritePage renders a deterministic page for N routes with every metric
// toggle on, for scale tests.
package kongsim

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Response sources, the values of the source label of
// kong_http_requests_total.
const (
	// SourceService marks a response that came from the upstream service.
	SourceService = "service"
	// SourceKong marks a response Kong generated itself, such as a 401 from
	// an authentication plugin; Kong records no upstream latency for it.
	SourceKong = "kong"
)

// Health states of an upstream target, as kong_upstream_target_health
// labels them.
const (
	HealthChecksOff = "healthchecks_off"
	Healthy         = "healthy"
	Unhealthy       = "unhealthy"
	DNSError        = "dns_error"
)

// healthStates lists the states in the order Kong sets them; the output
// order comes from sorting anyway.
var healthStates = []string{HealthChecksOff, Healthy, Unhealthy, DNSError}

// Default node identity, as in the fixture (invented there too).
const (
	DefaultNodeID  = "bdd640fb-0667-4ad1-9c80-317fa3b1799d"
	DefaultVersion = "3.9.1"
)

// Toggles are the Prometheus plugin's per-service metric switches. Their
// zero value turns every per-service family off, as Kong's plugin defaults
// do; the fixture and AllToggles have them all on.
type Toggles struct {
	StatusCode     bool // status_code_metrics: kong_http_requests_total
	Latency        bool // latency_metrics: the three latency histograms
	Bandwidth      bool // bandwidth_metrics: kong_bandwidth_bytes
	UpstreamHealth bool // upstream_health_metrics: kong_upstream_target_health
}

// AllToggles turns every per-service family on.
var AllToggles = Toggles{StatusCode: true, Latency: true, Bandwidth: true, UpstreamHealth: true}

// Target is one target of a Kong upstream.
type Target struct {
	// Target is the target as configured, such as "10.244.1.23:8080".
	Target string
	// Address is the resolved ip:port; empty means the same as Target.
	// Kong leaves it empty when the state is dns_error.
	Address string
	// Health is one of the Health* states; empty means healthchecks_off,
	// the state of every target of a Kong Ingress Controller upstream
	// without health checks.
	Health string
}

// Service is one Kong service with its single route, as the Kong Ingress
// Controller creates them.
type Service struct {
	// Name is the Kong service name, such as "kong.command.80".
	Name string
	// Route is the Kong route name, such as
	// "kong.command.command.api.example.com.80".
	Route string
	// Workspace is the workspace label; empty means "default".
	Workspace string
	// PathPrefix routes proxy requests whose path starts with it to this
	// service, as a Kong prefix path does (no segment boundary). Empty means
	// the proxy handler never routes to it.
	PathPrefix string
	// Upstream is the Kong upstream name, such as "command.kong.80.svc".
	Upstream string
	// Targets are the upstream's targets.
	Targets []Target
	// Namespace and ServiceName name the Kubernetes Service the Kong service
	// was generated for. Kong does not expose them; they are here so tests
	// and benchmarks can select services the way the sidecar's users do.
	Namespace   string
	ServiceName string
	// Kind is the k8s-kind tag the Admin API reports (KIC tags a rule with
	// several backends with its HTTPRoute); empty means Service.
	Kind string
}

// Config configures a Simulator.
type Config struct {
	// NodeID and Version label kong_node_info and the node-level families;
	// empty means DefaultNodeID and DefaultVersion.
	NodeID  string
	Version string
	// Workers is the number of nginx workers, one
	// kong_memory_workers_lua_vms_bytes line each; 0 means 2.
	Workers int
	// Services are the configured Kong services.
	Services []Service
	// Toggles selects the per-service families.
	Toggles Toggles
	// StreamListener makes /metrics append the stream subsystem's block of
	// families, as Kong does when a stream listener is configured.
	StreamListener bool
	// KongLatency is the Kong latency recorded for each request served by
	// the proxy handler; it is added to the request latency, not slept.
	KongLatency time.Duration
	// Sleep waits out the command service's sleep: d, or until ctx ends,
	// when it returns ctx's error. nil means a real timer. Tests pass one
	// that returns at once or blocks until told, so that what they check
	// never depends on how busy the machine is.
	Sleep func(ctx context.Context, d time.Duration) error
}

// DefaultConfig returns the configuration of the tutorial: the command
// service of the fixture, every toggle on, and a Kong latency of 1ms.
func DefaultConfig() Config {
	return Config{
		Services:    FixtureServices()[:1],
		Toggles:     AllToggles,
		KongLatency: time.Millisecond,
	}
}

// FixtureServices returns the three Kong services of
// kong-3.9-metrics.prom, with their upstreams and targets.
func FixtureServices() []Service {
	return []Service{{
		Name:        "kong.command.80",
		Route:       "kong.command.command.api.example.com.80",
		PathPrefix:  "/command",
		Upstream:    "command.kong.80.svc",
		Targets:     []Target{{Target: "10.244.1.23:8080"}, {Target: "10.244.2.41:8080"}},
		Namespace:   "kong",
		ServiceName: "command",
	}, {
		// An HTTPRoute's Kong service and upstream are named after the
		// route, not the backend Service.
		Name:        "httproute.default.echo.0",
		Route:       "httproute.default.echo.0.0",
		PathPrefix:  "/echo",
		Upstream:    "httproute.default.echo.0",
		Targets:     []Target{{Target: "10.244.1.57:1027"}},
		Namespace:   "default",
		ServiceName: "echo",
	}, {
		Name:        "default.billing.8080",
		Route:       "default.billing.billing..8080",
		PathPrefix:  "/billing",
		Upstream:    "billing.default.8080.svc",
		Targets:     []Target{{Target: "10.244.2.19:8080"}},
		Namespace:   "default",
		ServiceName: "billing",
	}}
}

// Request is one proxied request to record, with the numbers Kong's log
// serializer hands to the Prometheus plugin. Latencies are whole
// milliseconds, as Kong records them; a negative one is not recorded.
type Request struct {
	Service   string
	Route     string
	Workspace string // empty means "default"
	Consumer  string // empty for anonymous requests, as with per_consumer off
	Code      int
	// Source is SourceService or SourceKong; empty means SourceService.
	Source string
	// RequestMs is the total latency, UpstreamMs the time waiting for the
	// upstream (ignored when Source is SourceKong, since Kong has none then),
	// KongMs the time spent in Kong and its plugins.
	RequestMs  int
	UpstreamMs int
	KongMs     int
	// BytesIn and BytesOut are the request and response sizes on the wire;
	// Kong records only sizes above 0.
	BytesIn  int
	BytesOut int
}

// Simulator stands in for one Kong node with the Prometheus plugin. All its
// methods are safe to call concurrently.
type Simulator struct {
	cfg      Config
	byPrefix []*Service // services with a path prefix, longest prefix first

	mu      sync.Mutex // Protects traffic.
	traffic traffic

	// metricsFetches counts the GET /metrics the status listener served,
	// for tests that count what scrapers cost Kong (StatsHandler).
	metricsFetches atomic.Uint64
}

// traffic is what the plugin's log phase has recorded. Each series keeps
// its encoded label string from its first observation on, as Kong caches
// full metric names, so a scrape copies values but encodes nothing.
type traffic struct {
	kongLatency     map[latencyKey]*histogramSeries
	upstreamLatency map[latencyKey]*histogramSeries
	requestLatency  map[latencyKey]*histogramSeries
	status          map[statusKey]*counterSeries
	bandwidth       map[bandwidthKey]*counterSeries
}

type latencyKey struct{ service, route, workspace string }

type statusKey struct{ service, route, code, source, workspace, consumer string }

type bandwidthKey struct{ service, route, direction, workspace, consumer string }

type counterSeries struct {
	labels string
	value  float64
}

type histogramSeries struct {
	labels string
	hist   *histogram
}

// New returns a Simulator for cfg, which it validates and completes with
// defaults. It keeps its own copy of cfg.
func New(cfg Config) (*Simulator, error) {
	cfg, err := completeConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kong simulator configuration: %w", err)
	}
	s := &Simulator{cfg: cfg, traffic: traffic{
		kongLatency:     map[latencyKey]*histogramSeries{},
		upstreamLatency: map[latencyKey]*histogramSeries{},
		requestLatency:  map[latencyKey]*histogramSeries{},
		status:          map[statusKey]*counterSeries{},
		bandwidth:       map[bandwidthKey]*counterSeries{},
	}}
	for i := range s.cfg.Services {
		if s.cfg.Services[i].PathPrefix != "" {
			s.byPrefix = append(s.byPrefix, &s.cfg.Services[i])
		}
	}
	// Longest prefix first, so the most specific route wins.
	slices.SortStableFunc(s.byPrefix, func(a, b *Service) int {
		return cmp.Compare(len(b.PathPrefix), len(a.PathPrefix))
	})
	return s, nil
}

func completeConfig(cfg Config) (Config, error) {
	if cfg.NodeID == "" {
		cfg.NodeID = DefaultNodeID
	}
	if cfg.Version == "" {
		cfg.Version = DefaultVersion
	}
	switch {
	case cfg.Workers == 0:
		cfg.Workers = 2
	case cfg.Workers < 0:
		return cfg, fmt.Errorf("workers is %d, it cannot be negative", cfg.Workers)
	}
	if cfg.KongLatency < 0 {
		return cfg, fmt.Errorf("kong latency is %s, it cannot be negative", cfg.KongLatency)
	}
	services := make([]Service, len(cfg.Services))
	names := map[string]bool{}
	prefixes := map[string]string{}
	for i, svc := range cfg.Services {
		svc.Targets = append([]Target(nil), svc.Targets...)
		if err := completeService(&svc); err != nil {
			return cfg, fmt.Errorf("service %d (%q): %w", i, svc.Name, err)
		}
		if names[svc.Name] {
			return cfg, fmt.Errorf("service %d: name %q is used twice", i, svc.Name)
		}
		names[svc.Name] = true
		if other, ok := prefixes[svc.PathPrefix]; ok && svc.PathPrefix != "" {
			return cfg, fmt.Errorf("service %d (%q): path prefix %q is already routed to %q", i, svc.Name, svc.PathPrefix, other)
		}
		prefixes[svc.PathPrefix] = svc.Name
		services[i] = svc
	}
	cfg.Services = services
	return cfg, nil
}

func completeService(svc *Service) error {
	switch {
	case svc.Name == "":
		return errors.New("the name is empty")
	case svc.Route == "":
		return errors.New("the route name is empty")
	case svc.PathPrefix != "" && !strings.HasPrefix(svc.PathPrefix, "/"):
		return fmt.Errorf("path prefix %q does not start with \"/\"", svc.PathPrefix)
	case len(svc.Targets) > 0 && svc.Upstream == "":
		return errors.New("it has targets but no upstream name")
	}
	if svc.Workspace == "" {
		svc.Workspace = "default"
	}
	for j := range svc.Targets {
		t := &svc.Targets[j]
		if t.Target == "" {
			return fmt.Errorf("target %d is empty", j)
		}
		if t.Health == "" {
			t.Health = HealthChecksOff
		}
		switch t.Health {
		case HealthChecksOff, Healthy, Unhealthy:
			if t.Address == "" {
				t.Address = t.Target
			}
		case DNSError:
			// Kong has no address for a target it could not resolve.
		default:
			return fmt.Errorf("target %d (%q): health %q is not one of %s", j, t.Target, t.Health, strings.Join(healthStates, ", "))
		}
	}
	return nil
}

// Services returns a copy of the configured services, defaults filled in.
func (s *Simulator) Services() []Service {
	out := make([]Service, len(s.cfg.Services))
	for i, svc := range s.cfg.Services {
		svc.Targets = append([]Target(nil), svc.Targets...)
		out[i] = svc
	}
	return out
}

// Record records one request as Kong's Prometheus plugin logs it. The
// service need not be configured: Kong records whatever service name the
// request was routed to.
func (s *Simulator) Record(r Request) {
	s.record(r, 1)
}

// record records n identical requests at once.
func (s *Simulator) record(r Request, n float64) {
	if r.Workspace == "" {
		r.Workspace = "default"
	}
	if r.Source == "" {
		r.Source = SourceService
	}
	t := s.cfg.Toggles
	s.mu.Lock()
	defer s.mu.Unlock()
	if t.Bandwidth {
		for _, b := range []struct {
			direction string
			size      int
		}{{"ingress", r.BytesIn}, {"egress", r.BytesOut}} {
			if b.size > 0 {
				k := bandwidthKey{r.Service, r.Route, b.direction, r.Workspace, r.Consumer}
				c := s.traffic.bandwidth[k]
				if c == nil {
					c = &counterSeries{labels: encodeLabels(bandwidthLabels, k.service, k.route, k.direction, k.workspace, k.consumer)}
					s.traffic.bandwidth[k] = c
				}
				c.value += float64(b.size) * n
			}
		}
	}
	if t.StatusCode {
		k := statusKey{r.Service, r.Route, strconv.Itoa(r.Code), r.Source, r.Workspace, r.Consumer}
		c := s.traffic.status[k]
		if c == nil {
			c = &counterSeries{labels: encodeLabels(statusLabels, k.service, k.route, k.code, k.source, k.workspace, k.consumer)}
			s.traffic.status[k] = c
		}
		c.value += n
	}
	if t.Latency {
		k := latencyKey{r.Service, r.Route, r.Workspace}
		observe(s.traffic.requestLatency, k, upstreamLatencyBuckets, r.RequestMs, n)
		if r.Source != SourceKong {
			observe(s.traffic.upstreamLatency, k, upstreamLatencyBuckets, r.UpstreamMs, n)
		}
		observe(s.traffic.kongLatency, k, kongLatencyBuckets, r.KongMs, n)
	}
}

func observe(m map[latencyKey]*histogramSeries, k latencyKey, bounds []float64, ms int, n float64) {
	if ms < 0 {
		return
	}
	h := m[k]
	if h == nil {
		h = &histogramSeries{
			labels: encodeLabels(latencyLabels, k.service, k.route, k.workspace),
			hist:   newHistogram(bounds),
		}
		m[k] = h
	}
	h.hist.observe(float64(ms), n)
}
