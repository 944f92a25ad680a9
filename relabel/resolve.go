package relabel

import "strings"

// ResolveServiceName maps a Kong service name to the Kubernetes Service it
// was generated for, following the Kong Ingress Controller's naming rules
// (the same translator runs inside Kong Gateway Operator and Kong Operator):
//
//	<ns>.<svc>.<port>                                          Ingress, KIC 2.8+ and 3.x (port number or name)
//	<ns>.<svc>.pnum-<port>, <ns>.<svc>.pname-<name>            Ingress, older KIC
//	httproute.<ns>.svc.<backend-ns>.<backend>.<port>           HTTPRoute rule with one backend, combined services
//	httproute.<ns>.svc.<backend-ns>.<backend>.<port>.<weight>  the same with the backendRef's weight, which the
//	                                                           Gateway API CRD defaults to 1 (Kong Operator 2.1+)
//
// Kubernetes names hold no dots, which makes the rules unambiguous. Names
// that fit no rule, such as httproute.<ns>.<route>.<rule> (the route's
// rule, not its backend: see the route mapping), a rule with several
// backends (IsMultiBackendName), or whose parts are not valid Kubernetes
// names, are unresolved.
func ResolveServiceName(kong string) (Service, bool) {
	var parts [8]string
	n := splitDots(kong, parts[:])
	switch {
	case n == 3:
		return service(parts[0], parts[1], parts[2])
	case n == 6 && parts[0] == "httproute" && parts[2] == "svc" && isDNS1123Label(parts[1]):
		return backendService(parts[3], parts[4], parts[5])
	case n == 7 && parts[0] == "httproute" && parts[2] == "svc" && isDNS1123Label(parts[1]) && isWeight(parts[6]):
		return backendService(parts[3], parts[4], parts[5])
	}
	return Service{}, false
}

// IsMultiBackendName reports whether kong is the name the Kong Ingress
// Controller gives, with combined services, to an HTTPRoute rule with
// several backends (httproute.<ns>.svc.<backend>_<backend>…, sorted and
// joined with '_') or to one whose name was too long and ends in
// _combined.<sha256>. Such a Kong service stands for no single Service.
// Kubernetes names hold no '_', so a '_' after the prefix means several
// backends; a rule without backends (httproute.<ns>.svc._) has none.
func IsMultiBackendName(kong string) bool {
	rest, ok := strings.CutPrefix(kong, "httproute.")
	if !ok {
		return false
	}
	ns, rest, ok := strings.Cut(rest, ".")
	if !ok || !isDNS1123Label(ns) {
		return false
	}
	backends, ok := strings.CutPrefix(rest, "svc.")
	return ok && backends != "_" && strings.Contains(backends, "_")
}

// ResolveUpstreamName maps a Kong upstream name to its Kubernetes Service:
// <svc>.<ns>.<port>.svc as the Kong Ingress Controller writes it for an
// Ingress, or, for an HTTPRoute, the Kong service's own name (KIC names an
// HTTPRoute's upstream after the Kong service's host, which is its name).
func ResolveUpstreamName(kong string) (Service, bool) {
	if strings.HasPrefix(kong, "httproute.") {
		return ResolveServiceName(kong)
	}
	var parts [5]string
	if n := splitDots(kong, parts[:]); n == 4 && parts[3] == "svc" {
		return service(parts[1], parts[0], parts[2])
	}
	return Service{}, false
}

// backendService is service for an HTTPRoute's backendRef, whose port is
// always a number.
func backendService(namespace, name, port string) (Service, bool) {
	if !isDigits(port) {
		return Service{}, false
	}
	return service(namespace, name, port)
}

// isWeight accepts a backendRef's weight as KIC writes it (strconv.Itoa):
// 0 to 1,000,000, the Gateway API's bounds, without leading zeros.
func isWeight(s string) bool {
	if s == "0" {
		return true
	}
	if len(s) == 0 || len(s) > 7 || s[0] == '0' || !isDigits(s) {
		return false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		n = n*10 + int(s[i]-'0')
	}
	return n <= 1_000_000
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
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
