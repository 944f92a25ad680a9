package kongsim

import (
	"path/filepath"
	"testing"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/golden"
)

// goldenCases are deterministic recorded scenarios, each pinned to
// testdata/<name>.golden.
var goldenCases = []struct {
	name     string
	cfg      Config
	requests []Request
}{{
	// Services whose names sort differently as strings and as label
	// values ("a" < "a-b" < "a.b" only because `"` sorts first), escapes,
	// a Kong-answered 401, latencies not recorded, zero-byte bodies,
	// another workspace and a consumer, and a value in exponent form.
	name: "recorded",
	cfg:  Config{Services: FixtureServices()[:1], Toggles: AllToggles},
	requests: []Request{
		{Service: "kong.command.80", Route: "kong.command.command.api.example.com.80", Code: 200,
			RequestMs: 120, UpstreamMs: 101, KongMs: 1, BytesIn: 220, BytesOut: 540},
		{Service: "kong.command.80", Route: "kong.command.command.api.example.com.80", Code: 200,
			RequestMs: 30, UpstreamMs: 28, KongMs: 2, BytesIn: 220, BytesOut: 540},
		{Service: "kong.command.80", Route: "kong.command.command.api.example.com.80", Code: 401, Source: SourceKong,
			RequestMs: 3, UpstreamMs: 99, KongMs: 3, BytesIn: 180, BytesOut: 120},
		{Service: "kong.command.80", Route: "kong.command.command.api.example.com.80", Code: 404,
			RequestMs: 5, UpstreamMs: 4, KongMs: 0, BytesIn: 200, BytesOut: 0},
		{Service: "a.b", Route: "r", Code: 200, RequestMs: 7001, UpstreamMs: 7000, KongMs: 1, BytesIn: 1, BytesOut: 1},
		{Service: "a-b", Route: "r", Code: 200, RequestMs: 1, UpstreamMs: 0, KongMs: 0, BytesIn: 1, BytesOut: 1},
		{Service: "a", Route: "r", Code: 200, RequestMs: 60000, UpstreamMs: 59999, KongMs: 6000, BytesIn: 1, BytesOut: 1},
		{Service: "A", Route: "r", Code: 503, RequestMs: 60001, UpstreamMs: 60000, KongMs: 6001, BytesIn: 1, BytesOut: 1},
		{Service: `quo"te\back`, Route: `r"\`, Code: 200, RequestMs: 25, UpstreamMs: 25, KongMs: 2, BytesIn: 1, BytesOut: 1},
		{Service: "teams.api.80", Route: "teams.api.api..80", Workspace: "team-b", Consumer: "alice", Code: 200,
			RequestMs: 80, UpstreamMs: 79, KongMs: 7, BytesIn: 300, BytesOut: 100000000000000},
		{Service: "no-latency", Route: "r", Code: 200, RequestMs: -1, UpstreamMs: -1, KongMs: -1, BytesIn: 10, BytesOut: 10},
	},
}, {
	// Kong cuts a label value at its first invalid UTF-8 byte and leaves a
	// newline raw, which no text-format parser accepts.
	name: "raw-label-values",
	cfg:  Config{Toggles: Toggles{StatusCode: true}},
	requests: []Request{
		{Service: "line\nbreak", Route: "r", Code: 200},
		{Service: "bad\xffutf8", Route: "caf\xc3\xa9", Code: 200},
	},
}, {
	// With a stream listener, the stream subsystem's block follows.
	name: "stream",
	cfg: Config{
		Services:       FixtureServices()[:1],
		Toggles:        AllToggles,
		StreamListener: true,
	},
	requests: []Request{
		{Service: "kong.command.80", Route: "kong.command.command.api.example.com.80", Code: 200,
			RequestMs: 102, UpstreamMs: 100, KongMs: 1, BytesIn: 220, BytesOut: 540},
	},
}, {
	// Kong's plugin defaults: no per-service family at all, only the node.
	name: "toggles-off",
	cfg:  Config{Services: FixtureServices(), Workers: 3},
	requests: []Request{
		{Service: "kong.command.80", Route: "kong.command.command.api.example.com.80", Code: 200,
			RequestMs: 102, UpstreamMs: 100, KongMs: 1, BytesIn: 220, BytesOut: 540},
	},
}}

// goldenRequests returns the requests of the golden case name.
func goldenRequests(t *testing.T, name string) []Request {
	t.Helper()
	for _, tc := range goldenCases {
		if tc.name == name {
			return tc.requests
		}
	}
	t.Fatalf("no golden case %q", name)
	return nil
}

// goldenOutput returns the body of the golden case name.
func goldenOutput(t *testing.T, name string) []byte {
	t.Helper()
	for _, tc := range goldenCases {
		if tc.name == name {
			s, err := New(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range tc.requests {
				s.Record(r)
			}
			return writeMetrics(t, s)
		}
	}
	t.Fatalf("no golden case %q", name)
	return nil
}

func TestGolden(t *testing.T) {
	for _, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			golden.Check(t, filepath.Join("testdata", tc.name+".golden"), goldenOutput(t, tc.name))
		})
	}
}
