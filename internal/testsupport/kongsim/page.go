package kongsim

import (
	"fmt"
	"io"
	"math"
	"math/rand/v2"
)

// pageSeed seeds the generated page. Every route draws from streams of its
// own, so route i is the same in pages of every size.
const pageSeed = 0x4b6f6e67 // "Kong"

// Streams of the random source, one pair per route.
const (
	streamService = iota
	streamTraffic
)

// samplesPerCode is how many distinct latencies the generator draws for one
// status code of one route; the requests are spread over them.
const samplesPerCode = 24

// PageServices returns the services of the N-route page: one Kong service
// with one route per Kubernetes Service svc-<i> in namespace ns<i%16>,
// named as the Kong Ingress Controller 3.x names them. Three in four come
// from an Ingress (service <ns>.svc-<i>.<port>, upstream
// svc-<i>.<ns>.<port>.svc); every fourth from an HTTPRoute (service
// httproute.<ns>.route-<i>.<rule>, whose upstream has the same name, so only
// ServiceName and Namespace tell the backend). The result is deterministic.
func PageServices(routes int) []Service {
	svcs := make([]Service, 0, max(routes, 0))
	for i := range routes {
		svcs = append(svcs, pageService(i))
	}
	return svcs
}

func pageService(i int) Service {
	rng := rand.New(rand.NewPCG(pageSeed+streamService, uint64(i)))
	ns := fmt.Sprintf("ns%d", i%16)
	name := fmt.Sprintf("svc-%d", i)
	port := pick(rng, []int{80, 8080, 3000, 443}, []float64{0.6, 0.25, 0.1, 0.05})
	targetPort := pick(rng, []int{8080, port, 9000}, []float64{0.5, 0.4, 0.1})
	svc := Service{Namespace: ns, ServiceName: name}
	if i%4 == 3 {
		route := fmt.Sprintf("route-%d", i)
		rule := pick(rng, []int{0, 1}, []float64{0.8, 0.2})
		svc.Name = fmt.Sprintf("httproute.%s.%s.%d", ns, route, rule)
		svc.Route = fmt.Sprintf("%s.0", svc.Name)
		svc.Upstream = svc.Name
		svc.PathPrefix = fmt.Sprintf("/%s/%s", ns, route)
	} else {
		host := fmt.Sprintf("%s.%s.apps.kube.example.com", name, ns)
		svc.Name = fmt.Sprintf("%s.%s.%d", ns, name, port)
		svc.Route = fmt.Sprintf("%s.%s.%s.%s.%d", ns, name, name, host, port)
		svc.Upstream = fmt.Sprintf("%s.%s.%d.svc", name, ns, port)
		svc.PathPrefix = fmt.Sprintf("/%s/%s", ns, name)
	}
	targets := pick(rng, []int{1, 2, 3}, []float64{0.66, 0.28, 0.06})
	for range targets {
		t := Target{
			Target: fmt.Sprintf("10.244.%d.%d:%d", rng.IntN(16), 2+rng.IntN(252), targetPort),
			Health: pick(rng, []string{HealthChecksOff, Healthy, Unhealthy}, []float64{0.9, 0.08, 0.02}),
		}
		svc.Targets = append(svc.Targets, t)
	}
	return svc
}

// NewPage returns a Simulator for cfg whose services are cfg's followed by
// those of PageServices(routes), with deterministic traffic recorded for
// the generated ones: 20 to 3,000 requests each, mostly 200s, some 4xx and
// 5xx, a share of 401s answered by Kong itself, and latency profiles from
// fast to slow enough that the lowest buckets were never hit.
func NewPage(cfg Config, routes int) (*Simulator, error) {
	generated := PageServices(routes)
	cfg.Services = append(append([]Service(nil), cfg.Services...), generated...)
	s, err := New(cfg)
	if err != nil {
		return nil, fmt.Errorf("generating a page of %d routes: %w", routes, err)
	}
	for i, svc := range generated {
		s.recordPageTraffic(i, svc)
	}
	return s, nil
}

// WritePage writes the /metrics body of a Kong node with the N-route page's
// services and traffic and every toggle on. About 61 lines and 9.4 kB per
// route: 6k lines / 0.9 MB at 100 routes, 61k / 9.4 MB at 1,000, 609k / 94
// MB at 10,000. It streams the body in pieces of 100 lines; what it holds is
// the recorded state, about a third of the body's size.
func WritePage(w io.Writer, routes int) error {
	s, err := NewPage(Config{Toggles: AllToggles}, routes)
	if err != nil {
		return err
	}
	return s.WriteMetrics(w)
}

// statusShare is a status code a route answers, with its share of requests.
type statusShare struct {
	code   int
	source string
	share  float64
}

// recordPageTraffic records the generated traffic of route i.
func (s *Simulator) recordPageTraffic(i int, svc Service) {
	rng := rand.New(rand.NewPCG(pageSeed+streamTraffic, uint64(i)))
	requests := 20 + rng.IntN(2981)
	// Median upstream latency in ms: fast, medium or slow.
	var median float64
	switch p := rng.Float64(); {
	case p < 0.55:
		median = float64(2 + rng.IntN(16))
	case p < 0.85:
		median = float64(30 + rng.IntN(91))
	default:
		median = float64(150 + rng.IntN(451))
	}
	codes := []statusShare{{200, SourceService, 1}}
	for _, c := range []struct {
		statusShare
		chance float64
	}{
		{statusShare{404, SourceService, 0.02}, 0.55},
		{statusShare{500, SourceService, 0.01}, 0.3},
		{statusShare{401, SourceKong, 0.03}, 0.25},
		{statusShare{201, SourceService, 0.05}, 0.2},
		{statusShare{503, SourceService, 0.01}, 0.1},
	} {
		if rng.Float64() < c.chance {
			codes = append(codes, c.statusShare)
			codes[0].share -= c.share
		}
	}
	for _, c := range codes {
		n := max(1, int(math.Round(c.share*float64(requests))))
		k := min(n, samplesPerCode)
		for j := range k {
			// Spread n requests over k samples as evenly as integers allow.
			weight := n / k
			if j < n%k {
				weight++
			}
			s.record(pageRequest(rng, svc, c, median), float64(weight))
		}
	}
}

// pageRequest draws one generated request of svc.
func pageRequest(rng *rand.Rand, svc Service, c statusShare, median float64) Request {
	kongMs := int(math.Exp(0.9 * rng.NormFloat64()))
	r := Request{
		Service:   svc.Name,
		Route:     svc.Route,
		Workspace: svc.Workspace,
		Code:      c.code,
		Source:    c.source,
		KongMs:    kongMs,
		BytesIn:   250 + rng.IntN(600),
		BytesOut:  300 + rng.IntN(8000),
	}
	if c.source == SourceKong {
		r.RequestMs = kongMs + rng.IntN(2)
		r.UpstreamMs = -1
		r.BytesOut = 150 + rng.IntN(100)
		return r
	}
	r.UpstreamMs = int(median * math.Exp(0.6*rng.NormFloat64()))
	r.RequestMs = r.UpstreamMs + kongMs + rng.IntN(2)
	return r
}

// pick returns one of values, chosen with the given weights.
func pick[T any](rng *rand.Rand, values []T, weights []float64) T {
	x := rng.Float64()
	for i, w := range weights {
		if x < w {
			return values[i]
		}
		x -= w
	}
	return values[len(values)-1]
}
