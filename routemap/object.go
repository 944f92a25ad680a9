package routemap

import (
	"encoding/json"
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// FromObject reads the Route of an HTTPRoute or GRPCRoute as the API
// server stores it (any version of gateway.networking.k8s.io: the fields
// read here are the same in each).
func FromObject(u *unstructured.Unstructured) (Route, error) {
	r := Route{Kind: u.GetKind(), Namespace: u.GetNamespace(), Name: u.GetName()}
	hosts, _, err := unstructured.NestedStringSlice(u.Object, "spec", "hostnames")
	if err != nil {
		return Route{}, fmt.Errorf("%s %s/%s: spec.hostnames: %w", r.Kind, r.Namespace, r.Name, err)
	}
	r.Hostnames = hosts
	rules, _, err := unstructured.NestedSlice(u.Object, "spec", "rules")
	if err != nil {
		return Route{}, fmt.Errorf("%s %s/%s: spec.rules: %w", r.Kind, r.Namespace, r.Name, err)
	}
	for i, rule := range rules {
		obj, ok := rule.(map[string]any)
		if !ok {
			return Route{}, fmt.Errorf("%s %s/%s: spec.rules[%d] is not an object", r.Kind, r.Namespace, r.Name, i)
		}
		refs, _, err := unstructured.NestedSlice(obj, "backendRefs")
		if err != nil {
			return Route{}, fmt.Errorf("%s %s/%s: spec.rules[%d].backendRefs: %w", r.Kind, r.Namespace, r.Name, i, err)
		}
		var out Rule
		for j, ref := range refs {
			raw, err := json.Marshal(ref) // map keys sorted: canonical
			if err != nil {
				return Route{}, err
			}
			var b BackendRef
			if err := json.Unmarshal(raw, &b); err != nil {
				return Route{}, fmt.Errorf("%s %s/%s: spec.rules[%d].backendRefs[%d]: %w", r.Kind, r.Namespace, r.Name, i, j, err)
			}
			b.Key = string(raw)
			out.BackendRefs = append(out.BackendRefs, b)
		}
		r.Rules = append(r.Rules, out)
	}
	return r, nil
}
