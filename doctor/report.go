package doctor

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/relabel"
)

// Status is a link's verdict.
type Status string

// The verdicts. Idle is a whole link that has nothing to carry yet (no
// traffic), which is not a fault; Unchecked follows a broken link, whose
// fix comes first.
const (
	OK        Status = "ok"
	Idle      Status = "idle"
	Broken    Status = "broken"
	Unchecked Status = "unchecked"
)

// Link is one link of the chain: its verdict, what was found, and for a
// broken one what to do.
type Link struct {
	Name   string `json:"name"`
	Status Status `json:"status"`
	Detail string `json:"detail"`
	Fix    string `json:"fix,omitempty"`
}

// Report is the chain of one target, link by link.
type Report struct {
	Target    string `json:"target"`
	Namespace string `json:"namespace"`
	Service   string `json:"service"`
	Links     []Link `json:"links"`
}

// Diagnose walks the chain of a in order. The first broken link is the
// one to fix: the links after it are not judged (each would fail for the
// same cause).
func Diagnose(a *Answers) Report {
	c := &chain{a: a, svc: relabel.Service{Namespace: a.Namespace, Name: a.Service}}
	type step struct {
		name  string
		check func(*chain) Link
	}
	steps := []step{
		{LinkExtension, checkExtension}, {LinkOptIn, checkOptIn}, {LinkInjection, checkInjection},
		{LinkSidecar, checkSidecar}, {LinkKongPlugin, checkKongPlugin}, {LinkResolution, checkResolution},
		{LinkMonitor, checkMonitor}, {LinkPrometheus, checkPrometheus}, {LinkSeries, checkSeries},
	}
	if usesKEDA(a) {
		// KEDA queries Prometheus itself: no custom metrics API.
		steps = append(steps, step{LinkScaledObject, checkScaledObject})
	} else {
		steps = append(steps, step{LinkCustomMetrics, checkCustomMetrics}, step{LinkHPA, checkHPA})
	}
	r := Report{Target: a.Target, Namespace: a.Namespace, Service: a.Service}
	for _, s := range steps {
		if r.ExitCode() != 0 {
			r.Links = append(r.Links, Link{Name: s.name, Status: Unchecked, Detail: "not checked: fix the broken link first"})
			continue
		}
		r.Links = append(r.Links, s.check(c))
	}
	return r
}

// usesKEDA reports whether the chain ends in KEDA rather than the custom
// metrics API: the target is a ScaledObject, or a Service that only
// ScaledObjects scale.
func usesKEDA(a *Answers) bool {
	if strings.HasPrefix(a.Target, "scaledobject/") {
		return true
	}
	if len(a.ScaledObjects) == 0 {
		return false
	}
	for _, h := range a.HPAs {
		if h.ManagedBy == "" {
			return false
		}
	}
	return true
}

// Broken returns the broken link, if any.
func (r Report) Broken() (Link, bool) {
	for _, l := range r.Links {
		if l.Status == Broken {
			return l, true
		}
	}
	return Link{}, false
}

// ExitCode is 0 for a whole chain (idle links included) and 1 for a broken one.
func (r Report) ExitCode() int {
	if _, b := r.Broken(); b {
		return 1
	}
	return 0
}

// WriteText prints one line per link, and the fix under a broken one.
func (r Report) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s in namespace %s (Service %s)\n", r.Target, r.Namespace, r.Service)
	for _, l := range r.Links {
		fmt.Fprintf(&b, "%-9s %-14s %s\n", l.Status, l.Name, l.Detail)
		if l.Fix != "" {
			fmt.Fprintf(&b, "%-9s %-14s fix: %s\n", "", "", l.Fix)
		}
	}
	if l, broken := r.Broken(); broken {
		fmt.Fprintf(&b, "broken link: %s\n", l.Name)
	} else {
		fmt.Fprintln(&b, "the chain is whole")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteJSON writes the report as one JSON document.
func (r Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}
