package envconfig

import (
	"log/slog"
	"slices"
	"strings"
	"testing"
)

func TestIsServiceLinkVariable(t *testing.T) {
	tests := []struct {
		name, value string
		want        bool
	}{
		{"KONG_SERVICE_HOST", "10.0.0.1", true},
		{"KONG_SERVICE_PORT_PROXY", "80", true},
		{"KONG_PORT", "tcp://10.0.0.1:80", true},
		{"KONG_PORT_80_UDP", "udp://10.0.0.1:80", true},
		{"KONG_PORT_80_SCTP_PROTO", "sctp", true},
		{"KONG_PORT", "80", false},
		{"KONG_SERVICE_PORT", "http", false},
		{"KONG_SERVICE_HOSTNAME", "10.0.0.1", false},
		{"KONG_PORT_80_TCP_ADDR", "kong", false},
	}
	for _, tc := range tests {
		if got := IsServiceLinkVariable(tc.name, tc.value); got != tc.want {
			t.Errorf("IsServiceLinkVariable(%s=%s) = %v", tc.name, tc.value, got)
		}
	}
}

// testSettings declares one variable of each kind ParseEnv handles, with
// the log settings embedded between them.
type testSettings struct {
	Addr  string   `env:"ADDR" envDefault:":1" help:"an address"`
	Limit ByteSize `env:"LIMIT" envDefault:"1KiB" help:"a size"`
	LogSettings
	Token Secret `env:"TOKEN" help:"a token"`
}

func TestParseEnv(t *testing.T) {
	tests := []struct {
		name    string
		environ []string
		want    testSettings
		errs    []string // each in the error, in this order; none for success
	}{
		{"defaults", []string{"PATH=/bin", "OTHER_ADDR=x"},
			testSettings{Addr: ":1", Limit: 1024, LogSettings: LogSettings{LogLevel: slog.LevelInfo, LogFormat: "json"}}, nil},
		{"values", []string{"T_ADDR=:2", "T_LIMIT=2MB", "T_LOG_LEVEL=debug", "T_LOG_FORMAT=text", "T_TOKEN=hunter2"},
			testSettings{Addr: ":2", Limit: 2e6, LogSettings: LogSettings{LogLevel: slog.LevelDebug, LogFormat: "text"}, Token: "hunter2"}, nil},
		{"service links are not typos", []string{"T_SERVICE_HOST=10.0.0.1", "T_SERVICE_PORT=80", "T_PORT=tcp://10.0.0.1:80"},
			testSettings{Addr: ":1", Limit: 1024, LogSettings: LogSettings{LogLevel: slog.LevelInfo, LogFormat: "json"}}, nil},
		{"unknown variables, sorted", []string{"T_B=1", "T_A=1"}, testSettings{}, []string{
			"T_A: unknown variable (known: T_ADDR, T_LIMIT, T_LOG_LEVEL, T_LOG_FORMAT, T_TOKEN)",
			"T_B: unknown variable (known: T_ADDR, T_LIMIT, T_LOG_LEVEL, T_LOG_FORMAT, T_TOKEN)",
		}},
		{"invalid values name their variable", []string{"T_LIMIT=lots", "T_LOG_FORMAT=xml"}, testSettings{}, []string{
			`T_LIMIT="lots": invalid size "lots"`,
			`T_LOG_FORMAT="xml": want json or text, not "xml"`,
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseEnv[testSettings]("T_", tc.environ)
			if len(tc.errs) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if got != tc.want {
					t.Errorf("ParseEnv = %+v, want %+v", got, tc.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %q", tc.errs)
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tc.errs) {
				t.Fatalf("error has %d lines, want %d:\n%v", len(lines), len(tc.errs), err)
			}
			for i, want := range tc.errs {
				if !strings.HasPrefix(lines[i], want) {
					t.Errorf("error line %d %q, want it to start with %q", i+1, lines[i], want)
				}
			}
		})
	}
}

func TestVariables(t *testing.T) {
	want := []Variable{
		{"T_ADDR", ":1", "an address"},
		{"T_LIMIT", "1KiB", "a size"},
		{"T_LOG_LEVEL", "info", "debug, info, warn or error"},
		{"T_LOG_FORMAT", "json", "json or text"},
		{"T_TOKEN", "", "a token"},
	}
	if got := Variables[testSettings]("T_"); !slices.Equal(got, want) {
		t.Errorf("Variables =\n  %q\nwant\n  %q", got, want)
	}
}
