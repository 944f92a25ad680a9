package e2e_test

import (
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/testsupport/harness"
)

// The scenario runs in a network namespace of its own, with only a
// loopback interface, on which the pod network podCIDR is local: every pod
// gets an address of it, as in a cluster. Loopback addresses (127/8) will
// not do: the API server refuses them in EndpointSlices and Endpoints.
const (
	podCIDR = "10.244.0.0/16"
	// netnsEnv marks the test process that runs inside the namespace.
	netnsEnv = "E2E_IN_NETNS"
)

// inNetns reports whether this test process is the one inside the
// network namespace.
func inNetns() bool { return os.Getenv(netnsEnv) == "1" }

// runInNetns resolves the third-party binaries (building them needs the
// module proxy, which the namespace cannot reach) and runs this test again
// in a new network namespace (a user namespace too when not root), with
// their paths in the environment. The test passes when that run passes.
func runInNetns(ctx context.Context, t *testing.T, modules ...string) {
	t.Helper()
	third, err := harness.ThirdPartyBinaries(ctx, modules...)
	if err != nil {
		t.Fatal(err)
	}
	// The own binaries and the test adapter are built here too, so the
	// namespace's run only finds them in the build cache.
	if _, err := harness.Binaries(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, err := adapterBinary(ctx); err != nil {
		t.Fatal(err)
	}
	args := []string{"-test.run=^" + t.Name() + "$", "-test.count=1"}
	if testing.Verbose() {
		args = append(args, "-test.v")
	}
	if d, ok := t.Deadline(); ok {
		args = append(args, "-test.timeout="+time.Until(d).Round(time.Second).String())
	}
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	cmd.Env = append(os.Environ(), netnsEnv+"=1")
	for _, k := range slices.Sorted(maps.Keys(third)) {
		cmd.Env = append(cmd.Env, k+"="+third[k])
	}
	var log scenarioLog
	cmd.Stdout, cmd.Stderr = io.MultiWriter(os.Stdout, &log), os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET, Pdeathsig: syscall.SIGKILL}
	if uid, gid := os.Getuid(), os.Getgid(); uid != 0 {
		cmd.SysProcAttr.Cloneflags |= syscall.CLONE_NEWUSER
		cmd.SysProcAttr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: uid, Size: 1}}
		cmd.SysProcAttr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: gid, Size: 1}}
	}
	if err := cmd.Run(); err != nil {
		t.Fatalf("the scenario in its network namespace: %v; its last log lines before its timeline (the failure among them):\n%s", err, log.last())
	}
}

// setUpNetns brings the namespace's loopback interface up and makes
// podCIDR local on it (iproute2's ip).
func setUpNetns(ctx context.Context) error {
	for _, args := range [][]string{
		{"link", "set", "lo", "up"},
		{"route", "add", "local", podCIDR, "dev", "lo", "table", "local"},
	} {
		if out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %v in the test's network namespace: %w: %s", args, err, out)
		}
	}
	return nil
}
