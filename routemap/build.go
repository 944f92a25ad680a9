// Package routemap publishes which Kubernetes Service each Gateway API
// route rule's Kong service stands for. The Kong Ingress Controller (also
// inside Kong Gateway Operator and Kong Operator) names an HTTPRoute rule's
// Kong service after the route, httproute.<ns>.<route>.<rule>, unless
// combined services are on, and a GRPCRoute rule's always after the route;
// nothing in those names says which Service they reach. The injector's
// Deployment watches the cluster's routes once (Publisher) and writes the
// mapping, as a gzip-compressed KongServiceMapping document, into a
// ConfigMap in each Kong namespace, which every injected sidecar follows
// beside its extension file.
//
// Build is pure: routes in, mapping out, following the translator of KIC
// v3.5 and Kong Operator v2.2 (internal/dataplane/translator).
package routemap

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Route is the part of an HTTPRoute or GRPCRoute that names its Kong
// services.
type Route struct {
	// Kind is HTTPRoute or GRPCRoute.
	Kind      string
	Namespace string
	Name      string
	// Hostnames are spec.hostnames (GRPCRoute names depend on them under
	// expression routes).
	Hostnames []string
	Rules     []Rule
}

// Rule is one of a route's spec.rules.
type Rule struct {
	BackendRefs []BackendRef
}

// BackendRef is one of a rule's backendRefs.
type BackendRef struct {
	Group     *string `json:"group,omitempty"`
	Kind      *string `json:"kind,omitempty"`
	Namespace *string `json:"namespace,omitempty"`
	Name      string  `json:"name"`
	Port      *int32  `json:"port,omitempty"`
	Weight    *int32  `json:"weight,omitempty"`
	// Key is the backendRef as stored, canonical JSON: KIC groups an
	// HTTPRoute's rules whose backendRefs are equal in every field
	// (filters included), in any order.
	Key string `json:"-"`
}

// Service names a Kubernetes Service.
type Service struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
}

// Mapping is what Build found: each Kong service name of a rule with one
// Service backend, and those of rules with several backends.
type Mapping struct {
	Services     map[string]Service
	MultiBackend map[string]struct{}
}

// Build returns the mapping of routes' Kong service names, as the Kong
// Ingress Controller names them:
//
//	HTTPRoute, combined services off (KIC before 3.5's flag, Kong Gateway
//	Operator 1.x, Kong Operator 2.0): the route's rules are grouped by equal
//	backendRefs, each group named httproute.<ns>.<route>.<index of its first
//	rule> (subtranslator/httproute.go, groupRulesByBackendRefs). With
//	combined services on, the name holds the backends themselves and the
//	sidecar reads it without a mapping.
//	GRPCRoute: every rule is grpcroute.<ns>.<route>.<rule>
//	(translate_utils.go), or grpcroute.<ns>.<route>.<hostname|_>.<rule> per
//	hostname under expression routes (grpcroute_atc.go, '*' written as '_').
//
// A rule whose one backend is a core Service maps to it (its namespace
// defaults to the route's); one with several backends is multi-backend;
// one without backends, or whose backend is of another kind, is left out.
func Build(routes []Route) Mapping {
	m := Mapping{Services: map[string]Service{}, MultiBackend: map[string]struct{}{}}
	for _, r := range routes {
		switch r.Kind {
		case "HTTPRoute":
			first := map[string]int{} // backendRefs key → first rule
			for i, rule := range r.Rules {
				key := rulesKey(rule)
				if _, seen := first[key]; seen {
					continue
				}
				first[key] = i
				m.add(fmt.Sprintf("httproute.%s.%s.%d", r.Namespace, r.Name, i), r.Namespace, rule)
			}
		case "GRPCRoute":
			hosts := []string{"_"}
			if len(r.Hostnames) > 0 {
				hosts = hosts[:0]
				for _, h := range r.Hostnames {
					hosts = append(hosts, strings.ReplaceAll(h, "*", "_"))
				}
			}
			for i, rule := range r.Rules {
				m.add(fmt.Sprintf("grpcroute.%s.%s.%d", r.Namespace, r.Name, i), r.Namespace, rule)
				for _, h := range hosts {
					m.add(fmt.Sprintf("grpcroute.%s.%s.%s.%d", r.Namespace, r.Name, h, i), r.Namespace, rule)
				}
			}
		}
	}
	return m
}

func (m Mapping) add(kong, routeNamespace string, rule Rule) {
	switch len(rule.BackendRefs) {
	case 0:
		return
	case 1:
		ref := rule.BackendRefs[0]
		if (ref.Group != nil && *ref.Group != "") || (ref.Kind != nil && *ref.Kind != "Service") {
			return
		}
		ns := routeNamespace
		if ref.Namespace != nil {
			ns = *ref.Namespace
		}
		if len(validation.IsDNS1123Label(ns)) > 0 || len(validation.IsDNS1035Label(ref.Name)) > 0 {
			return
		}
		m.Services[kong] = Service{Namespace: ns, Name: ref.Name}
	default:
		m.MultiBackend[kong] = struct{}{}
	}
}

// rulesKey is the key KIC groups an HTTPRoute's rules by: the rule's
// backendRefs in any order.
func rulesKey(rule Rule) string {
	keys := make([]string, len(rule.BackendRefs))
	for i, ref := range rule.BackendRefs {
		keys[i] = ref.Key
	}
	slices.Sort(keys)
	return strings.Join(keys, "\x00")
}

// The KongServiceMapping document's kind, as the sidecar's config package
// reads it (this package must not import it: the injector stays free of
// the sidecar's code).
const (
	mappingAPIVersion = "kong-metrics-sidecar.io/v1alpha1"
	mappingKind       = "KongServiceMapping"
)

// document is a KongServiceMapping as JSON.
type document struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec struct {
		Services     []entry  `json:"services"`
		MultiBackend []string `json:"multiBackend,omitempty"`
	} `json:"spec"`
}

type entry struct {
	KongService string `json:"kongService"`
	Service
}

// Encode writes m as one KongServiceMapping document named name, in JSON
// (which is YAML), entries sorted, gzip-compressed without a time or name
// in its header: the same mapping always gives the same bytes, so that two
// publishers agree and an unchanged mapping writes nothing.
func Encode(m Mapping, name string) ([]byte, error) {
	var doc document
	doc.APIVersion, doc.Kind, doc.Metadata.Name = mappingAPIVersion, mappingKind, name
	doc.Spec.Services = make([]entry, 0, len(m.Services))
	for kong, svc := range m.Services {
		doc.Spec.Services = append(doc.Spec.Services, entry{kong, svc})
	}
	slices.SortFunc(doc.Spec.Services, func(a, b entry) int { return strings.Compare(a.KongService, b.KongService) })
	for kong := range m.MultiBackend {
		doc.Spec.MultiBackend = append(doc.Spec.MultiBackend, kong)
	}
	slices.Sort(doc.Spec.MultiBackend)
	var b bytes.Buffer
	zw, err := gzip.NewWriterLevel(&b, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	if err := json.NewEncoder(zw).Encode(doc); err != nil {
		return nil, fmt.Errorf("encoding the route mapping: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("compressing the route mapping: %w", err)
	}
	return b.Bytes(), nil
}
