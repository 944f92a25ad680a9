package main

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

// TestUnresolvedLog: each distinct name is logged once with its reason and
// fix, and past maxLoggedUnresolved names nothing more but one warning.
func TestUnresolvedLog(t *testing.T) {
	var logs bytes.Buffer
	u := newUnresolvedLog(slog.New(slog.NewTextHandler(&logs, nil)))
	for range 3 {
		u.report("httproute.kong.command.0")
	}
	if n := strings.Count(logs.String(), "Kong service resolves to no Kubernetes Service"); n != 1 {
		t.Fatalf("logged %d times, want once:\n%s", n, &logs)
	}
	for _, want := range []string{"kong_service=httproute.kong.command.0", "reason=route_rule", "INJECTOR_ROUTE_MAPPING_NAMESPACES"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log line lacks %q:\n%s", want, &logs)
		}
	}
	for i := range 2 * maxLoggedUnresolved {
		u.report(fmt.Sprintf("churn-%d.%s", i, strings.Repeat("x", 1000)))
	}
	if n := strings.Count(logs.String(), "Kong service resolves to no Kubernetes Service"); n != maxLoggedUnresolved {
		t.Errorf("logged %d names, want the first %d", n, maxLoggedUnresolved)
	}
	if n := strings.Count(logs.String(), "more unresolved Kong service names than are logged"); n != 1 {
		t.Errorf("%d warnings that logging stopped, want 1", n)
	}
	if strings.Contains(logs.String(), strings.Repeat("x", maxLoggedNameBytes+1)) {
		t.Error("a log line quotes more than maxLoggedNameBytes of a name")
	}
}
