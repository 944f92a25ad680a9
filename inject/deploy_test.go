package inject

import (
	"os"
	"reflect"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"sigs.k8s.io/yaml"
)

// TestWebhookConfiguration pins what the injector relies on in the shipped
// MutatingWebhookConfiguration.
func TestWebhookConfiguration(t *testing.T) {
	data, err := os.ReadFile("deploy/mutatingwebhookconfiguration.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cfg admissionregistrationv1.MutatingWebhookConfiguration
	if err := yaml.UnmarshalStrict(data, &cfg); err != nil {
		t.Fatalf("not a MutatingWebhookConfiguration: %v", err)
	}
	if cfg.APIVersion != "admissionregistration.k8s.io/v1" || cfg.Kind != "MutatingWebhookConfiguration" {
		t.Errorf("apiVersion %q kind %q", cfg.APIVersion, cfg.Kind)
	}
	if len(cfg.Webhooks) != 1 {
		t.Fatalf("%d webhooks, want 1", len(cfg.Webhooks))
	}
	w := cfg.Webhooks[0]
	check := func(what string, got, want any) {
		t.Helper()
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s = %v, want %v", what, got, want)
		}
	}
	check("admissionReviewVersions", w.AdmissionReviewVersions, []string{"v1"})
	if w.ClientConfig.Service == nil || w.ClientConfig.Service.Path == nil {
		t.Fatal("clientConfig.service.path is not set")
	}
	check("path", *w.ClientConfig.Service.Path, "/mutate")
	check("objectSelector", w.ObjectSelector.MatchLabels, map[string]string{LabelInject: "true"})
	check("objectSelector expressions", len(w.ObjectSelector.MatchExpressions), 0)
	if len(w.Rules) != 1 {
		t.Fatalf("%d rules, want 1", len(w.Rules))
	}
	r := w.Rules[0]
	check("operations", r.Operations, []admissionregistrationv1.OperationType{admissionregistrationv1.Create})
	check("apiGroups", r.APIGroups, []string{""})
	check("resources", r.Resources, []string{"pods"})
	check("sideEffects", *w.SideEffects, admissionregistrationv1.SideEffectClassNone)
	check("reinvocationPolicy", *w.ReinvocationPolicy, admissionregistrationv1.IfNeededReinvocationPolicy)
	check("failurePolicy", *w.FailurePolicy, admissionregistrationv1.Ignore)
	if w.TimeoutSeconds == nil || *w.TimeoutSeconds > 10 {
		t.Errorf("timeoutSeconds %v, want at most 10", w.TimeoutSeconds)
	}
}
