package inject

import (
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/envconfig"
)

func TestLoadSettingsDefaults(t *testing.T) {
	s, err := LoadSettings([]string{"INJECTOR_SIDECAR_IMAGE=ghcr.io/kong-metrics-sidecar/kong-metrics-sidecar:v1.0.0", "PATH=/usr/bin", "HOME=/"})
	if err != nil {
		t.Fatal(err)
	}
	want := Settings{
		ListenAddr:            ":9443",
		TLSCertFile:           "/etc/kong-metrics-injector/tls/tls.crt",
		TLSKeyFile:            "/etc/kong-metrics-injector/tls/tls.key",
		MetricsAddr:           ":9090",
		SidecarImage:          "ghcr.io/kong-metrics-sidecar/kong-metrics-sidecar:v1.0.0",
		SidecarMode:           ModeNative,
		DefaultConfigMap:      "kong-metrics-sidecar",
		SidecarCPURequest:     "10m",
		SidecarMemoryRequest:  "32Mi",
		SidecarMemoryLimit:    "128Mi",
		DefaultStatusPort:     8100,
		RouteMappingConfigMap: DefaultRouteMappingConfigMap,
		LogSettings:           envconfig.LogSettings{LogLevel: slog.LevelInfo, LogFormat: "json"},
	}
	if !reflect.DeepEqual(s, want) {
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

		{"sidecar resources and status port", []string{image,
			"INJECTOR_SIDECAR_CPU_REQUEST=0.25", "INJECTOR_SIDECAR_MEMORY_REQUEST=64Mi", "INJECTOR_SIDECAR_MEMORY_LIMIT=1Gi", "INJECTOR_DEFAULT_STATUS_PORT=8200",
		}, nil, func(s Settings) bool {
			return s.SidecarCPURequest == "0.25" && s.SidecarMemoryRequest == "64Mi" && s.SidecarMemoryLimit == "1Gi" && s.DefaultStatusPort == 8200
		}},
		{"memory request equal to the limit", []string{image, "INJECTOR_SIDECAR_MEMORY_REQUEST=128Mi"}, nil, func(s Settings) bool {
			return s.SidecarMemoryRequest == "128Mi" && s.SidecarMemoryLimit == "128Mi"
		}},
		{"empty resources mean default", []string{image, "INJECTOR_SIDECAR_CPU_REQUEST=", "INJECTOR_DEFAULT_STATUS_PORT="}, nil, func(s Settings) bool {
			return s.SidecarCPURequest == "10m" && s.DefaultStatusPort == 8100
		}},
		{"min fetch interval", []string{image, "INJECTOR_SIDECAR_MIN_FETCH_INTERVAL=14s"}, nil, func(s Settings) bool { return s.SidecarMinFetchInterval == 14*time.Second }},
		{"min fetch interval default", []string{image}, nil, func(s Settings) bool { return s.SidecarMinFetchInterval == 0 }},
		{"status port bounds", []string{image, "INJECTOR_DEFAULT_STATUS_PORT=65535"}, nil, func(s Settings) bool { return s.DefaultStatusPort == 65535 }},

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
		{"CPU request not a quantity", []string{image, "INJECTOR_SIDECAR_CPU_REQUEST=ten"}, []string{`INJECTOR_SIDECAR_CPU_REQUEST="ten": not a quantity`}, nil},
		{"CPU request zero", []string{image, "INJECTOR_SIDECAR_CPU_REQUEST=0"}, []string{`INJECTOR_SIDECAR_CPU_REQUEST="0": must be more than zero`}, nil},
		{"memory request with a space", []string{image, "INJECTOR_SIDECAR_MEMORY_REQUEST=32 Mi"}, []string{`INJECTOR_SIDECAR_MEMORY_REQUEST="32 Mi": not a quantity`}, nil},
		{"memory limit negative", []string{image, "INJECTOR_SIDECAR_MEMORY_LIMIT=-128Mi"}, []string{`INJECTOR_SIDECAR_MEMORY_LIMIT="-128Mi": must be more than zero`}, nil},
		{"memory request over the default limit", []string{image, "INJECTOR_SIDECAR_MEMORY_REQUEST=256Mi"},
			[]string{`INJECTOR_SIDECAR_MEMORY_REQUEST="256Mi" is more than INJECTOR_SIDECAR_MEMORY_LIMIT="128Mi"`}, nil},
		{"memory limit under the default request", []string{image, "INJECTOR_SIDECAR_MEMORY_LIMIT=16Mi"},
			[]string{`INJECTOR_SIDECAR_MEMORY_REQUEST="32Mi" is more than INJECTOR_SIDECAR_MEMORY_LIMIT="16Mi"`}, nil},
		{"min fetch interval negative", []string{image, "INJECTOR_SIDECAR_MIN_FETCH_INTERVAL=-1s"}, []string{`INJECTOR_SIDECAR_MIN_FETCH_INTERVAL=-1s: must not be negative`}, nil},
		{"min fetch interval without a unit", []string{image, "INJECTOR_SIDECAR_MIN_FETCH_INTERVAL=14"}, []string{`INJECTOR_SIDECAR_MIN_FETCH_INTERVAL`}, nil},
		{"status port 0", []string{image, "INJECTOR_DEFAULT_STATUS_PORT=0"}, []string{`INJECTOR_DEFAULT_STATUS_PORT="0": not a port number from 1 to 65535`}, nil},
		{"status port too large", []string{image, "INJECTOR_DEFAULT_STATUS_PORT=65536"}, []string{`INJECTOR_DEFAULT_STATUS_PORT="65536": not a port number`}, nil},
		{"status port negative", []string{image, "INJECTOR_DEFAULT_STATUS_PORT=-1"}, []string{`INJECTOR_DEFAULT_STATUS_PORT="-1": not a port number`}, nil},
		{"status port signed", []string{image, "INJECTOR_DEFAULT_STATUS_PORT=+8100"}, []string{`INJECTOR_DEFAULT_STATUS_PORT="+8100": not a port number`}, nil},
		{"status port named", []string{image, "INJECTOR_DEFAULT_STATUS_PORT=status"}, []string{`INJECTOR_DEFAULT_STATUS_PORT="status": not a port number`}, nil},
		{"status port is the sidecar's", []string{image, "INJECTOR_DEFAULT_STATUS_PORT=9542"}, []string{`INJECTOR_DEFAULT_STATUS_PORT="9542": the sidecar's own port`}, nil},
		{"every problem at once", []string{"INJECTOR_FOO=1", "INJECTOR_SIDECAR_MODE=x", "INJECTOR_LISTEN_ADDR=x"},
			[]string{"INJECTOR_FOO:", "INJECTOR_SIDECAR_MODE=", "INJECTOR_LISTEN_ADDR=", "INJECTOR_SIDECAR_IMAGE:"}, nil},
		{"every new problem at once", []string{image, "INJECTOR_SIDECAR_CPU_REQUEST=x", "INJECTOR_SIDECAR_MEMORY_REQUEST=0", "INJECTOR_SIDECAR_MEMORY_LIMIT=y", "INJECTOR_DEFAULT_STATUS_PORT=0"},
			[]string{"INJECTOR_SIDECAR_CPU_REQUEST=", "INJECTOR_SIDECAR_MEMORY_REQUEST=", "INJECTOR_SIDECAR_MEMORY_LIMIT=", "INJECTOR_DEFAULT_STATUS_PORT="}, nil},
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

func TestSettingsConfig(t *testing.T) {
	s, err := LoadSettings([]string{"INJECTOR_SIDECAR_IMAGE=kong-metrics-sidecar:dev", "INJECTOR_SIDECAR_MODE=container", "INJECTOR_DEFAULT_CONFIGMAP=metrics",
		"INJECTOR_SIDECAR_CPU_REQUEST=0.25", "INJECTOR_SIDECAR_MEMORY_REQUEST=64Mi", "INJECTOR_SIDECAR_MEMORY_LIMIT=1Gi", "INJECTOR_DEFAULT_STATUS_PORT=8200",
		"INJECTOR_SIDECAR_MIN_FETCH_INTERVAL=14s", "INJECTOR_ROUTE_MAPPING_CONFIGMAP=routes"})
	if err != nil {
		t.Fatal(err)
	}
	c := s.Config("v1.2.3")
	got := fmt.Sprintf("%s %s %s %s %s %s %s %d %s %s", c.Image, c.Mode, c.DefaultConfigMap, c.Version,
		c.SidecarCPURequest.String(), c.SidecarMemoryRequest.String(), c.SidecarMemoryLimit.String(), c.StatusPort, c.MinFetchInterval, c.RouteMappingConfigMap)
	if want := "kong-metrics-sidecar:dev container metrics v1.2.3 250m 64Mi 1Gi 8200 14s routes"; got != want {
		t.Errorf("config %q, want %q", got, want)
	}
}
