package inject

import (
	"errors"
	"net/url"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestParseStatusListen(t *testing.T) {
	cases := []struct {
		value     string
		port      int
		ipv6Only  bool
		reachable bool   // from loopback
		err       string // in the error; "" for none
	}{
		// One plain listener, in the forms Kong accepts.
		{value: "0.0.0.0:8100", port: 8100, reachable: true},
		{value: "127.0.0.1:8007", port: 8007, reachable: true},
		{value: "  0.0.0.0:8100 reuseport backlog=16384  ", port: 8100, reachable: true},
		{value: "0.0.0.0:8100 deferred bind so_keepalive=on", port: 8100, reachable: true},
		{value: "0.0.0.0:8100 so_keepalive=30m::10", port: 8100, reachable: true},
		{value: "localhost:8100", port: 8100, reachable: true},
		{value: "*:8100", port: 8100, reachable: true},
		// IPv6: nginx binds it with ipv6only=on unless told otherwise.
		{value: "[::]:8100", port: 8100, ipv6Only: true, reachable: true},
		{value: "[::1]:8100", port: 8100, ipv6Only: true, reachable: true},
		{value: "[::]:8100 ipv6only=off", port: 8100, reachable: true},
		{value: "[::1]:8100 ipv6only=off", port: 8100, ipv6Only: true, reachable: true}, // only :: can be dual-stack
		// Several listeners: the first plain-HTTP one.
		{value: "0.0.0.0:8100, [::]:8100", port: 8100, reachable: true},
		{value: "[::]:8101, 0.0.0.0:8100", port: 8101, ipv6Only: true, reachable: true},
		{value: "127.0.0.1:8007 ssl, 0.0.0.0:8100", port: 8100, reachable: true},
		{value: "0.0.0.0:8443 http2 ssl,0.0.0.0:8100", port: 8100, reachable: true},
		{value: "0.0.0.0:8100 proxy_protocol, 0.0.0.0:8101", port: 8101, reachable: true},
		{value: "0.0.0.0:8100 http2, 0.0.0.0:8101", port: 8101, reachable: true}, // h2c only
		{value: "0.0.0.0:8100,", port: 8100, reachable: true},
		// Bound to one address: reported, since loopback does not reach it.
		{value: "10.1.2.3:8100", port: 8100},
		{value: "[fd00::1]:8100", port: 8100, ipv6Only: true},
		{value: "kong.example.com:8100", port: 8100},
		// No listener.
		{value: "off", err: "status listener is off"},
		{value: " off ", err: "status listener is off"},
		{value: "off, 0.0.0.0:8100", err: "status listener is off"},
		{value: "127.0.0.1:8007 ssl", err: "no plain-HTTP listener"},
		{value: "0.0.0.0:8100 ssl, [::]:8100 ssl", err: "no plain-HTTP listener"},
		{value: "", err: "no plain-HTTP listener"},
		{value: " , ", err: "no plain-HTTP listener"},
		// Malformed.
		{value: "0.0.0.0", err: `listener "0.0.0.0": want <ip>:<port>`},
		{value: "8100", err: "want <ip>:<port>"},
		{value: ":8100", err: `"" is neither an IPv4 address nor a host name`},
		{value: "0.0.0.0:", err: `port "" is not a number`},
		{value: "0.0.0.0:0", err: `port "0" is not a number`},
		{value: "0.0.0.0:65536", err: `port "65536" is not a number`},
		{value: "0.0.0.0:+80", err: `port "+80" is not a number`},
		{value: "0.0.0.0:http", err: `port "http" is not a number`},
		{value: "::1:8100", err: "too many colons"},
		{value: "[127.0.0.1]:8100", err: `"127.0.0.1" is not an IPv6 address`},
		{value: "[::1:8100", err: "want <ip>:<port>"},
		{value: "0.0.0.0:8100 sll", err: `unknown flag "sll"`},
		{value: "0.0.0.0:8100 backlog=", err: `unknown flag "backlog="`},
		{value: "0.0.0.0:8100 SSL", err: `unknown flag "SSL"`},
		{value: "0.0.0.0:8100, bogus", err: `listener "bogus"`},
		{value: "kong_status:8100", port: 8100}, // a name nginx would resolve
		{value: "bad host:8100", err: "want <ip>:<port>"},
	}
	for _, tc := range cases {
		t.Run(tc.value, func(t *testing.T) {
			l, err := parseStatusListen(tc.value)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("parseStatusListen(%q) = %+v, %v; want an error containing %q", tc.value, l, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseStatusListen(%q): %v", tc.value, err)
			}
			if l.port != tc.port || l.ipv6Only != tc.ipv6Only || l.loopbackReachable != tc.reachable {
				t.Errorf("parseStatusListen(%q) = port %d ipv6Only %v reachable %v; want %d %v %v",
					tc.value, l.port, l.ipv6Only, l.loopbackReachable, tc.port, tc.ipv6Only, tc.reachable)
			}
		})
	}
}

func TestStatusListenOffIsRecognisable(t *testing.T) {
	c := &corev1.Container{Name: "proxy", Env: []corev1.EnvVar{{Name: "KONG_STATUS_LISTEN", Value: "off"}}}
	if _, err := kongStatusTarget(c, 0); !errors.Is(err, errStatusListenOff) {
		t.Fatalf("got %v, want errStatusListenOff", err)
	}
}

func FuzzParseStatusListen(f *testing.F) {
	for _, s := range []string{
		"0.0.0.0:8100", "127.0.0.1:8007 ssl", "[::]:8100", "[::]:8100 ipv6only=off", "0.0.0.0:8100, [::]:8100",
		"off", "127.0.0.1:8007 ssl, [::1]:8101 reuseport backlog=511", "*:8100", "[fe80::1%eth0]:8100", "0.0.0.0", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, value string) {
		l, err := parseStatusListen(value)
		if err != nil {
			if l != (statusListener{}) {
				t.Errorf("error %v with a listener %+v", err, l)
			}
			return
		}
		if l.port < 1 || l.port > 65535 {
			t.Fatalf("port %d out of range for %q", l.port, value)
		}
		if !strings.Contains(value, l.address) || strings.ContainsAny(l.address, " \t,") {
			t.Errorf("address %q is not one entry of %q", l.address, value)
		}
		target := statusTarget{port: l.port, ipv6: l.ipv6Only}
		u, err := url.Parse(target.upstreamURL())
		if err != nil {
			t.Fatalf("upstream URL %q: %v", target.upstreamURL(), err)
		}
		if h := u.Hostname(); h != "127.0.0.1" && h != "::1" {
			t.Errorf("upstream host %q", h)
		}
	})
}

func TestKongContainer(t *testing.T) {
	cases := []struct {
		name       string
		containers []corev1.Container
		want       int
	}{
		{"official image", []corev1.Container{{Name: "gw", Image: "kong:3.9"}}, 0},
		{"enterprise image", []corev1.Container{{Name: "gw", Image: "kong/kong-gateway:3.9"}}, 0},
		{"private registry with a port", []corev1.Container{{Name: "gw", Image: "registry.example.com:5000/platform/kong:3.9.1"}}, 0},
		{"digest", []corev1.Container{{Name: "gw", Image: "docker.io/kong/kong-gateway@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}}, 0},
		{"tag and digest", []corev1.Container{{Name: "gw", Image: "kong:3.9@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}}, 0},
		{"untagged", []corev1.Container{{Name: "gw", Image: "kong"}}, 0},
		{"ingress controller is not Kong", []corev1.Container{{Name: "ic", Image: "kong/kubernetes-ingress-controller:3.4"}}, -1},
		{"name that only contains kong", []corev1.Container{{Name: "x", Image: "example.com/kong-proxy:1"}, {Name: "y", Image: "kongish:1"}}, -1},
		{"kong as a path element but not the last", []corev1.Container{{Name: "x", Image: "kong/deck:1.40"}}, -1},
		{"after a controller", []corev1.Container{{Name: "ic", Image: "kong/kubernetes-ingress-controller:3.4"}, {Name: "gw", Image: "kong:3.9"}}, 1},
		{"proxy wins over image", []corev1.Container{{Name: "gw", Image: "kong:3.9"}, {Name: "proxy", Image: "example.com/custom-kong-build:1"}}, 1},
		{"first Kong image", []corev1.Container{{Name: "a", Image: "kong:3.9"}, {Name: "b", Image: "kong:3.8"}}, 0},
		{"none", []corev1.Container{{Name: "web", Image: "nginx:1.27"}}, -1},
		{"no containers", nil, -1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pod := &corev1.Pod{Spec: corev1.PodSpec{Containers: tc.containers}}
			if got := kongContainer(pod); got != tc.want {
				t.Errorf("kongContainer = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestKongStatusTarget(t *testing.T) {
	env := func(kv ...string) []corev1.EnvVar {
		var out []corev1.EnvVar
		for i := 0; i < len(kv); i += 2 {
			out = append(out, corev1.EnvVar{Name: kv[i], Value: kv[i+1]})
		}
		return out
	}
	ports := []corev1.ContainerPort{{Name: "proxy", ContainerPort: 8000}, {Name: "metrics", ContainerPort: 8101}, {Name: "status", ContainerPort: 8102}}
	fromRef := []corev1.EnvVar{{Name: "KONG_STATUS_LISTEN", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{Key: "k"}}}}
	cases := []struct {
		name    string
		c       corev1.Container
		want    string
		warning string
		err     string
	}{
		{"env wins over ports", corev1.Container{Env: env("KONG_STATUS_LISTEN", "0.0.0.0:8200"), Ports: ports}, "http://127.0.0.1:8200/metrics", "", ""},
		{"last env entry wins", corev1.Container{Env: env("KONG_STATUS_LISTEN", "0.0.0.0:8200", "KONG_STATUS_LISTEN", "[::]:8300")}, "http://[::1]:8300/metrics", "", ""},
		{"status port before metrics port", corev1.Container{Ports: ports}, "http://127.0.0.1:8102/metrics", "", ""},
		{"metrics port", corev1.Container{Ports: ports[:2]}, "http://127.0.0.1:8101/metrics", "", ""},
		{"UDP port ignored", corev1.Container{Ports: []corev1.ContainerPort{{Name: "status", ContainerPort: 8102, Protocol: corev1.ProtocolUDP}}}, "http://127.0.0.1:8100/metrics", "", ""},
		{"default", corev1.Container{}, "http://127.0.0.1:8100/metrics", "", ""},
		{"empty env is unset", corev1.Container{Env: env("KONG_STATUS_LISTEN", " "), Ports: ports[:2]}, "http://127.0.0.1:8101/metrics", "", ""},
		{"env from a reference", corev1.Container{Name: "proxy", Env: fromRef, Ports: ports[:2]}, "http://127.0.0.1:8101/metrics", `container "proxy" takes KONG_STATUS_LISTEN from a reference`, ""},
		{"specific address", corev1.Container{Env: env("KONG_STATUS_LISTEN", "10.0.0.7:8100")}, "http://127.0.0.1:8100/metrics", `"10.0.0.7:8100" is bound to one address`, ""},
		{"off", corev1.Container{Env: env("KONG_STATUS_LISTEN", "off"), Ports: ports}, "", "", "status listener is off"},
		{"malformed", corev1.Container{Name: "proxy", Env: env("KONG_STATUS_LISTEN", "0.0.0.0:x")}, "", "", `container "proxy": KONG_STATUS_LISTEN="0.0.0.0:x": listener "0.0.0.0:x": port "x"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := kongStatusTarget(&tc.c, 0)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %+v, %v; want an error containing %q", got, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.upstreamURL() != tc.want {
				t.Errorf("upstream %q, want %q", got.upstreamURL(), tc.want)
			}
			if (tc.warning == "") != (got.warning == "") || !strings.Contains(got.warning, tc.warning) {
				t.Errorf("warning %q, want %q", got.warning, tc.warning)
			}
		})
	}
}

// TestKongStatusTargetDefaultPort checks that the configured default port
// (INJECTOR_DEFAULT_STATUS_PORT) is used only where Kong's container names
// no port.
func TestKongStatusTargetDefaultPort(t *testing.T) {
	fromRef := []corev1.EnvVar{{Name: "KONG_STATUS_LISTEN", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{Key: "k"}}}}
	cases := []struct {
		name        string
		c           corev1.Container
		defaultPort int
		want        string
		warning     string
	}{
		{"zero is Kong's default", corev1.Container{}, 0, "http://127.0.0.1:8100/metrics", ""},
		{"configured default", corev1.Container{}, 8200, "http://127.0.0.1:8200/metrics", ""},
		{"env wins", corev1.Container{Env: []corev1.EnvVar{{Name: "KONG_STATUS_LISTEN", Value: "0.0.0.0:8300"}}}, 8200, "http://127.0.0.1:8300/metrics", ""},
		{"named port wins", corev1.Container{Ports: []corev1.ContainerPort{{Name: "status", ContainerPort: 8102}}}, 8200, "http://127.0.0.1:8102/metrics", ""},
		{"env from a reference falls back to it", corev1.Container{Name: "proxy", Env: fromRef}, 8200, "http://127.0.0.1:8200/metrics", "using default port 8200"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := kongStatusTarget(&tc.c, tc.defaultPort)
			if err != nil {
				t.Fatal(err)
			}
			if got.upstreamURL() != tc.want {
				t.Errorf("upstream %q, want %q", got.upstreamURL(), tc.want)
			}
			if (tc.warning == "") != (got.warning == "") || !strings.Contains(got.warning, tc.warning) {
				t.Errorf("warning %q, want %q", got.warning, tc.warning)
			}
		})
	}
}
