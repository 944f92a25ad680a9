package main

import (
	"log/slog"
	"sync"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/relabel"
)

// maxLoggedUnresolved bounds the names unresolvedLog remembers: past it, a
// page of ever new names (route churn, a hostile page) is not logged.
const maxLoggedUnresolved = 4096

// maxLoggedNameBytes bounds the part of a name that a log line quotes.
const maxLoggedNameBytes = 256

// unresolvedLog logs each distinct Kong name that resolves to no Service
// once, at info, with why and what would resolve it.
type unresolvedLog struct {
	logger *slog.Logger

	mu   sync.Mutex
	seen map[string]struct{}
	full bool
}

func newUnresolvedLog(logger *slog.Logger) *unresolvedLog {
	return &unresolvedLog{logger: logger, seen: map[string]struct{}{}}
}

// report is relabel.Selection.OnUnresolved.
func (u *unresolvedLog) report(name string) {
	u.mu.Lock()
	if _, seen := u.seen[name]; seen || u.full {
		u.mu.Unlock()
		return
	}
	if len(u.seen) == maxLoggedUnresolved {
		u.full = true
		u.mu.Unlock()
		u.logger.Warn("more unresolved Kong service names than are logged; kong_metrics_sidecar_unresolved_kong_services counts them", "logged", maxLoggedUnresolved)
		return
	}
	u.seen[name] = struct{}{}
	u.mu.Unlock()
	why := relabel.ExplainUnresolved(name)
	if len(name) > maxLoggedNameBytes {
		name = name[:maxLoggedNameBytes] + "…"
	}
	u.logger.Info("Kong service resolves to no Kubernetes Service: its series are dropped", "kong_service", name, "reason", why.Reason, "fix", why.Fix)
}
