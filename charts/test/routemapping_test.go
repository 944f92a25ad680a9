package test

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
)

// sidecarExtrasValuesFile is docs/install.md's example: the Admin API with
// its client certificate and token from Secrets, a log level and the web
// config file.
var sidecarExtrasValuesFile = filepath.Join("..", "examples", "sidecar-settings-values.yaml")

// The sidecar's extra settings and the route mapping's objects, each
// rendered against its golden file.
func init() {
	renderCases = append(renderCases, renderCase{
		name:   "sidecar-extras",
		values: mustReadFile(sidecarExtrasValuesFile),
		check: func(t *testing.T, r rendering) {
			c := injectorOf(t, r).settings.Config("test")
			var names []string
			for _, e := range c.ExtraEnv {
				names = append(names, e.Name)
			}
			if want := []string{"SIDECAR_KONG_ADMIN_URL", "SIDECAR_KONG_ADMIN_CA_FILE", "SIDECAR_KONG_ADMIN_CERT_FILE", "SIDECAR_KONG_ADMIN_KEY_FILE",
				"SIDECAR_KONG_ADMIN_TOKEN", "SIDECAR_LOG_LEVEL", "SIDECAR_WEB_CONFIG_FILE"}; !slices.Equal(names, want) {
				t.Errorf("the sidecar's extra variables %q, want %q", names, want)
			}
			if ref := c.ExtraEnv[4].ValueFrom; ref == nil || ref.SecretKeyRef == nil || ref.SecretKeyRef.Name != "kong-admin-token" || ref.SecretKeyRef.Key != "token" {
				t.Errorf("SIDECAR_KONG_ADMIN_TOKEN from %+v, want Secret kong-admin-token key token", ref)
			}
			mode := int32(0o440)
			want := []corev1.Volume{
				{Name: "kong-admin-tls", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "kong-metrics-sidecar-admin-tls", DefaultMode: &mode}}},
				{Name: "sidecar-web-config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "kong-metrics-sidecar-web-config"}}}},
			}
			if !reflect.DeepEqual(c.ExtraVolumes, want) {
				t.Errorf("extra volumes %+v, want %+v", c.ExtraVolumes, want)
			}
			if len(c.ExtraVolumeMounts) != 2 || c.ExtraVolumeMounts[0].MountPath != "/etc/kong-metrics-sidecar-admin" || !c.ExtraVolumeMounts[1].ReadOnly {
				t.Errorf("extra mounts %+v", c.ExtraVolumeMounts)
			}
		},
	}, renderCase{
		name:   "route-mapping",
		values: "kongNamespaces: [kong, edge]\nrouteMapping:\n  configMap: routes\n",
		check: func(t *testing.T, r rendering) {
			in := injectorOf(t, r)
			if got := in.settings.RouteMappingNamespaces; !slices.Equal(got, []string{"kong", "edge"}) {
				t.Errorf("INJECTOR_ROUTE_MAPPING_NAMESPACES %q, want kongNamespaces", got)
			}
			if got := in.settings.Config("test").RouteMappingConfigMap; got != "routes" {
				t.Errorf("route mapping ConfigMap %q, want routes", got)
			}
			checkRouteMappingRBAC(t, r, in, []string{"kong", "edge"}, "routes")
		},
	}, renderCase{
		name:   "route-mapping-disabled",
		values: "routeMapping:\n  enabled: false\n",
		check: func(t *testing.T, r rendering) {
			in := injectorOf(t, r)
			if len(in.settings.RouteMappingNamespaces) != 0 {
				t.Errorf("INJECTOR_ROUTE_MAPPING_NAMESPACES %q, want none", in.settings.RouteMappingNamespaces)
			}
			if got := in.settings.RouteMappingConfigMap; got != "kong-metrics-sidecar-routes" {
				t.Errorf("INJECTOR_ROUTE_MAPPING_CONFIGMAP %q: the sidecars still mount it", got)
			}
			if a := in.deployment.Spec.Template.Spec.AutomountServiceAccountToken; a == nil || *a {
				t.Error("the injector's pods mount a token they do not use")
			}
			wantNoObjects[rbacv1.ClusterRole](t, r)
			wantNoObjects[rbacv1.ClusterRoleBinding](t, r)
			wantNoObjects[rbacv1.Role](t, r)
			wantNoObjects[rbacv1.RoleBinding](t, r)
		},
	})
}

// TestRouteMappingByDefault: the defaults publish the route mapping to
// kongNamespaces, with its RBAC.
func TestRouteMappingByDefault(t *testing.T) {
	r := render(t, "", renderOptions{})
	in := injectorOf(t, r)
	if got := in.settings.RouteMappingNamespaces; !slices.Equal(got, []string{"kong"}) {
		t.Errorf("INJECTOR_ROUTE_MAPPING_NAMESPACES %q, want kong", got)
	}
	checkRouteMappingRBAC(t, r, in, []string{"kong"}, "kong-metrics-sidecar-routes")
}

// checkRouteMappingRBAC checks the route mapping's RBAC: read-only on the
// routes cluster-wide; in each of namespaces, create on ConfigMaps and get
// and update of configMap only; bound to the injector's ServiceAccount,
// whose token its pods mount.
func checkRouteMappingRBAC(t *testing.T, r rendering, in injector, namespaces []string, configMap string) {
	t.Helper()
	if a := in.deployment.Spec.Template.Spec.AutomountServiceAccountToken; a == nil || !*a {
		t.Error("the injector's pods mount no token; the route mapping needs one")
	}
	subject := rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Name: in.deployment.Spec.Template.Spec.ServiceAccountName, Namespace: releaseNamespace}
	name := in.deployment.Name + "-routes"
	cr := find[rbacv1.ClusterRole](t, r.objs, "", name)
	if want := []rbacv1.PolicyRule{{APIGroups: []string{"gateway.networking.k8s.io"}, Resources: []string{"httproutes", "grpcroutes"}, Verbs: []string{"get", "list", "watch"}}}; !reflect.DeepEqual(cr.Rules, want) {
		t.Errorf("ClusterRole rules %+v, want %+v", cr.Rules, want)
	}
	crb := find[rbacv1.ClusterRoleBinding](t, r.objs, "", name)
	if crb.RoleRef != (rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name}) || !reflect.DeepEqual(crb.Subjects, []rbacv1.Subject{subject}) {
		t.Errorf("ClusterRoleBinding %+v %+v, want %s to %+v", crb.RoleRef, crb.Subjects, name, subject)
	}
	wantRules := []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"create"}},
		{APIGroups: []string{""}, Resources: []string{"configmaps"}, ResourceNames: []string{configMap}, Verbs: []string{"get", "update"}},
	}
	for _, ns := range namespaces {
		role := find[rbacv1.Role](t, r.objs, ns, name)
		if !reflect.DeepEqual(role.Rules, wantRules) {
			t.Errorf("Role %s/%s rules %+v, want %+v", ns, name, role.Rules, wantRules)
		}
		rb := find[rbacv1.RoleBinding](t, r.objs, ns, name)
		if rb.RoleRef != (rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name}) || !reflect.DeepEqual(rb.Subjects, []rbacv1.Subject{subject}) {
			t.Errorf("RoleBinding %s/%s %+v %+v, want %s to %+v", ns, name, rb.RoleRef, rb.Subjects, name, subject)
		}
	}
	if n := len(all[rbacv1.Role](r.objs)); n != len(namespaces) {
		t.Errorf("%d Roles, want one in each of %q", n, namespaces)
	}
}

// TestSchemaRejectsSidecarExtras: values.schema.json refuses the sidecar's
// extra settings the injector would refuse at start.
func TestSchemaRejectsSidecarExtras(t *testing.T) {
	c := loadChart(t)
	for _, tc := range []struct{ values, want string }{
		{"sidecar: {env: [{name: KONG_ADMIN_URL, value: x}]}\n", "name"},
		{"sidecar: {env: [{name: SIDECAR_UPSTREAM_URL, value: x}]}\n", "name"},
		{"sidecar: {env: [{name: SIDECAR_LOG_LEVEL, value: 1}]}\n", "value"},
		{"sidecar: {env: [{value: x}]}\n", "name"},
		{"sidecar: {env: {SIDECAR_LOG_LEVEL: debug}}\n", "env"},
		{"sidecar: {extraVolumes: [{name: kong-metrics-sidecar-routes, emptyDir: {}}]}\n", "name"},
		{"sidecar: {extraVolumes: [{name: Admin_TLS, emptyDir: {}}]}\n", "name"},
		{"sidecar: {extraVolumes: [{name: tls}]}\n", "minProperties"},
		{"sidecar: {extraVolumeMounts: [{name: tls, mountPath: tls}]}\n", "mountPath"},
		{"sidecar: {extraVolumeMounts: [{name: tls, mountPath: /etc/kong-metrics-sidecar/tls}]}\n", "mountPath"},
		{"sidecar: {extraVolumeMounts: [{name: tls, mountpath: /tls}]}\n", "mountpath"},
		{"routeMapping: {enabled: \"yes\"}\n", "enabled"},
		{"routeMapping: {configMap: Routes}\n", "configMap"},
		{"routeMapping: {namespaces: [kong]}\n", "namespaces"},
	} {
		_, err := renderErr(c, tc.values, renderOptions{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want a schema error naming %q", tc.values, err, tc.want)
		}
	}
}

// TestDocsShowSidecarSettings: docs/install.md shows the chart's example
// values as they are in the file the tests render.
func TestDocsShowSidecarSettings(t *testing.T) {
	doc := readFile(t, filepath.Join("..", "..", "docs", "install.md"))
	if !strings.Contains(doc, mustReadFile(sidecarExtrasValuesFile)) {
		t.Errorf("docs/install.md does not show %s as it is", sidecarExtrasValuesFile)
	}
}

// mustReadFile is the file's content, for the render cases' values.
func mustReadFile(name string) string {
	b, err := os.ReadFile(name)
	if err != nil {
		panic(err)
	}
	return string(b)
}
