package kongsim

import (
	"fmt"
	"io"
	"strconv"
)

// HELP texts of Kong 3.9's families, word for word.
const (
	helpBandwidth       = "Total bandwidth (ingress/egress) throughput in bytes"
	helpDatastore       = "Datastore reachable from Kong, 0 is unreachable"
	helpRequests        = "HTTP status codes per consumer/service/route in Kong"
	helpKongLatency     = "Latency added by Kong and enabled plugins for each service/route in Kong"
	helpShmBytes        = "Allocated slabs in bytes in a shared_dict"
	helpShmTotalBytes   = "Total capacity in bytes of a shared_dict"
	helpWorkerVMs       = "Allocated bytes in worker Lua VM"
	helpConnections     = "Number of connections by subsystem"
	helpMetricErrors    = "Number of nginx-lua-prometheus errors"
	helpNginxRequests   = "Number of requests total"
	helpTimers          = "Number of nginx timers"
	helpNodeInfo        = "Kong Node metadata information"
	helpRequestLatency  = "Total latency incurred during requests for each service/route in Kong"
	helpUpstreamLatency = "Latency added by upstream response for each service/route in Kong"
	helpTargetHealth    = "Health status of targets of upstream. States = healthchecks_off|healthy|unhealthy|dns_error, value is 1 when state is populated."
)

// Label names of each family, in Kong's order.
var (
	latencyLabels    = []string{"service", "route", "workspace"}
	statusLabels     = []string{"service", "route", "code", "source", "workspace", "consumer"}
	bandwidthLabels  = []string{"service", "route", "direction", "workspace", "consumer"}
	healthLabels     = []string{"upstream", "target", "address", "state", "subsystem"}
	shmLabels        = []string{"node_id", "shared_dict", "kong_subsystem"}
	workerVMLabels   = []string{"node_id", "pid", "kong_subsystem"}
	connectionLabels = []string{"node_id", "subsystem", "state"}
	nginxReqLabels   = []string{"node_id", "subsystem"}
	timerLabels      = []string{"state"}
	nodeInfoLabels   = []string{"node_id", "version"}
)

// Values of the subsystem and kong_subsystem labels.
const (
	subsystemHTTP   = "http"
	subsystemStream = "stream"
)

// Worker Lua VM sizes: the fixture's two workers, then invented ones. The
// stream subsystem's Lua VMs are separate and smaller.
const firstWorkerPID = 1331

var (
	workerVMBytesHTTP   = []float64{71824301, 69955102}
	workerVMBytesStream = []float64{28311552, 27885568}
)

// sharedDict is one lua_shared_dict of Kong's nginx template. The stream
// subsystem has the same dicts (stream_-prefixed in nginx, but Kong strips
// the prefix when it lists them).
type sharedDict struct {
	name            string
	allocated       float64 // http subsystem; invented, as in the fixture
	allocatedStream float64 // stream subsystem; invented
	capacity        float64
}

var sharedDicts = []sharedDict{
	{"kong", 45056, 40960, 5242880},
	{"kong_cluster_events", 40960, 40960, 5242880},
	{"kong_core_db_cache", 1339392, 802816, 134217728},
	{"kong_core_db_cache_miss", 94208, 86016, 12582912},
	{"kong_db_cache", 782336, 126976, 134217728},
	{"kong_db_cache_miss", 86016, 86016, 12582912},
	{"kong_healthchecks", 40960, 40960, 5242880},
	{"kong_locks", 61440, 61440, 8388608},
	{"kong_rate_limiting_counters", 86016, 86016, 12582912},
	{"kong_secrets", 40960, 40960, 5242880},
	{"prometheus_metrics", 192512, 49152, 5242880},
}

// nginxStats are the stub_status counters. nginx keeps them per process
// group, so both subsystems report the same numbers. The simulator does not
// model them: they are the fixture's.
var nginxStats = []struct {
	state string
	value float64
}{
	{"accepted", 2113},
	{"active", 7},
	{"handled", 2113},
	{"reading", 0},
	{"total", 7569},
	{"waiting", 6},
	{"writing", 1},
}

const (
	nginxTotalRequests = 7569
	timersPending      = 1
	timersRunning      = 43
)

// WriteMetrics writes the body Kong returns on GET /metrics to w, in pieces
// of 100 lines as Kong does. It renders a snapshot, so recording goes on
// while a slow writer is served.
func (s *Simulator) WriteMetrics(w io.Writer) error {
	lw := newLineWriter(w)
	writeFamilies(lw, s.httpFamilies())
	lw.flush()
	if s.cfg.StreamListener {
		writeFamilies(lw, s.streamFamilies())
		lw.flush()
	}
	if lw.err != nil {
		return fmt.Errorf("writing kong metrics: %w", lw.err)
	}
	return nil
}

// httpFamilies snapshots the http subsystem's families.
func (s *Simulator) httpFamilies() []*family {
	fams := s.nodeFamilies(subsystemHTTP, workerVMBytesHTTP)
	fams = append(fams,
		&family{name: "kong_datastore_reachable", help: helpDatastore, typ: typeGauge,
			series: []series{{value: 1}}},
		&family{name: "kong_nginx_timers", help: helpTimers, typ: typeGauge, series: []series{
			{labels: encodeLabels(timerLabels, "pending"), value: timersPending},
			{labels: encodeLabels(timerLabels, "running"), value: timersRunning},
		}},
	)
	return append(fams, s.trafficFamilies()...)
}

// streamFamilies snapshots the stream subsystem's families, which Kong
// appends to the body when a stream listener is configured. The stream
// subsystem has its own metrics dict, so families shared with http appear a
// second time with their comments; the datastore and timer families are
// only set on the http side. The simulator records no stream traffic.
func (s *Simulator) streamFamilies() []*family {
	return s.nodeFamilies(subsystemStream, workerVMBytesStream)
}

// nodeFamilies returns the families that both subsystems set on every
// scrape, for one subsystem.
func (s *Simulator) nodeFamilies(subsystem string, vmBytes []float64) []*family {
	node := s.cfg.NodeID
	shm := &family{name: "kong_memory_lua_shared_dict_bytes", help: helpShmBytes, typ: typeGauge}
	shmTotal := &family{name: "kong_memory_lua_shared_dict_total_bytes", help: helpShmTotalBytes, typ: typeGauge}
	for _, d := range sharedDicts {
		labels := encodeLabels(shmLabels, node, d.name, subsystem)
		allocated := d.allocated
		if subsystem == subsystemStream {
			allocated = d.allocatedStream
		}
		shm.series = append(shm.series, series{labels: labels, value: allocated})
		shmTotal.series = append(shmTotal.series, series{labels: labels, value: d.capacity})
	}
	vms := &family{name: "kong_memory_workers_lua_vms_bytes", help: helpWorkerVMs, typ: typeGauge}
	for i := range s.cfg.Workers {
		v := vmBytes[i%len(vmBytes)] + float64(i/len(vmBytes))*524288
		pid := strconv.Itoa(firstWorkerPID + i)
		vms.series = append(vms.series, series{labels: encodeLabels(workerVMLabels, node, pid, subsystem), value: v})
	}
	conns := &family{name: "kong_nginx_connections_total", help: helpConnections, typ: typeGauge}
	for _, st := range nginxStats {
		conns.series = append(conns.series, series{labels: encodeLabels(connectionLabels, node, subsystem, st.state), value: st.value})
	}
	fams := []*family{
		shm, shmTotal, vms, conns,
		// Kong's metrics library sets its error counter to 0 at start-up.
		{name: "kong_nginx_metric_errors_total", help: helpMetricErrors, typ: typeCounter,
			series: []series{{value: 0}}},
		{name: "kong_nginx_requests_total", help: helpNginxRequests, typ: typeGauge,
			series: []series{{labels: encodeLabels(nginxReqLabels, node, subsystem), value: nginxTotalRequests}}},
		{name: "kong_node_info", help: helpNodeInfo, typ: typeGauge,
			series: []series{{labels: encodeLabels(nodeInfoLabels, node, s.cfg.Version), value: 1}}},
	}
	if s.cfg.Toggles.UpstreamHealth {
		fams = append(fams, s.targetHealth(subsystem))
	}
	return fams
}

// targetHealth returns kong_upstream_target_health: four lines per target
// address, 1 for its state and 0 for the others.
func (s *Simulator) targetHealth(subsystem string) *family {
	f := &family{name: "kong_upstream_target_health", help: helpTargetHealth, typ: typeGauge}
	seen := map[string]bool{}
	for _, svc := range s.cfg.Services {
		for _, t := range svc.Targets {
			for _, state := range healthStates {
				labels := encodeLabels(healthLabels, svc.Upstream, t.Target, t.Address, state, subsystem)
				if seen[labels] {
					continue // an upstream shared by two services
				}
				seen[labels] = true
				v := 0.0
				if state == t.Health {
					v = 1
				}
				f.series = append(f.series, series{labels: labels, value: v})
			}
		}
	}
	return f
}

// trafficFamilies snapshots the per-service families. A family without
// series is dropped by writeFamilies, as Kong has no key for it yet. Only
// values are copied under the lock; label strings are shared, as they never
// change.
func (s *Simulator) trafficFamilies() []*family {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := &s.traffic
	return []*family{
		counterFamily("kong_bandwidth_bytes", helpBandwidth, t.bandwidth),
		counterFamily("kong_http_requests_total", helpRequests, t.status),
		histogramFamily("kong_kong_latency_ms", helpKongLatency, t.kongLatency),
		histogramFamily("kong_upstream_latency_ms", helpUpstreamLatency, t.upstreamLatency),
		histogramFamily("kong_request_latency_ms", helpRequestLatency, t.requestLatency),
	}
}

func counterFamily[K comparable](name, help string, m map[K]*counterSeries) *family {
	f := &family{name: name, help: help, typ: typeCounter, series: make([]series, 0, len(m))}
	for _, c := range m {
		f.series = append(f.series, series{labels: c.labels, value: c.value})
	}
	return f
}

func histogramFamily(name, help string, m map[latencyKey]*histogramSeries) *family {
	f := &family{name: name, help: help, typ: typeHistogram, series: make([]series, 0, len(m))}
	for _, h := range m {
		f.series = append(f.series, series{labels: h.labels, hist: h.hist.clone()})
	}
	return f
}
