package relabel

import (
	"strings"
	"sync"
	"testing"
)

// TestResolutionPrecedence: KongServiceMapping entries win over Admin API
// tags, which win over the naming rules; a tag of another kind than
// Service drops the series as multi_backend.
func TestResolutionPrecedence(t *testing.T) {
	other := Service{Namespace: "other", Name: "elsewhere"}
	sel := Selection{
		Services: map[Service]Metrics{command: StatusCode, billing: StatusCode, other: StatusCode},
		Mappings: map[string]Service{"httproute.kong.mapped.0": billing},
		Tags: map[string]Tag{
			"httproute.kong.mapped.0":  {Kind: "Service", Service: command}, // mapping wins
			"httproute.kong.command.0": {Kind: "Service", Service: command},
			"httproute.kong.multi.0":   {Kind: "HTTPRoute", Service: Service{Namespace: "kong", Name: "multi"}},
			"kong.command.80":          {Kind: "Service", Service: other}, // tags win over naming rules
			"default.billing.80":       {},                                // untagged: naming rules
		},
	}
	var mu sync.Mutex
	var unseen []string
	sel.OnUnseen = func(name string) { mu.Lock(); unseen = append(unseen, name); mu.Unlock() }
	tests := []struct {
		kong   string
		want   string // the kubernetes_name written, "" when dropped
		reason DropReason
	}{
		{"httproute.kong.mapped.0", "billing", 0},
		{"httproute.kong.command.0", "command", 0},
		{"httproute.kong.multi.0", "", DropMultiBackend},
		{"kong.command.80", "elsewhere", 0},
		{"default.billing.80", "billing", 0},
		{"default.unknown.80", "", DropUnselected},
		{"httproute.kong.unknown.0", "", DropUnresolved},
	}
	for _, tt := range tests {
		t.Run(tt.kong, func(t *testing.T) {
			line := `kong_http_requests_total{service="` + tt.kong + `",code="200"} 1` + "\n"
			out, stats := rewriteAll(New(sel), []byte(line))
			if tt.want == "" {
				if len(out) != 0 || stats.Dropped[tt.reason] != 1 {
					t.Fatalf("got %q, stats %+v; want a drop as %v", out, stats, tt.reason)
				}
				return
			}
			if !strings.Contains(string(out), `kubernetes_name="`+tt.want+`"`) {
				t.Fatalf("got %q, want kubernetes_name %q", out, tt.want)
			}
		})
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(unseen, ",") != "default.unknown.80,httproute.kong.unknown.0" {
		t.Errorf("OnUnseen got %q", unseen)
	}
}

// TestTagsIgnoredForUpstreams: tags name Kong services, not upstreams.
func TestTagsIgnoredForUpstreams(t *testing.T) {
	sel := Selection{
		Services: map[Service]Metrics{command: UpstreamHealth},
		Tags:     map[string]Tag{"command.kong.80.svc": {Kind: "HTTPRoute"}},
		OnUnseen: func(name string) { t.Errorf("OnUnseen(%q) for an upstream", name) },
	}
	out, _ := rewriteAll(New(sel), []byte(`kong_upstream_target_health{upstream="command.kong.80.svc",target="a",address="a",state="healthy",subsystem="http"} 1`+"\n"))
	if !strings.Contains(string(out), `kubernetes_name="command"`) {
		t.Fatalf("got %q", out)
	}
}
