package e2e_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/integration/e2e/cluster"
	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/integration/e2e/fakekubelet"
	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/testsupport/harness"
)

// testbed is what every scenario (TestTutorial, TestKEDA, TestScale)
// starts from: the test in its own network namespace, its timeline, the
// binaries, Prometheus Operator's and the Gateway API's CRD files.
type testbed struct {
	w      *world
	logger *slog.Logger
	dir    string
	// third are the third-party servers by E2E_*_BIN name, own the
	// project's programs by name.
	third, own map[string]string
	crds       []string
}

// startTestbed resolves the binaries of modules (scripts/build-test-bins.sh
// builds what is missing) and the project's own. Outside its network
// namespace it runs the test again inside one (netns_test.go) and returns
// nil: the caller then returns at once.
func startTestbed(ctx context.Context, t *testing.T, modules ...string) *testbed {
	t.Helper()
	if !inNetns() {
		runInNetns(ctx, t, modules...)
		return nil
	}
	if err := setUpNetns(ctx); err != nil {
		t.Fatal(err)
	}
	tb := &testbed{
		w:      newWorld(t),
		logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		dir:    t.TempDir(),
	}
	var err error
	if tb.third, err = harness.ThirdPartyBinaries(ctx, modules...); err != nil {
		t.Fatal(err)
	}
	if tb.crds, err = operatorCRDFiles(ctx); err != nil {
		t.Fatal(err)
	}
	gw, err := gatewayAPICRDFiles(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tb.crds = append(tb.crds, gw...)
	if tb.own, err = ownBinaries(ctx); err != nil {
		t.Fatal(err)
	}
	return tb
}

// startControlPlane starts etcd, kube-apiserver and kube-controller-manager
// (the HPA controller every 2 s) and puts them on the timeline, which
// stops them in reverse: the API server before etcd.
func (tb *testbed) startControlPlane(ctx context.Context, t *testing.T) *cluster.Cluster {
	t.Helper()
	c, err := cluster.Start(ctx, cluster.Options{
		Dir: filepath.Join(tb.dir, "cluster"),
		Bins: cluster.Binaries{
			Etcd:              tb.third["E2E_ETCD_BIN"],
			APIServer:         tb.third["E2E_KUBE_APISERVER_BIN"],
			ControllerManager: tb.third["E2E_KUBE_CONTROLLER_MANAGER_BIN"],
		},
		HPASyncPeriod: 2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range c.Processes() {
		tb.w.started(p)
	}
	tb.w.step("control plane ready at %s", c.URL)
	return c
}

// runKubelet starts the kubelet stand-in for the rest of the test: the
// command and Kong pods of namespace kong Running and Ready, each with an
// address of its own in podCIDR on which the port the shipped Service of
// objs sends Prometheus to is free. It returns that port.
func (tb *testbed) runKubelet(ctx context.Context, t *testing.T, c *cluster.Cluster, objs []*unstructured.Unstructured) string {
	t.Helper()
	ctx, stop := context.WithCancel(ctx)
	t.Cleanup(stop)
	sidecarPort := sidecarTargetPort(t, objs)
	addrs := podAddresses(sidecarPort)
	for _, sel := range []string{"app=command", "app=kong"} {
		if err := fakekubelet.RunPods(ctx, c.Client, "kong", sel, addrs, tb.logger); err != nil {
			t.Fatal(err)
		}
	}
	return sidecarPort
}

// buildTutorial builds the tutorial's kustomization with this run's
// values: the control plane's CA, Prometheus Operator's CRDs, and a free
// address each for the injector and the custom metrics adapter, which it
// returns with the objects.
func (tb *testbed) buildTutorial(t *testing.T, c *cluster.Cluster) (objs []*unstructured.Unstructured, injectorAddr, adapterAddr string) {
	t.Helper()
	injectorAddr, adapterAddr = freeAddr(t), freeAddr(t)
	vals := runtimeValues{caPEM: c.CA.CertPEM, injectorPort: port(t, injectorAddr), adapterPort: port(t, adapterAddr), operatorCRDs: tb.crds}
	objs, err := kustomizeBuild(filepath.Join(tb.dir, "kustomize"), vals)
	if err != nil {
		t.Fatal(err)
	}
	return objs, injectorAddr, adapterAddr
}
