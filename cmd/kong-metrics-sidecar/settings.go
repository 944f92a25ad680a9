package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/envconfig"
)

// EnvPrefix is the prefix of every sidecar setting.
const EnvPrefix = "SIDECAR_"

// MaxUpstreamBytesCeiling is the largest SIDECAR_MAX_UPSTREAM_BYTES: far
// above any page, and far enough below the largest int64 that no count
// of bytes compared with it can overflow.
const MaxUpstreamBytesCeiling = 1 << 50

// Settings are the sidecar's settings, read from SIDECAR_* variables.
type Settings struct {
	ListenAddr         string             `env:"LISTEN_ADDR" envDefault:":9542" help:"where /metrics, /healthz and /readyz are served"`
	UpstreamURL        envconfig.URL      `env:"UPSTREAM_URL" envDefault:"http://127.0.0.1:8100/metrics" help:"Kong's status endpoint (/metrics of Kong's Prometheus plugin)"`
	ConfigFile         string             `env:"CONFIG_FILE" envDefault:"/etc/kong-metrics-sidecar/config.yaml" help:"the extension file (DataPlaneMetricsExtension / KongServiceMapping documents)"`
	RouteMappingFile   string             `env:"ROUTE_MAPPING_FILE" envDefault:"/etc/kong-metrics-sidecar-routes/routes.json.gz" help:"the route mapping the injector publishes (HTTPRoute/GRPCRoute rules to Services); missing means none; the extension file's own mappings win (empty: not followed)"`
	ConfigPollInterval time.Duration      `env:"CONFIG_POLL_INTERVAL" envDefault:"30s" help:"how often the extension file is re-read as a fallback for missed file events"`
	ScrapeTimeout      time.Duration      `env:"SCRAPE_TIMEOUT" envDefault:"10s" help:"upper bound for one upstream fetch; a smaller X-Prometheus-Scrape-Timeout-Seconds (less a margin) wins"`
	MaxUpstreamBytes   envconfig.ByteSize `env:"MAX_UPSTREAM_BYTES" envDefault:"1GiB" help:"a larger upstream body is an upstream failure"`
	MinFetchInterval   time.Duration      `env:"MIN_FETCH_INTERVAL" envDefault:"0s" help:"scrapes within this long of a successful fetch's start are answered from it instead of fetching Kong again; 0 fetches for every scrape"`
	WebConfigFile      string             `env:"WEB_CONFIG_FILE" envDefault:"" help:"exporter-toolkit web configuration file: TLS and basic auth for the sidecar's endpoints (empty: plain HTTP)"`
	envconfig.LogSettings

	KongAdminURL             string           `env:"KONG_ADMIN_URL" envDefault:"" help:"Kong's Admin API, read for the tags KIC puts on Kong services (empty: off), e.g. https://127.0.0.1:8444"`
	KongAdminCAFile          string           `env:"KONG_ADMIN_CA_FILE" envDefault:"" help:"CA bundle that signs the Admin API's certificate (empty: the system roots)"`
	KongAdminCertFile        string           `env:"KONG_ADMIN_CERT_FILE" envDefault:"" help:"client certificate for the Admin API, re-read when it changes"`
	KongAdminKeyFile         string           `env:"KONG_ADMIN_KEY_FILE" envDefault:"" help:"the client certificate's key"`
	KongAdminToken           envconfig.Secret `env:"KONG_ADMIN_TOKEN" envDefault:"" help:"sent as the Kong-Admin-Token header (empty: none)"`
	KongAdminRefreshInterval time.Duration    `env:"KONG_ADMIN_REFRESH_INTERVAL" envDefault:"30s" help:"how often the Admin API's services are read again"`
}

// LoadSettings reads the sidecar's settings from environ. The error lists
// every problem, one a line, each naming its variable.
func LoadSettings(environ []string) (Settings, error) {
	s, err := envconfig.ParseEnv[Settings](EnvPrefix, environ)
	errs := []error{err}
	// check reports problem for the variable name unless ParseEnv refused
	// its value already (the field then holds its zero value).
	check := func(name string, bad bool, format string, args ...any) {
		if bad && !envconfig.Invalid(err, EnvPrefix+name) {
			errs = append(errs, fmt.Errorf("%s%s"+format, append([]any{EnvPrefix, name}, args...)...))
		}
	}
	if addrErr := envconfig.CheckListenAddr(s.ListenAddr); addrErr != nil {
		check("LISTEN_ADDR", true, "=%q: %v", s.ListenAddr, addrErr)
	}
	check("SCRAPE_TIMEOUT", s.ScrapeTimeout <= 0, "=%s: must be positive, such as 10s", s.ScrapeTimeout)
	check("CONFIG_POLL_INTERVAL", s.ConfigPollInterval <= 0, "=%s: must be positive, such as 30s", s.ConfigPollInterval)
	check("MIN_FETCH_INTERVAL", s.MinFetchInterval < 0, "=%s: must not be negative; 0s fetches Kong for every scrape", s.MinFetchInterval)
	if s.KongAdminURL != "" {
		var u envconfig.URL
		if urlErr := u.UnmarshalText([]byte(s.KongAdminURL)); urlErr != nil {
			check("KONG_ADMIN_URL", true, "=%s: %v", envconfig.Redact(s.KongAdminURL), urlErr)
		}
	}
	check("KONG_ADMIN_CERT_FILE", (s.KongAdminCertFile == "") != (s.KongAdminKeyFile == ""),
		" and %sKONG_ADMIN_KEY_FILE must be set together", EnvPrefix)
	check("KONG_ADMIN_REFRESH_INTERVAL", s.KongAdminRefreshInterval <= 0, "=%s: must be positive, such as 30s", s.KongAdminRefreshInterval)
	check("MAX_UPSTREAM_BYTES", s.MaxUpstreamBytes <= 0, "=%d: must be positive, such as 1GiB", s.MaxUpstreamBytes)
	check("MAX_UPSTREAM_BYTES", s.MaxUpstreamBytes > MaxUpstreamBytesCeiling, "=%d: must be at most %d (1024TiB)", s.MaxUpstreamBytes, MaxUpstreamBytesCeiling)
	return s, errors.Join(errs...)
}
