package relabel

import "strings"

// ResolveServiceName maps a Kong service name to the Kubernetes Service it
// was generated for, following the Kong Ingress Controller's naming rules:
//
//	<ns>.<svc>.<port>                                 Ingress, KIC 2.8+ and 3.x (port number or name)
//	<ns>.<svc>.pnum-<port>, <ns>.<svc>.pname-<name>   Ingress, older KIC
//	httproute.<ns>.svc.<backend-ns>.<backend>.<port>  HTTPRoute rule with one backend (combined services)
//
// Kubernetes names hold no dots, which makes the rules unambiguous. Names
// that fit no rule, such as httproute.<ns>.<route>.<rule>, or whose parts
// are not valid Kubernetes names, are unresolved.
func ResolveServiceName(kong string) (Service, bool) {
	var parts [7]string
	n := splitDots(kong, parts[:])
	switch {
	case n == 3:
		return service(parts[0], parts[1], parts[2])
	case n == 6 && parts[0] == "httproute" && parts[2] == "svc" && isDNS1123Label(parts[1]):
		return service(parts[3], parts[4], parts[5])
	}
	return Service{}, false
}

// ResolveUpstreamName maps a Kong upstream name, <svc>.<ns>.<port>.svc as
// the Kong Ingress Controller writes it, to its Kubernetes Service.
func ResolveUpstreamName(kong string) (Service, bool) {
	var parts [5]string
	if n := splitDots(kong, parts[:]); n == 4 && parts[3] == "svc" {
		return service(parts[1], parts[0], parts[2])
	}
	return Service{}, false
}

func service(namespace, name, port string) (Service, bool) {
	if !isDNS1123Label(namespace) || !IsServiceName(name) || !isPort(port) {
		return Service{}, false
	}
	return Service{Namespace: namespace, Name: name}, true
}

// splitDots splits s at dots into parts without allocating and returns the
// number of parts, or len(parts)+1 when there are more than fit.
func splitDots(s string, parts []string) int {
	n := 0
	for {
		if n == len(parts) {
			return n + 1
		}
		i := strings.IndexByte(s, '.')
		if i < 0 {
			parts[n] = s
			return n + 1
		}
		parts[n], s = s[:i], s[i+1:]
		n++
	}
}

// isPort accepts a port number (1-65535) or a port name as KIC writes it
// (a DNS-1123 label, which covers pnum-80 and pname-http).
func isPort(s string) bool {
	if s == "" {
		return false
	}
	num := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return isDNS1123Label(s)
		}
		num = num*10 + int(c-'0')
		if num > 65535 {
			return false
		}
	}
	return num > 0 && s[0] != '0'
}

// IsServiceName reports whether s is a valid Kubernetes Service name (a
// DNS-1035 label: at most 63 lower-case letters, digits and '-', starting
// with a letter and ending with a letter or digit).
func IsServiceName(s string) bool {
	return isDNS1123Label(s) && s[0] >= 'a' && s[0] <= 'z'
}

// IsNamespaceName reports whether s is a valid Kubernetes namespace name (a
// DNS-1123 label).
func IsNamespaceName(s string) bool { return isDNS1123Label(s) }

func isDNS1123Label(s string) bool {
	if len(s) == 0 || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case c == '-' && i > 0 && i < len(s)-1:
		default:
			return false
		}
	}
	return true
}
