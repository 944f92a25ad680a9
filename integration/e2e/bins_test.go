package e2e_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/integration/harness"
)

// thirdPartyBins returns the paths of etcd, kube-apiserver,
// kube-controller-manager and Prometheus by their E2E_*_BIN names: from
// the environment when set there (make e2e sets them), else from
// scripts/build-e2e-bins.sh, which builds them on first use only.
func thirdPartyBins(ctx context.Context) (map[string]string, error) {
	names := []string{"E2E_ETCD_BIN", "E2E_KUBE_APISERVER_BIN", "E2E_KUBE_CONTROLLER_MANAGER_BIN", "E2E_PROMETHEUS_BIN"}
	bins := map[string]string{}
	for _, n := range names {
		if v := os.Getenv(n); v != "" {
			bins[n] = v
		}
	}
	if len(bins) < len(names) {
		cmd := exec.CommandContext(ctx, "bash", filepath.Join(harness.RepoRoot(), "scripts", "build-e2e-bins.sh"))
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		if err != nil {
			return nil, fmt.Errorf("scripts/build-e2e-bins.sh: %w", err)
		}
		sc := bufio.NewScanner(strings.NewReader(string(out)))
		for sc.Scan() {
			k, v, ok := strings.Cut(sc.Text(), "=")
			if !ok {
				continue
			}
			if uq, err := strconv.Unquote(v); err == nil {
				v = uq
			}
			if _, set := bins[k]; !set {
				bins[k] = v
			}
		}
	}
	for _, n := range names {
		if bins[n] == "" {
			return nil, fmt.Errorf("no %s from the environment or scripts/build-e2e-bins.sh", n)
		}
	}
	return bins, nil
}
