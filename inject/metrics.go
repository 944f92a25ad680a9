package inject

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
)

// ResultError is the admissions_total result of a request the handler
// could not answer: a malformed AdmissionReview, an undecodable pod or a
// panic.
const ResultError = "error"

// results are the values of admissions_total's result label.
var results = []string{string(Injected), string(Skipped), string(Invalid), ResultError}

// Metrics are the injector's own metrics. Their methods are safe for
// concurrent use.
type Metrics struct {
	admissions      *prometheus.CounterVec
	duration        prometheus.Histogram
	tlsReloads      *prometheus.CounterVec
	tlsLastReloadOK prometheus.Gauge
	tlsNotAfter     prometheus.Gauge
}

// NewMetrics creates the injector's metrics, and
// kong_metrics_injector_build_info (client_golang's version collector, from
// github.com/prometheus/common/version's variables), and registers them with
// reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		admissions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kong_metrics_injector_admissions_total",
			Help: "Admission requests answered, by result: injected, skipped (not opted in, already injected, not a pod creation), invalid (opted in but not injectable; the response warns) or error (malformed request).",
		}, []string{"result"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "kong_metrics_injector_admission_duration_seconds",
			Help:    "Time to read, decide and answer one admission request.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
		tlsReloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kong_metrics_injector_tls_reloads_total",
			Help: "Loads of the serving certificate, at start and after each change on disk, by result (success or failure; a failure keeps the previous certificate).",
		}, []string{"result"}),
		tlsLastReloadOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kong_metrics_injector_tls_last_reload_successful",
			Help: "Whether the last load of the serving certificate succeeded (1) or failed (0).",
		}),
		tlsNotAfter: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kong_metrics_injector_tls_certificate_not_after_timestamp_seconds",
			Help: "Expiry of the serving certificate in use, in seconds since the epoch.",
		}),
	}
	for _, r := range results {
		m.admissions.WithLabelValues(r)
	}
	m.tlsReloads.WithLabelValues("success")
	m.tlsReloads.WithLabelValues("failure")
	reg.MustRegister(m.admissions, m.duration, m.tlsReloads, m.tlsLastReloadOK, m.tlsNotAfter,
		versioncollector.NewCollector("kong_metrics_injector"))
	return m
}

func (m *Metrics) observeAdmission(result string, d time.Duration) {
	m.admissions.WithLabelValues(result).Inc()
	m.duration.Observe(d.Seconds())
}

func (m *Metrics) observeTLSLoad(notAfter time.Time, err error) {
	if err != nil {
		m.tlsReloads.WithLabelValues("failure").Inc()
		m.tlsLastReloadOK.Set(0)
		return
	}
	m.tlsReloads.WithLabelValues("success").Inc()
	m.tlsLastReloadOK.Set(1)
	m.tlsNotAfter.Set(float64(notAfter.Unix()))
}
