package test

import (
	"strings"
	"testing"
)

// TestSchemaRejects shows that values.schema.json rejects values of the
// wrong type, outside their range, and unknown keys, at the top level and
// in the chart's own tables, and that the templates refuse contradictory
// values; each error names the value.
func TestSchemaRejects(t *testing.T) {
	c := loadChart(t)
	f := func(values, want string) {
		t.Helper()
		_, err := renderErr(c, values, renderOptions{})
		if err == nil {
			t.Errorf("%q rendered, want a schema error naming %q", values, want)
			return
		}
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %q does not name %q", values, err, want)
		}
	}
	// Unknown top-level keys: a misspelling, another chart's name for a value.
	f("replicas: 3\n", "replicas")
	f("podLabel: {a: b}\n", "podLabel")
	f("env: {}\n", "env")
	// Wrong types.
	f("replicaCount: two\n", "replicaCount")
	f("podLabels: [a]\n", "podLabels")
	f("podLabels: {a: 1}\n", "podLabels")
	f("image: ghcr.io/x/y:v1\n", "image")
	f("certManager: {enabled: \"yes\"}\n", "enabled")
	f("serviceMonitor: {honorLabels: \"true\"}\n", "honorLabels")
	f("tolerations: {key: a}\n", "tolerations")
	f("kongNamespaces: kong\n", "kongNamespaces")
	// Values the injector or the API server would reject.
	f("sidecar: {mode: sidecar}\n", "mode")
	f("webhook: {failurePolicy: ignore}\n", "failurePolicy")
	f("webhook: {timeoutSeconds: 31}\n", "timeoutSeconds")
	f("logLevel: verbose\n", "logLevel")
	f("serviceMonitor: {interval: 15}\n", "interval")
	f("serviceMonitor: {interval: fifteen}\n", "interval")
	f("kongNamespaces: [Kong]\n", "kongNamespaces")
	f("sidecar: {statusPort: 0}\n", "statusPort")
	f("sidecar: {statusPort: 65536}\n", "statusPort")
	f("sidecar: {statusPort: \"8100\"}\n", "statusPort")
	f("sidecar: {statusPort: 9542}\n", "statusPort")
	f("sidecar: {minFetchInterval: 14}\n", "minFetchInterval")
	f("keda: {scaledObjects: [{name: command}]}\n", "namespace")
	f("keda: {scaledObjects: [{name: command, namespace: kong, minReplicaCount: 0}]}\n", "minReplicaCount")
	f("keda: {scaledObjects: [{name: command, namespace: kong, threshold: 40}]}\n", "threshold")
	f("keda: {scaledObjects: [{name: command, namespace: kong, authModes: token}]}\n", "authModes")
	f("keda: {scaledObjects: [{name: command, namespace: kong, metricType: AverageValue}]}\n", "metricType")
	f("prometheusRule: {alerts: {kongUnreachable: {for: 5}}}\n", "for")
	f("prometheusRule: {alerts: {kongUnreachable: {for: 5 minutes}}}\n", "for")
	f("prometheusRule: {alerts: {kongUnreachable: {for: null}}}\n", "for")
	f("prometheusRule: {alerts: {kongUnreachable: {for: 5m, threshold: 1}}}\n", "threshold")
	f("prometheusRule: {alerts: {injectorCertificateExpiry: {warningDays: 0}}}\n", "warningDays")
	f("prometheusRule: {alerts: {latencySeriesAbsent: {lookback: an hour}}}\n", "lookback")
	f("prometheusRule: {sidecarJob: 'kong\"x'}\n", "sidecarJob")
	f("prometheusRule: {runbookURL: docs/runbooks.md}\n", "runbookURL")
	f("prometheusRule: {labels: {release: 1}}\n", "release")
	f("sidecar: {minFetchInterval: \"14\"}\n", "minFetchInterval")
	f("sidecar: {minFetchInterval: -1s}\n", "minFetchInterval")
	f("sidecar: {resources: {requests: {cpu: ten}}}\n", "cpu")
	f("sidecar: {resources: {requests: {memory: 32 Mi}}}\n", "memory")
	f("sidecar: {resources: {limits: {memory: -128Mi}}}\n", "memory")
	f("sidecar: {resources: {limits: {memory: 0}}}\n", "memory")
	f("sidecar: {resources: {limits: {cpu: 1}}}\n", "cpu")
	f("sidecar: {resources: {requests: {storage: 1Gi}}}\n", "storage")
	f("extension: {dataPlaneMetricsExtensions: [{spec: {}}]}\n", "name")
	// Unknown keys in the chart's own tables.
	f("image: {repo: x}\n", "repo")
	f("serviceMonitor: {enable: true}\n", "enable")
	f("selfSignedCertificate: {validity: 10}\n", "validity")

	// What the schema cannot say, the templates refuse.
	f("podDisruptionBudget: {maxUnavailable: 1}\n", "not both")
	f("extension: {enabled: true}\n", "dataPlaneMetricsExtensions is empty")
	f("kongNamespaces: [kong, "+releaseNamespace+"]\n", "a namespace of its own")

	// And it accepts what the values document.
	for _, values := range []string{
		"podDisruptionBudget: {minAvailable: 50%}\n",
		"podDisruptionBudget: {minAvailable: null, maxUnavailable: 1}\n",
		"global: {imageRegistry: example.com}\n",
		"serviceMonitor: {interval: 1m30s, scrapeTimeout: 10s}\n",
		"sidecar: {resources: {requests: {cpu: 1, memory: 1e8}, limits: {memory: 256Mi}}, statusPort: 65535}\n",
	} {
		if _, err := renderErr(c, values, renderOptions{}); err != nil {
			t.Errorf("%q: %v", values, err)
		}
	}
}
