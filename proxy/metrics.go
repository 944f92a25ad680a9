package proxy

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/relabel"
)

// metrics are the self-metrics of the upstream fetch.
type metrics struct {
	up            prometheus.Gauge
	fetches       prometheus.Counter
	errors        *prometheus.CounterVec
	fetchDuration prometheus.Histogram
	responseBytes prometheus.Gauge
	seriesKept    prometheus.Gauge
	seriesDropped *prometheus.GaugeVec
	unresolved    prometheus.Gauge
}

// The reasons an upstream fetch fails, the values of upstream_errors_total's reason label.
const (
	reasonConnect     = "connect"      // refused, DNS, TLS
	reasonTimeout     = "timeout"      // the scrape timeout passed before the body was read whole
	reasonStatus      = "status"       // an HTTP status other than 200 (a redirect too: none is followed)
	reasonContentType = "content_type" // a body that is not Prometheus text (an HTML error page)
	reasonTooLarge    = "too_large"    // a body over SIDECAR_MAX_UPSTREAM_BYTES, or an answer over maxHeldBytes compressed
	reasonRead        = "read"         // the body was cut off or could not be decoded
)

var errorReasons = []string{reasonConnect, reasonTimeout, reasonStatus, reasonContentType, reasonTooLarge, reasonRead}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		up: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kong_metrics_sidecar_upstream_up",
			Help: "Whether the last fetch of Kong's /metrics succeeded (1) or failed (0).",
		}),
		fetches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kong_metrics_sidecar_upstream_fetches_total",
			Help: "Fetches of Kong's /metrics; concurrent scrapes share one.",
		}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kong_metrics_sidecar_upstream_errors_total",
			Help: "Failed fetches of Kong's /metrics, by reason.",
		}, []string{"reason"}),
		fetchDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "kong_metrics_sidecar_upstream_fetch_duration_seconds",
			Help:    "Time to fetch and rewrite Kong's /metrics.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}),
		responseBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kong_metrics_sidecar_upstream_response_bytes",
			Help: "Size of the last body read from Kong (uncompressed).",
		}),
		seriesKept: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kong_metrics_sidecar_series_kept",
			Help: "Series kept from the last successful fetch.",
		}),
		seriesDropped: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "kong_metrics_sidecar_series_dropped",
			Help: "Series dropped from the last successful fetch, by reason.",
		}, []string{"reason"}),
		unresolved: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kong_metrics_sidecar_unresolved_kong_services",
			Help: "Distinct Kong service and upstream names in the last successful fetch that resolve to no Kubernetes Service (their series are dropped as unresolved; the log names each once).",
		}),
	}
	for _, r := range errorReasons {
		m.errors.WithLabelValues(r)
	}
	for _, r := range relabel.DropReasons {
		m.seriesDropped.WithLabelValues(r.String())
	}
	reg.MustRegister(m.up, m.fetches, m.errors, m.fetchDuration, m.responseBytes, m.seriesKept, m.seriesDropped, m.unresolved)
	return m
}

func (m *metrics) observe(stats relabel.Stats) {
	m.seriesKept.Set(float64(stats.Kept))
	m.unresolved.Set(float64(stats.Unresolved))
	for _, r := range relabel.DropReasons {
		m.seriesDropped.WithLabelValues(r.String()).Set(float64(stats.Dropped[r]))
	}
}
