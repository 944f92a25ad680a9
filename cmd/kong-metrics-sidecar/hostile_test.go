package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/integration/harness"
)

// TestLogsHidePasswords: the passwords in the upstream's and the Admin
// API's URLs appear in no log line: not at start, not in a failed fetch's,
// not in a failed refresh's.
func TestLogsHidePasswords(t *testing.T) {
	closed, err := harness.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	bin := buildSidecar(t)
	addr, p := startSidecar(t, bin,
		"SIDECAR_UPSTREAM_URL=http://kong:upstreampw@"+closed+"/metrics",
		"SIDECAR_KONG_ADMIN_URL=http://admin:adminpw@"+closed,
		"SIDECAR_KONG_ADMIN_REFRESH_INTERVAL=1h",
		"SIDECAR_CONFIG_FILE="+t.TempDir()+"/missing.yaml",
	)
	if _, err := harness.Get(context.Background(), "http://"+addr+"/metrics"); err != nil {
		t.Fatal(err)
	}
	// The failed fetch is logged before the answer goes out; the failed
	// refresh may come later: wait for it (bounded; only a hang waits long).
	deadline := time.Now().Add(hangTimeout)
	for !strings.Contains(p.Output(), "Admin API failed") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	out := p.Output()
	for _, pw := range []string{"upstreampw", "adminpw"} {
		if strings.Contains(out, pw) {
			t.Errorf("the log shows the password %s:\n%s", pw, out)
		}
	}
	if !strings.Contains(out, "kong:xxxxx@") || !strings.Contains(out, "admin:xxxxx@") {
		t.Errorf("the log does not name the URLs, redacted:\n%s", out)
	}
}
