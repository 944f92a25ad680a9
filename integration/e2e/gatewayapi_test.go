package e2e_test

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/integration/e2e/cluster"
	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/testsupport/harness"
)

const gatewayAPIModule = "sigs.k8s.io/gateway-api"

// gatewayAPICRDFiles are the Gateway API's standard-channel CRDs that the
// tutorial's objects use, from the module in the module cache.
func gatewayAPICRDFiles(ctx context.Context) ([]string, error) {
	cmd := exec.CommandContext(ctx, "go", "list", "-mod=readonly", "-m", "-f", "{{.Dir}}", gatewayAPIModule)
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("finding %s in the module cache (go mod download in integration/e2e): %w", gatewayAPIModule, err)
	}
	dir := filepath.Join(strings.TrimSpace(string(out)), "config", "crd", "standard")
	var files []string
	for _, kind := range []string{"gatewayclasses", "gateways", "httproutes", "grpcroutes", "referencegrants"} {
		files = append(files, filepath.Join(dir, "gateway.networking.k8s.io_"+kind+".yaml"))
	}
	return files, nil
}

var httpRoutes = schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "httproutes"}

// tutorialRoute reads back the tutorial's HTTPRoute as the API server
// stored it and returns the Kong service names the Kong Ingress
// Controller gives its rule: with combined services (Kong Operator 2.1
// and later) and without (Kong Gateway Operator 1.x, Kong Operator 2.0).
// The stored backendRef must carry the weight the CRD defaults to 1, which
// the combined name ends with.
func tutorialRoute(ctx context.Context, t *testing.T, c *cluster.Cluster) (combined, perRule string) {
	t.Helper()
	dyn, err := dynamic.NewForConfig(c.Admin)
	if err != nil {
		t.Fatal(err)
	}
	u, err := dyn.Resource(httpRoutes).Namespace("kong").Get(ctx, "command", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("reading back HTTPRoute kong/command: %v", err)
	}
	var route gatewayv1.HTTPRoute
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &route); err != nil {
		t.Fatal(err)
	}
	if len(route.Spec.Rules) != 1 || len(route.Spec.Rules[0].BackendRefs) != 1 {
		t.Fatalf("HTTPRoute kong/command stored with %d rules, want the tutorial's one rule with one backendRef: %+v", len(route.Spec.Rules), route.Spec.Rules)
	}
	ref := route.Spec.Rules[0].BackendRefs[0].BackendRef
	if ref.Weight == nil || *ref.Weight != 1 {
		t.Fatalf("HTTPRoute kong/command's backendRef stored with weight %v, want the CRD's default 1", ref.Weight)
	}
	if ref.Port == nil {
		t.Fatal("HTTPRoute kong/command's backendRef stored without a port")
	}
	ns := route.Namespace
	if ref.Namespace != nil {
		ns = string(*ref.Namespace)
	}
	// KIC v3.5.13 / Kong Operator v2.2.0, subtranslator/httproute.go:
	// getKongServiceNameByBackendRefs and groupRulesFromHTTPRoutesByKongServiceName.
	combined = fmt.Sprintf("httproute.%s.svc.%s.%s.%d.%d", route.Namespace, ns, ref.Name, *ref.Port, *ref.Weight)
	perRule = fmt.Sprintf("httproute.%s.%s.%d", route.Namespace, route.Name, 0)
	return combined, perRule
}

// simServices is kong-simulator's -services for the tutorial's route with
// its Kong service named kong.
func simServices(kong string) string { return "httproute/kong/command/0=" + kong }

// routeMappingServices reads the sidecar's kong_metrics_sidecar_route_mapping_kong_services.
func routeMappingServices(ctx context.Context, k *kongPod) (float64, error) {
	body, err := harness.Get(ctx, k.sidecarURL+"/metrics")
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, "kong_metrics_sidecar_route_mapping_kong_services "); ok {
			var f float64
			_, err := fmt.Sscan(v, &f)
			return f, err
		}
	}
	return 0, fmt.Errorf("%s/metrics has no kong_metrics_sidecar_route_mapping_kong_services", k.sidecarURL)
}

// stepRouteMapping: the injector has published the tutorial's route in
// the route mapping ConfigMap, every sidecar follows it, and a route
// change (a second rule with another backendRef weight, so another Kong
// service, httproute.kong.command.1) reaches every sidecar; the time it
// takes is measured from the server-side apply to the last sidecar.
func stepRouteMapping(ctx context.Context, t *testing.T, w *world, c *cluster.Cluster, dp *dataPlanes) {
	t.Helper()
	pods := dp.running()
	counts := func(want float64) (bool, string) {
		var obs []string
		all := true
		for _, k := range pods {
			n, err := routeMappingServices(ctx, k)
			if err != nil {
				return false, err.Error()
			}
			all = all && n == want
			obs = append(obs, fmt.Sprintf("%s: %.0f", k.name, n))
		}
		return all, strings.Join(obs, ", ")
	}
	obs := w.waitFor(ctx, 60*time.Second, "every sidecar follows the published route mapping: 1 Kong service (httproute.kong.command.0)", func() (bool, string) { return counts(1) })
	w.step("route mapping: published by the injector from HTTPRoute kong/command, read by every sidecar (%s)", obs)

	dyn, err := dynamic.NewForConfig(c.Admin)
	if err != nil {
		t.Fatal(err)
	}
	patch := []byte(`{"apiVersion":"gateway.networking.k8s.io/v1","kind":"HTTPRoute","metadata":{"name":"command","namespace":"kong"},"spec":{"parentRefs":[{"name":"kong","namespace":"kong"}],"rules":[` +
		`{"matches":[{"path":{"type":"PathPrefix","value":"/command"}}],"backendRefs":[{"name":"command","kind":"Service","port":80}]},` +
		`{"matches":[{"path":{"type":"PathPrefix","value":"/command-canary"}}],"backendRefs":[{"name":"command","kind":"Service","port":80,"weight":2}]}]}}`)
	start := time.Now()
	if _, err := dyn.Resource(httpRoutes).Namespace("kong").Patch(ctx, "command", "application/apply-patch+yaml", patch,
		metav1.PatchOptions{FieldManager: "e2e-route-change", Force: ptrTrue()}); err != nil {
		t.Fatalf("changing HTTPRoute kong/command: %v", err)
	}
	obs = w.waitFor(ctx, 60*time.Second, "every sidecar follows the changed route: 2 Kong services", func() (bool, string) { return counts(2) })
	w.step("route mapping: a route change reached every sidecar %s after the apply (the injector's publication, the kubelet stand-in's projection, the sidecars' settle check; a real kubelet adds its ConfigMap sync delay, up to about a minute by default) (%s)",
		time.Since(start).Round(100*time.Millisecond), obs)
}

func ptrTrue() *bool { b := true; return &b }

// stepRouteRuleNames: the same data planes under Kong Gateway Operator 1.x
// or Kong Operator 2.0, where Kong names the tutorial's route's service
// httproute.kong.command.0, which says nothing of its Service: every Kong
// simulator restarts serving that name, and the route mapping alone
// resolves it. Once the combined name's series are out of the adapter's
// 60 s window, the custom metric (100 ms ± 10%) comes from the
// per-rule series only (no sample of the combined name's in its window),
// and the HPA reads it: ScalingActive, still 10 replicas, no rescale and
// no FailedGetObjectMetric.
func stepRouteRuleNames(ctx context.Context, t *testing.T, w *world, c *cluster.Cluster, dp *dataPlanes, proms []*promReplica, combined, perRule string) {
	t.Helper()
	events, err := hpaEvents(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	base := snapshot(events)
	var ms samples
	ms.take(ctx, t, c, "Kong was about to name the route's service by its rule")
	dp.setKongServices(simServices(perRule))
	for _, k := range dp.running() {
		if err := dp.restartKongServing(k, simServices(perRule)); err != nil {
			t.Fatalf("restarting Kong in pod %s: %v", k.name, err)
		}
	}
	switched := time.Now()
	w.step("step 5g: every Kong now names the route's service %s (Kong Gateway Operator 1.x, Kong Operator 2.0), not %s", perRule, combined)
	r := proms[0]
	newQ := fmt.Sprintf(`count(kong_upstream_latency_ms_count{kong_service=%q,exported_namespace="kong",exported_service="command"})`, perRule)
	// Samples of the combined name within the adapter's 60 s window. (Not
	// the series themselves: those Prometheus 0 replayed after step 5f's
	// restart get no staleness marker and linger in instant queries.)
	oldQ := fmt.Sprintf(`count(count_over_time(kong_upstream_latency_ms_count{kong_service=%q}[60s]))`, combined)
	var gone time.Time
	obs := w.waitFor(ctx, 150*time.Second, "Prometheus 0 has the per-rule series of every Kong pod resolved to Service kong/command, no sample of the combined name's in the last 60s, and 10s later the HPA still reads the metric", func() (bool, string) {
		ms.take(ctx, t, c, "Kong named the service by its rule")
		hold := holdAt10(ctx, t, c, base, true)
		count := func(q string) (float64, error) {
			s, err := r.Query(ctx, q)
			if err != nil || len(s) == 0 {
				return 0, err
			}
			return s[0].Value, nil
		}
		n, err := count(newQ)
		if err != nil {
			return false, err.Error()
		}
		old, err := count(oldQ)
		if err != nil {
			return false, err.Error()
		}
		if int(n) == kongReplicas && old == 0 && gone.IsZero() {
			gone = time.Now()
		}
		return !gone.IsZero() && time.Since(gone) > 10*time.Second,
			fmt.Sprintf("%s; %.0f Kong pods with per-rule series, %.0f with samples of the combined name's in the last 60s", hold, n, old)
	})
	w.step("step 5g passed: resolved through the route mapping, the per-rule series reached Prometheus, the adapter and the HPA (%s after the switch; %s); metric %s; no rescale, no FailedGetObjectMetric",
		time.Since(switched).Round(100*time.Millisecond), obs, ms)
}
