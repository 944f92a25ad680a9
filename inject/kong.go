package inject

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// DefaultStatusPort is Kong's default status_listen port, the injector's
// default for Config.StatusPort.
const DefaultStatusPort = 8100

// kongContainer returns the index of Kong's container in pod.Spec.Containers:
// the one named "proxy" (the Helm chart and the Gateway Operator both use
// that name), else the first whose image repository's last path element is
// kong or kong-gateway; -1 when there is none.
func kongContainer(pod *corev1.Pod) int {
	for i, c := range pod.Spec.Containers {
		if c.Name == "proxy" {
			return i
		}
	}
	for i, c := range pod.Spec.Containers {
		switch imageName(c.Image) {
		case "kong", "kong-gateway":
			return i
		}
	}
	return -1
}

// imageName returns the last path element of an image reference's
// repository: "kong-gateway" for "registry:5000/kong/kong-gateway:3.9@sha256:…".
func imageName(image string) string {
	image, _, _ = strings.Cut(image, "@")
	if i := strings.LastIndexByte(image, '/'); i >= 0 {
		image = image[i+1:]
	}
	name, _, _ := strings.Cut(image, ":")
	return name
}

// statusTarget is where the sidecar reaches Kong's status listener.
type statusTarget struct {
	port int
	// ipv6 is set when the listener accepts IPv6 only, so that the sidecar
	// must dial [::1] rather than 127.0.0.1.
	ipv6 bool
	// source says where the port came from, for logs and warnings.
	source string
	// warning is set when the listener may not be reachable on loopback.
	warning string
}

// upstreamURL is the sidecar's SIDECAR_UPSTREAM_URL for t.
func (t statusTarget) upstreamURL() string {
	host := "127.0.0.1"
	if t.ipv6 {
		host = "::1"
	}
	return "http://" + net.JoinHostPort(host, strconv.Itoa(t.port)) + "/metrics"
}

// errStatusListenOff is returned for KONG_STATUS_LISTEN=off.
var errStatusListenOff = errors.New("status listener is off")

// kongStatusTarget finds Kong's status listener from Kong's container c:
// its KONG_STATUS_LISTEN, else a container port named status or metrics,
// else defaultPort (DefaultStatusPort when 0). When KONG_STATUS_LISTEN comes from a reference
// the webhook cannot resolve (valueFrom), it falls back to the ports and
// says so in the target's warning.
func kongStatusTarget(c *corev1.Container, defaultPort int) (statusTarget, error) {
	var env *corev1.EnvVar
	for i := range c.Env {
		if c.Env[i].Name == "KONG_STATUS_LISTEN" {
			env = &c.Env[i] // the last one wins, as in the kubelet
		}
	}
	var fromRef string
	switch {
	case env != nil && env.ValueFrom != nil:
		fromRef = fmt.Sprintf("container %s takes KONG_STATUS_LISTEN from a reference the webhook cannot read", clip(c.Name))
	case env != nil && strings.TrimSpace(env.Value) != "":
		l, err := parseStatusListen(env.Value)
		if err != nil {
			return statusTarget{}, fmt.Errorf("container %s: KONG_STATUS_LISTEN=%s: %w", clip(c.Name), clip(env.Value), err)
		}
		t := statusTarget{port: l.port, ipv6: l.ipv6Only, source: "KONG_STATUS_LISTEN"}
		if !l.loopbackReachable {
			t.warning = fmt.Sprintf("Kong's status listener %s is bound to one address; the sidecar scrapes %s", clip(l.address), t.upstreamURL())
		}
		return t, nil
	}
	if defaultPort == 0 {
		defaultPort = DefaultStatusPort
	}
	t := statusTarget{port: defaultPort, source: "default port"}
	for _, name := range []string{"status", "metrics"} {
		if p := namedPort(c, name); p > 0 {
			t = statusTarget{port: p, source: fmt.Sprintf("port %q", name)}
			break
		}
	}
	if fromRef != "" {
		t.warning = fmt.Sprintf("%s; using %s %d", fromRef, t.source, t.port)
	}
	return t, nil
}

func namedPort(c *corev1.Container, name string) int {
	for _, p := range c.Ports {
		if p.Name == name && (p.Protocol == "" || p.Protocol == corev1.ProtocolTCP) {
			return int(p.ContainerPort)
		}
	}
	return 0
}

// statusListener is one plain-HTTP entry of Kong's status_listen.
type statusListener struct {
	address string // as written, "[::]:8100"
	port    int
	// ipv6Only is set for an IPv6 address, which nginx binds with
	// ipv6only=on unless told otherwise.
	ipv6Only bool
	// loopbackReachable is false for a specific non-loopback address, which
	// a connection to 127.0.0.1 or ::1 does not reach.
	loopbackReachable bool
}

// The flags Kong accepts after an http listener's address
// (kong/conf_loader/listeners.lua).
var (
	listenFlags = map[string]bool{
		"ssl": true, "http2": true, "proxy_protocol": true, "deferred": true, "bind": true, "reuseport": true,
		"ipv6only=on": true, "ipv6only=off": true, "so_keepalive=on": true, "so_keepalive=off": true,
	}
	listenFlagPatterns = regexp.MustCompile(`^(backlog=[0-9]+|so_keepalive=[0-9A-Za-z]*:[0-9A-Za-z]*:[0-9]*)$`)
	hostName           = regexp.MustCompile(`^[A-Za-z0-9*]([A-Za-z0-9*._-]*[A-Za-z0-9*])?$`)
)

// parseStatusListen returns the first plain-HTTP listener of a
// KONG_STATUS_LISTEN value such as "0.0.0.0:8100, 127.0.0.1:8007 ssl" or
// "[::]:8100". Listeners with ssl, http2 (h2c only without ssl) or
// proxy_protocol are not plain HTTP. It returns errStatusListenOff for
// "off", and an error naming the entry for a malformed value.
func parseStatusListen(value string) (statusListener, error) {
	entries := strings.Split(value, ",")
	if strings.TrimSpace(entries[0]) == "off" { // as Kong: a first "off" turns them all off
		return statusListener{}, errStatusListenOff
	}
	var first *statusListener
	for _, entry := range entries {
		fields := strings.Fields(entry)
		if len(fields) == 0 {
			continue // "a, b," and "a,,b": Kong drops empty entries
		}
		l, plain, err := parseListener(fields[0], fields[1:])
		if err != nil {
			return statusListener{}, fmt.Errorf("listener %s: %w", clip(strings.TrimSpace(entry)), err)
		}
		if plain && first == nil {
			first = &l
		}
	}
	if first == nil {
		return statusListener{}, errors.New("no plain-HTTP listener (every one has ssl, http2 or proxy_protocol)")
	}
	return *first, nil
}

func parseListener(address string, flags []string) (l statusListener, plain bool, err error) {
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return l, false, fmt.Errorf("want <ip>:<port> or [<ipv6>]:<port>: %w", err)
	}
	n, err := strconv.Atoi(port)
	if !isDigits(port) || err != nil || n < 1 || n > 65535 {
		return l, false, fmt.Errorf("port %s is not a number from 1 to 65535", clip(port))
	}
	l = statusListener{address: address, port: n, loopbackReachable: true}
	plain = true
	ipv6only := true
	for _, f := range flags {
		switch {
		case f == "ssl" || f == "http2" || f == "proxy_protocol":
			plain = false
		case f == "ipv6only=off":
			ipv6only = false
		case listenFlags[f] || listenFlagPatterns.MatchString(f):
		default:
			return l, false, fmt.Errorf("unknown flag %s", clip(f))
		}
	}
	bracketed := strings.HasPrefix(address, "[")
	ip, ipErr := netip.ParseAddr(host)
	switch {
	case bracketed && (ipErr != nil || !ip.Is6()):
		return l, false, fmt.Errorf("%s is not an IPv6 address", clip(host))
	case bracketed:
		l.ipv6Only = !(ip.IsUnspecified() && !ipv6only)
		l.loopbackReachable = ip.IsUnspecified() || ip.IsLoopback()
	case ipErr == nil && ip.Is4():
		l.loopbackReachable = ip.IsUnspecified() || ip.IsLoopback()
	case ipErr == nil || !hostName.MatchString(host):
		return l, false, fmt.Errorf("%s is neither an IPv4 address nor a host name (IPv6 needs brackets)", clip(host))
	default:
		// A name ("localhost") or a wildcard ("*"): nginx listens on
		// what it resolves to, IPv4 first.
		l.loopbackReachable = host == "*" || host == "localhost"
	}
	return l, plain, nil
}
