package harness

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// binVars are the variables scripts/build-test-bins.sh prints for each of
// the modules under integration/e2e/bins.
var binVars = map[string][]string{
	"etcd":       {"E2E_ETCD_BIN"},
	"kubernetes": {"E2E_KUBE_APISERVER_BIN", "E2E_KUBE_CONTROLLER_MANAGER_BIN"},
	// promtool checks and unit-tests the shipped alerting rules.
	"prometheus": {"E2E_PROMETHEUS_BIN", "E2E_PROMTOOL_BIN"},
	// The operator's module also carries its CRDs in the module cache.
	"prometheus-operator": {"E2E_PROMETHEUS_OPERATOR_BIN"},
	// KEDA's module also carries its CRDs and RBAC (config/) in the module cache.
	"keda": {"E2E_KEDA_OPERATOR_BIN", "E2E_KEDA_ADAPTER_BIN"},
	// Thanos sidecar and query, for the scale scenario (make e2e-scale).
	"thanos": {"E2E_THANOS_BIN"},
}

// ThirdPartyBinaries returns the paths of the third-party servers that the
// named modules of integration/e2e/bins build (etcd, kubernetes,
// prometheus, prometheus-operator, keda, thanos), by their E2E_*_BIN names: from the
// environment where set there (make sets them), else from scripts/build-test-bins.sh, which builds
// them into its cache on first use and only prints their paths after that.
func ThirdPartyBinaries(ctx context.Context, modules ...string) (map[string]string, error) {
	bins := map[string]string{}
	var missing []string
	for _, m := range modules {
		vars, ok := binVars[m]
		if !ok {
			return nil, fmt.Errorf("no third-party module %q under integration/e2e/bins", m)
		}
		for _, v := range vars {
			if p := os.Getenv(v); p != "" {
				bins[v] = p
			} else if !strings.Contains(" "+strings.Join(missing, " ")+" ", " "+m+" ") {
				missing = append(missing, m)
			}
		}
	}
	if len(missing) > 0 {
		script := filepath.Join(RepoRoot(), "scripts", "build-test-bins.sh")
		cmd := exec.CommandContext(ctx, "bash", append([]string{script}, missing...)...)
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		if err != nil {
			return nil, fmt.Errorf("scripts/build-test-bins.sh %s: %w", strings.Join(missing, " "), err)
		}
		sc := bufio.NewScanner(bytes.NewReader(out))
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
	for _, m := range modules {
		for _, v := range binVars[m] {
			if bins[v] == "" {
				return nil, fmt.Errorf("no %s from the environment or scripts/build-test-bins.sh", v)
			}
		}
	}
	return bins, nil
}
