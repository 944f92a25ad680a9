package inject

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// adminExtras are the example of docs/install.md: the Admin API with the
// client certificate from a Secret, its token from another, the log level
// and the web config file.
func adminExtras() ([]corev1.EnvVar, []corev1.Volume, []corev1.VolumeMount) {
	env := []corev1.EnvVar{
		{Name: "SIDECAR_KONG_ADMIN_URL", Value: "https://127.0.0.1:8444"},
		{Name: "SIDECAR_KONG_ADMIN_CA_FILE", Value: "/etc/kong-metrics-sidecar-admin/ca.crt"},
		{Name: "SIDECAR_KONG_ADMIN_CERT_FILE", Value: "/etc/kong-metrics-sidecar-admin/tls.crt"},
		{Name: "SIDECAR_KONG_ADMIN_KEY_FILE", Value: "/etc/kong-metrics-sidecar-admin/tls.key"},
		{Name: "SIDECAR_KONG_ADMIN_TOKEN", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: "kong-admin-token"}, Key: "token"}}},
		{Name: "SIDECAR_LOG_LEVEL", Value: "debug"},
		{Name: "SIDECAR_WEB_CONFIG_FILE", Value: "/etc/kong-metrics-sidecar-web/web-config.yaml"},
	}
	volumes := []corev1.Volume{
		{Name: "kong-admin-tls", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "kong-metrics-sidecar-admin-tls"}}},
		{Name: "sidecar-web-config", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "kong-metrics-sidecar-web-config"}}},
	}
	mounts := []corev1.VolumeMount{
		{Name: "kong-admin-tls", MountPath: "/etc/kong-metrics-sidecar-admin", ReadOnly: true},
		{Name: "sidecar-web-config", MountPath: "/etc/kong-metrics-sidecar-web", ReadOnly: true},
	}
	return env, volumes, mounts
}

// adminExtrasEnviron is adminExtras as the injector's variables.
func adminExtrasEnviron(t *testing.T) []string {
	t.Helper()
	env, volumes, mounts := adminExtras()
	js := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	return []string{"INJECTOR_SIDECAR_EXTRA_ENV=" + js(env), "INJECTOR_SIDECAR_EXTRA_VOLUMES=" + js(volumes), "INJECTOR_SIDECAR_EXTRA_VOLUME_MOUNTS=" + js(mounts)}
}

func TestLoadSettingsSidecarExtras(t *testing.T) {
	const image = "INJECTOR_SIDECAR_IMAGE=kong-metrics-sidecar:dev"
	s, err := LoadSettings(append([]string{image}, adminExtrasEnviron(t)...))
	if err != nil {
		t.Fatal(err)
	}
	env, volumes, mounts := adminExtras()
	c := s.Config("dev")
	if !reflect.DeepEqual(c.ExtraEnv, env) || !reflect.DeepEqual(c.ExtraVolumes, volumes) || !reflect.DeepEqual(c.ExtraVolumeMounts, mounts) {
		t.Errorf("config extras\n  %+v\n  %+v\n  %+v\nwant\n  %+v\n  %+v\n  %+v", c.ExtraEnv, c.ExtraVolumes, c.ExtraVolumeMounts, env, volumes, mounts)
	}

	const (
		tlsVolume = `INJECTOR_SIDECAR_EXTRA_VOLUMES=[{"name":"tls","secret":{"secretName":"tls"}}]`
		tlsMount  = `INJECTOR_SIDECAR_EXTRA_VOLUME_MOUNTS=[{"name":"tls","mountPath":"/tls"}]`
	)
	cases := []struct {
		name    string
		environ []string
		errs    []string // each in the error, one a line
	}{
		{"not JSON", []string{`INJECTOR_SIDECAR_EXTRA_ENV=SIDECAR_LOG_LEVEL=debug`}, []string{`INJECTOR_SIDECAR_EXTRA_ENV="SIDECAR_LOG_LEVEL=debug": not a JSON array of EnvVar objects`}},
		{"an object, not an array", []string{`INJECTOR_SIDECAR_EXTRA_ENV={"name":"SIDECAR_LOG_LEVEL","value":"debug"}`}, []string{`not a JSON array of EnvVar objects`}},
		{"unknown field", []string{tlsVolume, `INJECTOR_SIDECAR_EXTRA_VOLUME_MOUNTS=[{"name":"tls","mountpath":"/tls"}]`}, []string{`INJECTOR_SIDECAR_EXTRA_VOLUME_MOUNTS="[{\"name\":\"tls\",\"mountpath\":\"/tls\"}]": unknown field "[0].mountpath"`}},
		{"duplicate field", []string{`INJECTOR_SIDECAR_EXTRA_ENV=[{"name":"SIDECAR_A","name":"SIDECAR_B"}]`}, []string{`duplicate field "[0].name"`}},
		{"not SIDECAR_", []string{`INJECTOR_SIDECAR_EXTRA_ENV=[{"name":"KONG_ADMIN_URL","value":"x"}]`}, []string{`INJECTOR_SIDECAR_EXTRA_ENV: "KONG_ADMIN_URL" does not start with SIDECAR_`}},
		{"set by the injector", []string{`INJECTOR_SIDECAR_EXTRA_ENV=[{"name":"SIDECAR_UPSTREAM_URL","value":"x"},{"name":"SIDECAR_CONFIG_FILE","value":"x"},{"name":"SIDECAR_ROUTE_MAPPING_FILE","value":"x"},{"name":"SIDECAR_MIN_FETCH_INTERVAL","value":"1s"},{"name":"SIDECAR_LISTEN_ADDR","value":":1"}]`},
			[]string{"SIDECAR_UPSTREAM_URL is set by the injector: ", "SIDECAR_CONFIG_FILE is set by the injector", "SIDECAR_ROUTE_MAPPING_FILE is set by the injector: the injector mounts the route mapping; set INJECTOR_ROUTE_MAPPING_CONFIGMAP",
				"SIDECAR_MIN_FETCH_INTERVAL is set by the injector: set INJECTOR_SIDECAR_MIN_FETCH_INTERVAL", "SIDECAR_LISTEN_ADDR is set by the injector: the sidecar's port 9542 is fixed"}},
		{"twice", []string{`INJECTOR_SIDECAR_EXTRA_ENV=[{"name":"SIDECAR_LOG_LEVEL","value":"debug"},{"name":"SIDECAR_LOG_LEVEL","value":"info"}]`}, []string{"SIDECAR_LOG_LEVEL is given twice"}},
		{"value and valueFrom", []string{`INJECTOR_SIDECAR_EXTRA_ENV=[{"name":"SIDECAR_KONG_ADMIN_TOKEN","value":"x","valueFrom":{"secretKeyRef":{"name":"s","key":"k"}}}]`}, []string{"SIDECAR_KONG_ADMIN_TOKEN has both value and valueFrom"}},
		{"empty valueFrom", []string{`INJECTOR_SIDECAR_EXTRA_ENV=[{"name":"SIDECAR_KONG_ADMIN_TOKEN","valueFrom":{}}]`}, []string{"SIDECAR_KONG_ADMIN_TOKEN: valueFrom needs exactly one of"}},
		{"volume name", []string{`INJECTOR_SIDECAR_EXTRA_VOLUMES=[{"name":"Admin_TLS","secret":{"secretName":"tls"}}]`}, []string{`INJECTOR_SIDECAR_EXTRA_VOLUMES: "Admin_TLS" is not a volume name`}},
		{"the injector's volume names", []string{`INJECTOR_SIDECAR_EXTRA_VOLUMES=[{"name":"kong-metrics-sidecar-config","emptyDir":{}},{"name":"kong-metrics-sidecar-routes","emptyDir":{}}]`},
			[]string{"kong-metrics-sidecar-config is the name of a volume the injector adds", "kong-metrics-sidecar-routes is the name of a volume the injector adds"}},
		{"volume twice", []string{`INJECTOR_SIDECAR_EXTRA_VOLUMES=[{"name":"tls","secret":{"secretName":"a"}},{"name":"tls","secret":{"secretName":"b"}}]`, tlsMount}, []string{"INJECTOR_SIDECAR_EXTRA_VOLUMES: tls is given twice"}},
		{"no source", []string{`INJECTOR_SIDECAR_EXTRA_VOLUMES=[{"name":"tls"}]`, tlsMount}, []string{"tls needs exactly one source"}},
		{"two sources", []string{`INJECTOR_SIDECAR_EXTRA_VOLUMES=[{"name":"tls","secret":{"secretName":"a"},"emptyDir":{}}]`, tlsMount}, []string{"tls needs exactly one source"}},
		{"unmounted volume", []string{tlsVolume}, []string{"INJECTOR_SIDECAR_EXTRA_VOLUMES: tls is mounted by none of INJECTOR_SIDECAR_EXTRA_VOLUME_MOUNTS"}},
		{"mount of an unknown volume", []string{`INJECTOR_SIDECAR_EXTRA_VOLUME_MOUNTS=[{"name":"kong-metrics-sidecar-config","mountPath":"/x"}]`}, []string{`INJECTOR_SIDECAR_EXTRA_VOLUME_MOUNTS: "kong-metrics-sidecar-config" is not one of INJECTOR_SIDECAR_EXTRA_VOLUMES`}},
		{"relative mount path", []string{tlsVolume, `INJECTOR_SIDECAR_EXTRA_VOLUME_MOUNTS=[{"name":"tls","mountPath":"tls"}]`}, []string{`mountPath "tls" of tls is not a clean absolute path`}},
		{"unclean mount path", []string{tlsVolume, `INJECTOR_SIDECAR_EXTRA_VOLUME_MOUNTS=[{"name":"tls","mountPath":"/tls/"}]`}, []string{`mountPath "/tls/" of tls is not a clean absolute path`}},
		{"mount in the injector's directory", []string{tlsVolume, `INJECTOR_SIDECAR_EXTRA_VOLUME_MOUNTS=[{"name":"tls","mountPath":"/etc/kong-metrics-sidecar/tls"}]`}, []string{"mountPath /etc/kong-metrics-sidecar/tls of tls overlaps /etc/kong-metrics-sidecar"}},
		{"mount over the injector's directory", []string{tlsVolume, `INJECTOR_SIDECAR_EXTRA_VOLUME_MOUNTS=[{"name":"tls","mountPath":"/etc"}]`}, []string{"mountPath /etc of tls overlaps /etc/kong-metrics-sidecar"}},
		{"mount path twice", []string{`INJECTOR_SIDECAR_EXTRA_VOLUMES=[{"name":"a","emptyDir":{}},{"name":"b","emptyDir":{}}]`, `INJECTOR_SIDECAR_EXTRA_VOLUME_MOUNTS=[{"name":"a","mountPath":"/x"},{"name":"b","mountPath":"/x"}]`}, []string{"mountPath /x is given twice"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadSettings(append([]string{image}, tc.environ...))
			if err == nil {
				t.Fatalf("no error; want %q", tc.errs)
			}
			for _, want := range tc.errs {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
			if got := strings.Count(err.Error(), "\n") + 1; got != len(tc.errs) {
				t.Errorf("error has %d lines, want %d:\n%v", got, len(tc.errs), err)
			}
		})
	}
}

// TestMutateSidecarExtras checks the extra volumes' names against the
// pod's: a clash leaves the pod without the sidecar, with a warning.
func TestMutateSidecarExtras(t *testing.T) {
	cfg := testConfig
	cfg.ExtraEnv, cfg.ExtraVolumes, cfg.ExtraVolumeMounts = adminExtras()
	pod := kongPod()
	pod.Spec.Volumes = []corev1.Volume{{Name: "kong-admin-tls", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
	r := Mutate(pod, cfg)
	if r.Outcome != Invalid || len(r.Warnings) != 1 || !strings.Contains(r.Warnings[0], "already has a volume named kong-admin-tls, which INJECTOR_SIDECAR_EXTRA_VOLUMES adds") {
		t.Fatalf("outcome %s, warnings %q; want invalid with the clash", r.Outcome, r.Warnings)
	}

	pod.Spec.Volumes[0].Name = "kong-admin"
	r = Mutate(pod, cfg)
	if r.Outcome != Injected {
		t.Fatalf("outcome %s (%s), want injected", r.Outcome, r.Reason)
	}
	c := sidecarOf(t, r)
	if got := c.Env[len(c.Env)-len(cfg.ExtraEnv):]; !reflect.DeepEqual(got, cfg.ExtraEnv) {
		t.Errorf("the sidecar's last variables %+v, want the extra ones", got)
	}
}
