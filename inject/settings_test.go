package inject

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/envconfig"
)

func TestLoadSettingsDefaults(t *testing.T) {
	s, err := LoadSettings([]string{"INJECTOR_SIDECAR_IMAGE=ghcr.io/kong-metrics-sidecar/kong-metrics-sidecar:v1.0.0", "PATH=/usr/bin", "HOME=/"})
	if err != nil {
		t.Fatal(err)
	}
	want := Settings{
		ListenAddr:       ":9443",
		TLSCertFile:      "/etc/kong-metrics-injector/tls/tls.crt",
		TLSKeyFile:       "/etc/kong-metrics-injector/tls/tls.key",
		MetricsAddr:      ":9090",
		SidecarImage:     "ghcr.io/kong-metrics-sidecar/kong-metrics-sidecar:v1.0.0",
		SidecarMode:      ModeNative,
		DefaultConfigMap: "kong-metrics-sidecar",
		LogSettings:      envconfig.LogSettings{LogLevel: slog.LevelInfo, LogFormat: "json"},
	}
	if s != want {
		t.Errorf("settings\n  %+v\nwant\n  %+v", s, want)
	}
}

func TestLoadSettings(t *testing.T) {
	const image = "INJECTOR_SIDECAR_IMAGE=kong-metrics-sidecar:dev"
	cases := []struct {
		name    string
		environ []string
		errs    []string // each in the error; none for success
		check   func(Settings) bool
	}{
		{"everything set", []string{
			"INJECTOR_LISTEN_ADDR=0.0.0.0:8443", "INJECTOR_TLS_CERT_FILE=/tls/c", "INJECTOR_TLS_KEY_FILE=/tls/k",
			"INJECTOR_METRICS_ADDR=127.0.0.1:9091", "INJECTOR_SIDECAR_IMAGE=registry.example.com:5000/team/sidecar@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
			"INJECTOR_SIDECAR_MODE=container", "INJECTOR_DEFAULT_CONFIGMAP=metrics.v2", "INJECTOR_LOG_LEVEL=debug", "INJECTOR_LOG_FORMAT=text",
		}, nil, func(s Settings) bool {
			return s.ListenAddr == "0.0.0.0:8443" && s.SidecarMode == ModeContainer && s.DefaultConfigMap == "metrics.v2" &&
				s.LogLevel == slog.LevelDebug && s.LogFormat == "text" && s.TLSKeyFile == "/tls/k"
		}},
		{"empty means default", []string{image, "INJECTOR_TLS_CERT_FILE=", "INJECTOR_SIDECAR_MODE="}, nil, func(s Settings) bool {
			return s.TLSCertFile == "/etc/kong-metrics-injector/tls/tls.crt" && s.SidecarMode == ModeNative
		}},
		{"IPv6 listen address", []string{image, "INJECTOR_LISTEN_ADDR=[::]:9443"}, nil, func(s Settings) bool { return s.ListenAddr == "[::]:9443" }},
		// The kubelet sets these for a Service named "injector".
		{"service links", []string{image,
			"INJECTOR_SERVICE_HOST=10.0.0.1", "INJECTOR_SERVICE_PORT=443", "INJECTOR_SERVICE_PORT_HTTPS=443",
			"INJECTOR_PORT=tcp://10.0.0.1:443", "INJECTOR_PORT_443_TCP=tcp://10.0.0.1:443", "INJECTOR_PORT_443_TCP_PROTO=tcp",
			"INJECTOR_PORT_443_TCP_PORT=443", "INJECTOR_PORT_443_TCP_ADDR=10.0.0.1",
		}, nil, nil},

		{"missing image", nil, []string{"INJECTOR_SIDECAR_IMAGE: required"}, nil},
		{"empty image", []string{"INJECTOR_SIDECAR_IMAGE="}, []string{"INJECTOR_SIDECAR_IMAGE: required"}, nil},
		{"image with a space", []string{"INJECTOR_SIDECAR_IMAGE=kong metrics"}, []string{`INJECTOR_SIDECAR_IMAGE="kong metrics": not an image reference`}, nil},
		{"image with upper case", []string{"INJECTOR_SIDECAR_IMAGE=Kong/Sidecar:1"}, []string{`INJECTOR_SIDECAR_IMAGE="Kong/Sidecar:1": not an image reference`}, nil},
		{"image with a bad digest", []string{"INJECTOR_SIDECAR_IMAGE=sidecar@sha256:xyz"}, []string{`INJECTOR_SIDECAR_IMAGE="sidecar@sha256:xyz"`}, nil},
		{"unknown variable", []string{image, "INJECTOR_FOO=bar"}, []string{"INJECTOR_FOO: unknown variable (known: INJECTOR_LISTEN_ADDR,"}, nil},
		{"typo", []string{image, "INJECTOR_SIDECAR_MODES=native"}, []string{"INJECTOR_SIDECAR_MODES: unknown variable"}, nil},
		{"service-link name with a bad value", []string{image, "INJECTOR_SERVICE_HOST=injector.example"}, []string{"INJECTOR_SERVICE_HOST: unknown variable"}, nil},
		{"mode", []string{image, "INJECTOR_SIDECAR_MODE=sidecar"}, []string{`INJECTOR_SIDECAR_MODE="sidecar": want native or container`}, nil},
		{"log level", []string{image, "INJECTOR_LOG_LEVEL=verbose"}, []string{`INJECTOR_LOG_LEVEL="verbose"`}, nil},
		{"log format", []string{image, "INJECTOR_LOG_FORMAT=yaml"}, []string{`INJECTOR_LOG_FORMAT="yaml": want json or text`}, nil},
		{"listen address without a port", []string{image, "INJECTOR_LISTEN_ADDR=0.0.0.0"}, []string{`INJECTOR_LISTEN_ADDR="0.0.0.0": want [host]:port`}, nil},
		{"metrics port out of range", []string{image, "INJECTOR_METRICS_ADDR=:90900"}, []string{`INJECTOR_METRICS_ADDR=":90900": port "90900" is not a number`}, nil},
		{"named port", []string{image, "INJECTOR_METRICS_ADDR=:http"}, []string{`INJECTOR_METRICS_ADDR=":http": port "http"`}, nil},
		{"ConfigMap name", []string{image, "INJECTOR_DEFAULT_CONFIGMAP=Kong_Metrics"}, []string{`INJECTOR_DEFAULT_CONFIGMAP="Kong_Metrics": not a ConfigMap name`}, nil},
		{"every problem at once", []string{"INJECTOR_FOO=1", "INJECTOR_SIDECAR_MODE=x", "INJECTOR_LISTEN_ADDR=x"},
			[]string{"INJECTOR_FOO:", "INJECTOR_SIDECAR_MODE=", "INJECTOR_LISTEN_ADDR=", "INJECTOR_SIDECAR_IMAGE:"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := LoadSettings(tc.environ)
			if len(tc.errs) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if tc.check != nil && !tc.check(s) {
					t.Errorf("settings %+v", s)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error; want %q", tc.errs)
			}
			for _, want := range tc.errs {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
			if got := strings.Count(err.Error(), "\n") + 1; got != len(tc.errs) {
				t.Errorf("error has %d lines, want %d:\n%v", got, len(tc.errs), err)
			}
		})
	}
}
