package test

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/inject"
)

// TestSidecarSettingsExample: the documented patch (examples/sidecar-settings)
// gives the injector settings it accepts, the Admin API's, the log level's
// and the web config file's among them, and changes nothing else.
func TestSidecarSettingsExample(t *testing.T) {
	base := renderInjector(t)
	objs := render(t, "examples/sidecar-settings")
	d := find[appsv1.Deployment](t, objs, injectorName)
	c := d.Spec.Template.Spec.Containers[0]
	s := loadInjectorSettings(t, c.Env)
	var names []string
	for _, e := range s.SidecarExtraEnv {
		names = append(names, e.Name)
	}
	for _, want := range []string{"SIDECAR_KONG_ADMIN_URL", "SIDECAR_KONG_ADMIN_CA_FILE", "SIDECAR_KONG_ADMIN_CERT_FILE", "SIDECAR_KONG_ADMIN_KEY_FILE", "SIDECAR_KONG_ADMIN_TOKEN", "SIDECAR_LOG_LEVEL", "SIDECAR_WEB_CONFIG_FILE"} {
		if !slices.Contains(names, want) {
			t.Errorf("INJECTOR_SIDECAR_EXTRA_ENV sets %q, not %s", names, want)
		}
	}
	if len(s.SidecarExtraVolumes) != 2 || len(s.SidecarExtraVolumeMounts) != 2 {
		t.Errorf("extra volumes %+v and mounts %+v, want two each", s.SidecarExtraVolumes, s.SidecarExtraVolumeMounts)
	}
	// Without the three variables, the same Deployment as manifests/injector's.
	c.Env = slices.DeleteFunc(c.Env, func(e corev1.EnvVar) bool { return strings.HasPrefix(e.Name, "INJECTOR_SIDECAR_EXTRA_") })
	d.Spec.Template.Spec.Containers[0] = c
	if !reflect.DeepEqual(d, base.deployment) {
		t.Error("the patch changes more of the Deployment than its three variables")
	}
	if len(objs) != len(base.objs) {
		t.Errorf("%d objects, manifests/injector has %d", len(objs), len(base.objs))
	}
}

// loadInjectorSettings is what the injector reads from env; it fails the
// test where the injector would refuse to start.
func loadInjectorSettings(t *testing.T, env []corev1.EnvVar) inject.Settings {
	t.Helper()
	var environ []string
	for _, e := range env {
		if e.ValueFrom != nil {
			t.Fatalf("variable %s: valueFrom, want a value", e.Name)
		}
		environ = append(environ, e.Name+"="+e.Value)
	}
	s, err := inject.LoadSettings(environ)
	if err != nil {
		t.Fatalf("the injector does not start with these variables:\n%v", err)
	}
	return s
}

// TestDocsShowSidecarSettingsPatch: docs/install.md shows the patch as it
// is in examples/sidecar-settings, which TestSidecarSettingsExample builds.
func TestDocsShowSidecarSettingsPatch(t *testing.T) {
	patch, err := os.ReadFile(filepath.Join(manifestsDir, "examples", "sidecar-settings", "sidecar-settings.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(filepath.Join(manifestsDir, "..", "docs", "install.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(doc), string(patch)) {
		t.Error("docs/install.md does not show manifests/examples/sidecar-settings/sidecar-settings.yaml as it is")
	}
}
