package test

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
)

// TestInjectorRBAC: the route mapping's API access is read-only on the
// routes, cluster-wide, and in each namespace it publishes to, create on
// ConfigMaps and get and update of its own ConfigMap only; all of it bound
// to the injector's ServiceAccount and nothing else.
func TestInjectorRBAC(t *testing.T) {
	in := renderInjector(t)
	known := variables(t, "kong-metrics-injector")
	configMap := setting(t, in.container, known, "INJECTOR_ROUTE_MAPPING_CONFIGMAP")
	namespaces := strings.Split(setting(t, in.container, known, "INJECTOR_ROUTE_MAPPING_NAMESPACES"), ",")
	if !slices.Equal(namespaces, []string{exampleNamespace}) {
		t.Errorf("INJECTOR_ROUTE_MAPPING_NAMESPACES %q, want the tutorial's %q", namespaces, exampleNamespace)
	}
	subject := rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Name: in.deployment.Spec.Template.Spec.ServiceAccountName, Namespace: injectorNamespace}

	roles := all[rbacv1.ClusterRole](in.objs)
	if len(roles) != 1 {
		t.Fatalf("%d ClusterRoles, want 1", len(roles))
	}
	wantRules := []rbacv1.PolicyRule{{APIGroups: []string{"gateway.networking.k8s.io"}, Resources: []string{"httproutes", "grpcroutes"}, Verbs: []string{"get", "list", "watch"}}}
	if !reflect.DeepEqual(roles[0].Rules, wantRules) {
		t.Errorf("ClusterRole rules %+v, want %+v", roles[0].Rules, wantRules)
	}
	bindings := all[rbacv1.ClusterRoleBinding](in.objs)
	if len(bindings) != 1 || bindings[0].RoleRef != (rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: roles[0].Name}) ||
		!reflect.DeepEqual(bindings[0].Subjects, []rbacv1.Subject{subject}) {
		t.Errorf("ClusterRoleBindings %+v, want one of %s to %+v", bindings, roles[0].Name, subject)
	}

	wantRoleRules := []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"create"}},
		{APIGroups: []string{""}, Resources: []string{"configmaps"}, ResourceNames: []string{configMap}, Verbs: []string{"get", "update"}},
	}
	for _, ns := range namespaces {
		var role *rbacv1.Role
		for _, r := range all[rbacv1.Role](in.objs) {
			if r.Namespace == ns {
				role = r
			}
		}
		if role == nil {
			t.Errorf("no Role in %s", ns)
			continue
		}
		if !reflect.DeepEqual(role.Rules, wantRoleRules) {
			t.Errorf("Role %s/%s rules %+v, want %+v", ns, role.Name, role.Rules, wantRoleRules)
		}
		found := false
		for _, b := range all[rbacv1.RoleBinding](in.objs) {
			if b.Namespace == ns && b.RoleRef == (rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name}) && reflect.DeepEqual(b.Subjects, []rbacv1.Subject{subject}) {
				found = true
			}
		}
		if !found {
			t.Errorf("no RoleBinding of Role %s/%s to %+v", ns, role.Name, subject)
		}
	}
	if n, m := len(all[rbacv1.Role](in.objs)), len(all[rbacv1.RoleBinding](in.objs)); n != len(namespaces) || m != len(namespaces) {
		t.Errorf("%d Roles and %d RoleBindings, want one each in each of %q", n, m, namespaces)
	}
}
