package main

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestLoadSettingsDefaults(t *testing.T) {
	s, err := LoadSettings([]string{"PATH=/bin", "HOME=/root"})
	if err != nil {
		t.Fatal(err)
	}
	if s.ListenAddr != ":9542" || s.UpstreamURL.String() != "http://127.0.0.1:8100/metrics" ||
		s.ConfigFile != "/etc/kong-metrics-sidecar/config.yaml" || s.ScrapeTimeout != 10*time.Second ||
		s.ConfigPollInterval != 30*time.Second || s.MaxUpstreamBytes != 1<<30 ||
		s.LogLevel != slog.LevelInfo || s.LogFormat != "json" {
		t.Errorf("defaults: %+v", s)
	}
}

func TestLoadSettingsValues(t *testing.T) {
	s, err := LoadSettings([]string{
		"SIDECAR_LISTEN_ADDR=127.0.0.1:1234",
		"SIDECAR_UPSTREAM_URL=https://[::1]:8100/metrics",
		"SIDECAR_SCRAPE_TIMEOUT=3s",
		"SIDECAR_MAX_UPSTREAM_BYTES=64MiB",
		"SIDECAR_LOG_LEVEL=debug",
		"SIDECAR_LOG_FORMAT=text",
		// A Service named "sidecar" in Kong's namespace, as the kubelet announces it.
		"SIDECAR_SERVICE_HOST=10.96.0.12",
		"SIDECAR_SERVICE_PORT=9542",
		"SIDECAR_SERVICE_PORT_METRICS=9542",
		"SIDECAR_PORT=tcp://10.96.0.12:9542",
		"SIDECAR_PORT_9542_TCP=tcp://10.96.0.12:9542",
		"SIDECAR_PORT_9542_TCP_PROTO=tcp",
		"SIDECAR_PORT_9542_TCP_PORT=9542",
		"SIDECAR_PORT_9542_TCP_ADDR=10.96.0.12",
		// And one named "sidecar-upstream", over IPv6.
		"SIDECAR_UPSTREAM_SERVICE_HOST=fd00::12",
		"SIDECAR_UPSTREAM_PORT=tcp://[fd00::12]:80",
	})
	if err != nil {
		t.Fatal(err)
	}
	if s.ListenAddr != "127.0.0.1:1234" || s.UpstreamURL.Host != "[::1]:8100" || s.ScrapeTimeout != 3*time.Second ||
		s.MaxUpstreamBytes != 64<<20 || s.LogLevel != slog.LevelDebug || s.LogFormat != "text" {
		t.Errorf("values: %+v", s)
	}
}

func TestLoadSettingsErrors(t *testing.T) {
	tests := []struct {
		env  string
		want string // the message must name the variable
	}{
		{"SIDECAR_LISTEN_ADR=:9542", "SIDECAR_LISTEN_ADR: unknown variable"},
		{"SIDECAR_CONFIG=/x", "SIDECAR_CONFIG: unknown variable"},
		// Service-link shaped names with values that do not fit are typos.
		{"SIDECAR_LISTEN_PORT=9542", "SIDECAR_LISTEN_PORT: unknown variable"},
		{"SIDECAR_SERVICE_HOST=not-an-ip", "SIDECAR_SERVICE_HOST: unknown variable"},
		{"SIDECAR_UPSTREAM_URL=127.0.0.1:8100/metrics", `SIDECAR_UPSTREAM_URL="127.0.0.1:8100/metrics"`},
		{"SIDECAR_UPSTREAM_URL=ftp://kong/metrics", `SIDECAR_UPSTREAM_URL="ftp://kong/metrics": scheme must be http or https`},
		{"SIDECAR_UPSTREAM_URL=http:///metrics", `SIDECAR_UPSTREAM_URL="http:///metrics": no host`},
		{"SIDECAR_SCRAPE_TIMEOUT=10", `SIDECAR_SCRAPE_TIMEOUT="10"`},
		{"SIDECAR_SCRAPE_TIMEOUT=-1s", "SIDECAR_SCRAPE_TIMEOUT=-1s: must be positive"},
		{"SIDECAR_CONFIG_POLL_INTERVAL=0s", "SIDECAR_CONFIG_POLL_INTERVAL=0s: must be positive"},
		{"SIDECAR_MAX_UPSTREAM_BYTES=lots", `SIDECAR_MAX_UPSTREAM_BYTES="lots": invalid size`},
		{"SIDECAR_MAX_UPSTREAM_BYTES=-1", `SIDECAR_MAX_UPSTREAM_BYTES="-1": invalid size`},
		{"SIDECAR_MAX_UPSTREAM_BYTES=99999999999TiB", `SIDECAR_MAX_UPSTREAM_BYTES="99999999999TiB": size "99999999999TiB" is too large`},
		{"SIDECAR_MAX_UPSTREAM_BYTES=0", "SIDECAR_MAX_UPSTREAM_BYTES=0: must be positive"},
		{"SIDECAR_LOG_LEVEL=loud", `SIDECAR_LOG_LEVEL="loud"`},
		{"SIDECAR_LOG_FORMAT=xml", `SIDECAR_LOG_FORMAT="xml": want json or text`},
		{"SIDECAR_KONG_ADMIN_URL=127.0.0.1:8444", "SIDECAR_KONG_ADMIN_URL=127.0.0.1:8444"},
		{"SIDECAR_KONG_ADMIN_URL=ftp://kong", "SIDECAR_KONG_ADMIN_URL=ftp://kong: scheme must be http or https"},
		{"SIDECAR_KONG_ADMIN_CERT_FILE=/tls.crt", "SIDECAR_KONG_ADMIN_CERT_FILE and SIDECAR_KONG_ADMIN_KEY_FILE must be set together"},
		{"SIDECAR_KONG_ADMIN_REFRESH_INTERVAL=0s", "SIDECAR_KONG_ADMIN_REFRESH_INTERVAL=0s: must be positive"},
	}
	for _, tc := range tests {
		_, err := LoadSettings([]string{tc.env})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("LoadSettings(%q) = %v, want an error containing %q", tc.env, err, tc.want)
		}
	}
}

func TestLoadSettingsReportsEveryProblem(t *testing.T) {
	_, err := LoadSettings([]string{"SIDECAR_A=1", "SIDECAR_SCRAPE_TIMEOUT=x", "SIDECAR_LOG_FORMAT=xml"})
	for _, want := range []string{"SIDECAR_A", "SIDECAR_SCRAPE_TIMEOUT", "SIDECAR_LOG_FORMAT"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not name %s", err, want)
		}
	}
}

func TestKongAdminSettings(t *testing.T) {
	s, err := LoadSettings([]string{
		"SIDECAR_KONG_ADMIN_URL=https://127.0.0.1:8444",
		"SIDECAR_KONG_ADMIN_CERT_FILE=/tls/tls.crt",
		"SIDECAR_KONG_ADMIN_KEY_FILE=/tls/tls.key",
		"SIDECAR_KONG_ADMIN_TOKEN=hunter2",
		"SIDECAR_KONG_ADMIN_REFRESH_INTERVAL=1m",
	})
	if err != nil {
		t.Fatal(err)
	}
	if s.KongAdminURL != "https://127.0.0.1:8444" || s.KongAdminToken != "hunter2" || s.KongAdminRefreshInterval != time.Minute {
		t.Errorf("values: %+v", s)
	}
	if printed := fmt.Sprintf("%v %+v", s.KongAdminToken, s); strings.Contains(printed, "hunter2") {
		t.Errorf("the token prints: %s", printed)
	}
}

// TestSettingsErrorsHidePasswords: a URL setting that is refused is quoted
// with its password as xxxxx.
func TestSettingsErrorsHidePasswords(t *testing.T) {
	for _, env := range []string{
		"SIDECAR_UPSTREAM_URL=http://user:hunter2@kong:bad/metrics",
		"SIDECAR_UPSTREAM_URL=ftp://user:hunter2@kong/metrics",
		"SIDECAR_KONG_ADMIN_URL=ftp://admin:hunter2@kong:8444",
		"SIDECAR_KONG_ADMIN_URL=http://admin:hunter2@kong:bad",
	} {
		_, err := LoadSettings([]string{env})
		if err == nil || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("LoadSettings(%q) = %v, want an error without the password", env, err)
		}
	}
}
