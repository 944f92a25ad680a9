package test

import (
	"errors"
	"fmt"

	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// decodeStrict decodes one YAML document into v as the API server does for
// a strict apply: field names are case-sensitive, and an unknown or
// duplicated field is an error.
func decodeStrict(doc []byte, v any) error {
	j, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return err
	}
	strictErrs, err := sigsjson.UnmarshalStrict(j, v)
	if err != nil {
		return err
	}
	return errors.Join(strictErrs...)
}

// goTypes maps every kind the manifests may hold to its Go type. A rendered
// object of any other kind fails the tests: add its type here first.
var goTypes = map[schema.GroupVersionKind]func() any{
	corev1.SchemeGroupVersion.WithKind("Namespace"):             func() any { return new(corev1.Namespace) },
	corev1.SchemeGroupVersion.WithKind("ServiceAccount"):        func() any { return new(corev1.ServiceAccount) },
	corev1.SchemeGroupVersion.WithKind("Service"):               func() any { return new(corev1.Service) },
	corev1.SchemeGroupVersion.WithKind("ConfigMap"):             func() any { return new(corev1.ConfigMap) },
	appsv1.SchemeGroupVersion.WithKind("Deployment"):            func() any { return new(appsv1.Deployment) },
	policyv1.SchemeGroupVersion.WithKind("PodDisruptionBudget"): func() any { return new(policyv1.PodDisruptionBudget) },
	admissionregistrationv1.SchemeGroupVersion.WithKind("MutatingWebhookConfiguration"): func() any {
		return new(admissionregistrationv1.MutatingWebhookConfiguration)
	},
	autoscalingv2.SchemeGroupVersion.WithKind("HorizontalPodAutoscaler"): func() any { return new(autoscalingv2.HorizontalPodAutoscaler) },
	cmv1.SchemeGroupVersion.WithKind("Issuer"):                           func() any { return new(cmv1.Issuer) },
	cmv1.SchemeGroupVersion.WithKind("Certificate"):                      func() any { return new(cmv1.Certificate) },
	monitoringv1.SchemeGroupVersion.WithKind("ServiceMonitor"):           func() any { return new(monitoringv1.ServiceMonitor) },
	monitoringv1.SchemeGroupVersion.WithKind("PodMonitor"):               func() any { return new(monitoringv1.PodMonitor) },
	monitoringv1.SchemeGroupVersion.WithKind("PrometheusRule"):           func() any { return new(monitoringv1.PrometheusRule) },

	// The route mapping's RBAC.
	rbacv1.SchemeGroupVersion.WithKind("ClusterRole"):        func() any { return new(rbacv1.ClusterRole) },
	rbacv1.SchemeGroupVersion.WithKind("ClusterRoleBinding"): func() any { return new(rbacv1.ClusterRoleBinding) },
	rbacv1.SchemeGroupVersion.WithKind("Role"):               func() any { return new(rbacv1.Role) },
	rbacv1.SchemeGroupVersion.WithKind("RoleBinding"):        func() any { return new(rbacv1.RoleBinding) },

	kongPluginGVK:           func() any { return new(kongPlugin) },
	dataPlaneGVK:            func() any { return new(dataPlane) },
	gatewayConfigurationGVK: func() any { return new(gatewayConfiguration) },
	// KEDA's, checked against its CRDs' schemas (keda_test.go).
	scaledObjectGVK:          func() any { return new(kedaObject) },
	triggerAuthenticationGVK: func() any { return new(kedaObject) },
}

// decodeObject decodes a document strictly into the Go type of its
// apiVersion and kind, and returns it.
func decodeObject(doc []byte) (any, error) {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return nil, err
	}
	gvk := tm.GroupVersionKind()
	newObj, ok := goTypes[gvk]
	if !ok {
		return nil, fmt.Errorf("no Go type for apiVersion %q kind %q", tm.APIVersion, tm.Kind)
	}
	obj := newObj()
	if err := decodeStrict(doc, obj); err != nil {
		return nil, fmt.Errorf("%s: %w", gvk.Kind, err)
	}
	return obj, nil
}

// Kong's resources: github.com/kong/kubernetes-configuration is not
// available from the module proxy here, so these types carry the fields of
// Kong's CRDs that the manifests use, with the CRDs' JSON names. A field the
// manifests misspell, or one they use that is not listed here, fails.

var (
	kongPluginGVK           = schema.GroupVersionKind{Group: "configuration.konghq.com", Version: "v1", Kind: "KongPlugin"}
	dataPlaneGVK            = schema.GroupVersionKind{Group: "gateway-operator.konghq.com", Version: "v1beta1", Kind: "DataPlane"}
	gatewayConfigurationGVK = schema.GroupVersionKind{Group: "gateway-operator.konghq.com", Version: "v1beta1", Kind: "GatewayConfiguration"}
)

// kongPlugin is configuration.konghq.com/v1 KongPlugin.
type kongPlugin struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Plugin            string                `json:"plugin"`
	Config            apiextensionsv1.JSON  `json:"config,omitempty"`
	Disabled          bool                  `json:"disabled,omitempty"`
	Protocols         []string              `json:"protocols,omitempty"`
	InstanceName      string                `json:"instance_name,omitempty"`
	ConfigFrom        *apiextensionsv1.JSON `json:"configFrom,omitempty"`
}

// dataPlaneDeploymentOptions is the deployment of a DataPlane's options.
type dataPlaneDeploymentOptions struct {
	Replicas        *int32                  `json:"replicas,omitempty"`
	PodTemplateSpec *corev1.PodTemplateSpec `json:"podTemplateSpec,omitempty"`
}

// dataPlane is gateway-operator.konghq.com/v1beta1 DataPlane.
type dataPlane struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              struct {
		Deployment dataPlaneDeploymentOptions `json:"deployment"`
	} `json:"spec"`
}

// gatewayConfiguration is gateway-operator.konghq.com/v1beta1
// GatewayConfiguration.
type gatewayConfiguration struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              struct {
		DataPlaneOptions struct {
			Deployment dataPlaneDeploymentOptions `json:"deployment"`
		} `json:"dataPlaneOptions"`
	} `json:"spec"`
}

// kongHelmValues are the kong/kong chart's values the opt-in uses.
type kongHelmValues struct {
	PodLabels      map[string]string `json:"podLabels,omitempty"`
	PodAnnotations map[string]string `json:"podAnnotations,omitempty"`
}

// ingressHelmValues are the kong/ingress chart's values the opt-in uses.
type ingressHelmValues struct {
	Gateway kongHelmValues `json:"gateway"`
}

// adapterValues are the prometheus-adapter chart's values the tutorial
// uses; a rule has the fields of prometheus-adapter's DiscoveryRule.
type adapterValues struct {
	Prometheus struct {
		URL  string `json:"url"`
		Port int    `json:"port,omitempty"`
	} `json:"prometheus"`
	Rules struct {
		Default bool            `json:"default"`
		Custom  []discoveryRule `json:"custom"`
	} `json:"rules"`
}

type discoveryRule struct {
	SeriesQuery   string `json:"seriesQuery"`
	SeriesFilters []struct {
		Is    string `json:"is,omitempty"`
		IsNot string `json:"isNot,omitempty"`
	} `json:"seriesFilters,omitempty"`
	Resources struct {
		Template  string `json:"template,omitempty"`
		Overrides map[string]struct {
			Group    string `json:"group,omitempty"`
			Resource string `json:"resource"`
		} `json:"overrides,omitempty"`
		Namespaced *bool `json:"namespaced,omitempty"`
	} `json:"resources"`
	Name struct {
		Matches string `json:"matches,omitempty"`
		As      string `json:"as,omitempty"`
	} `json:"name"`
	MetricsQuery string `json:"metricsQuery"`
}
