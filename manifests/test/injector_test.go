package test

import (
	"path"
	"reflect"
	"slices"
	"strings"
	"testing"

	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

const (
	injectorNamespace = "kong-metrics-sidecar-system"
	injectorName      = "kong-metrics-injector"
	injectorContainer = "injector"
	injectorImageName = "ghcr.io/kong-metrics-sidecar/kong-metrics-sidecar"
)

// injector is the rendered install.
type injector struct {
	objs       []object
	deployment *appsv1.Deployment
	container  *corev1.Container
	service    *corev1.Service
	webhook    *admissionregistrationv1.MutatingWebhookConfiguration
}

func renderInjector(t *testing.T) injector {
	t.Helper()
	in := injector{objs: render(t, "injector")}
	in.deployment = find[appsv1.Deployment](t, in.objs, injectorName)
	in.service = find[corev1.Service](t, in.objs, injectorName)
	in.webhook = find[admissionregistrationv1.MutatingWebhookConfiguration](t, in.objs, injectorName)
	cs := in.deployment.Spec.Template.Spec.Containers
	if len(cs) != 1 || cs[0].Name != injectorContainer {
		t.Fatalf("Deployment containers %v, want one named %q", cs, injectorContainer)
	}
	in.container = &cs[0]
	return in
}

// env returns the value of a container's variable and whether it is set.
func env(c *corev1.Container, name string) (string, bool) {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value, true
		}
	}
	return "", false
}

// setting is the injector's value for a variable: the Deployment's, else
// the binary's default.
func setting(t *testing.T, c *corev1.Container, defaults map[string]string, name string) string {
	t.Helper()
	if v, ok := env(c, name); ok && v != "" {
		return v
	}
	def, ok := defaults[name]
	if !ok {
		t.Fatalf("kong-metrics-injector -help does not list %s", name)
	}
	return def
}

// containerPort resolves a port by name or number in c.
func containerPort(t *testing.T, c *corev1.Container, p intstr.IntOrString) int32 {
	t.Helper()
	for _, cp := range c.Ports {
		if (p.Type == intstr.String && cp.Name == p.StrVal) || (p.Type == intstr.Int && cp.ContainerPort == p.IntVal) {
			return cp.ContainerPort
		}
	}
	t.Fatalf("container %q has no port %s", c.Name, p.String())
	return 0
}

func selects(t *testing.T, sel *metav1.LabelSelector, set map[string]string) bool {
	t.Helper()
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		t.Fatalf("selector %v: %v", sel, err)
	}
	return s.Matches(labels.Set(set))
}

// TestInjectorNamespace: everything namespaced lives in the injector's
// namespace, which the install creates.
func TestInjectorNamespace(t *testing.T) {
	in := renderInjector(t)
	find[corev1.Namespace](t, in.objs, injectorNamespace)
	for _, o := range in.objs {
		switch o.value.(type) {
		case *corev1.Namespace, *admissionregistrationv1.MutatingWebhookConfiguration, *rbacv1.ClusterRole, *rbacv1.ClusterRoleBinding:
			if o.namespace != "" {
				t.Errorf("cluster-scoped %s %s has namespace %q", o.gvk.Kind, o.name, o.namespace)
			}
		case *rbacv1.Role, *rbacv1.RoleBinding:
			// The route mapping's, in the Kong namespace (TestInjectorRBAC).
			if o.namespace != exampleNamespace {
				t.Errorf("%s %s is in namespace %q, want the Kong namespace %q", o.gvk.Kind, o.name, o.namespace, exampleNamespace)
			}
		default:
			if o.namespace != injectorNamespace {
				t.Errorf("%s %s is in namespace %q, want %q", o.gvk.Kind, o.name, o.namespace, injectorNamespace)
			}
		}
	}
}

// TestInjectorDeployment: two replicas spread across nodes, kept up by a
// PodDisruptionBudget, locked down, probed, with resources and settings the
// injector accepts.
func TestInjectorDeployment(t *testing.T) {
	in := renderInjector(t)
	d, c := in.deployment, in.container
	pod := d.Spec.Template.Spec
	podLabels := d.Spec.Template.Labels
	if !selects(t, d.Spec.Selector, podLabels) {
		t.Fatalf("Deployment selector %v does not select its pods %v", d.Spec.Selector, podLabels)
	}

	if d.Spec.Replicas == nil || *d.Spec.Replicas != 2 {
		t.Errorf("replicas %v, want 2", d.Spec.Replicas)
	}
	spread := false
	for _, tsc := range pod.TopologySpreadConstraints {
		if tsc.TopologyKey == corev1.LabelHostname && tsc.MaxSkew == 1 && selects(t, tsc.LabelSelector, podLabels) {
			spread = true
		}
	}
	if !spread {
		t.Errorf("no topologySpreadConstraint over %s selecting the injector's pods: %+v", corev1.LabelHostname, pod.TopologySpreadConstraints)
	}
	pdbs := all[policyv1.PodDisruptionBudget](in.objs)
	if len(pdbs) != 1 {
		t.Fatalf("%d PodDisruptionBudgets, want 1", len(pdbs))
	}
	pdb := pdbs[0]
	if !selects(t, pdb.Spec.Selector, podLabels) {
		t.Errorf("PodDisruptionBudget selector %v does not select the injector's pods", pdb.Spec.Selector)
	}
	if pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntValue() < 1 || int32(pdb.Spec.MinAvailable.IntValue()) >= *d.Spec.Replicas {
		t.Errorf("PodDisruptionBudget minAvailable %v, want at least 1 and fewer than the replicas", pdb.Spec.MinAvailable)
	}

	// The ServiceAccount: a token in the injector's pods only, for the
	// route mapping (TestInjectorRBAC), none in any other pod using it.
	sa := find[corev1.ServiceAccount](t, in.objs, pod.ServiceAccountName)
	if sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
		t.Error("the ServiceAccount mounts a token")
	}
	if pod.AutomountServiceAccountToken == nil || !*pod.AutomountServiceAccountToken {
		t.Error("the pod mounts no service account token; the route mapping needs one")
	}

	// Hardened.
	psc := pod.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser != nonRootUID ||
		psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod securityContext %+v, want non-root uid %d and RuntimeDefault seccomp", psc, nonRootUID)
	}
	sc := c.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.Privileged != nil && *sc.Privileged ||
		sc.Capabilities == nil || !reflect.DeepEqual(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0 ||
		sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
		t.Errorf("container securityContext %+v, want read-only root, no privilege escalation, all capabilities dropped, non-root", sc)
	}

	// Resources: requests for scheduling, a memory limit.
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if q, ok := c.Resources.Requests[r]; !ok || q.Sign() <= 0 {
			t.Errorf("no %s request", r)
		}
	}
	if q, ok := c.Resources.Limits[corev1.ResourceMemory]; !ok || q.Cmp(c.Resources.Requests[corev1.ResourceMemory]) < 0 {
		t.Errorf("memory limit %v, want one at least the request", q.String())
	}

	// The binary and its settings: every variable one the injector knows
	// (an unknown INJECTOR_* variable makes it exit 2), valid values.
	if !reflect.DeepEqual(c.Command, []string{"/usr/local/bin/kong-metrics-injector"}) {
		t.Errorf("command %q, want the injector's binary (the image's entrypoint is the sidecar)", c.Command)
	}
	known := variables(t, "kong-metrics-injector")
	for _, e := range c.Env {
		if _, ok := known[e.Name]; !ok {
			t.Errorf("variable %s: kong-metrics-injector does not know it and would exit 2", e.Name)
		}
		if e.ValueFrom != nil {
			t.Errorf("variable %s: valueFrom, want a value", e.Name)
		}
	}
	if m := setting(t, c, known, "INJECTOR_SIDECAR_MODE"); m != "native" && m != "container" {
		t.Errorf("INJECTOR_SIDECAR_MODE=%q, want native or container", m)
	}
	if cm := setting(t, c, known, "INJECTOR_DEFAULT_CONFIGMAP"); cm != exampleConfigMap {
		t.Errorf("INJECTOR_DEFAULT_CONFIGMAP=%q, want %q (the ConfigMap in manifests/examples)", cm, exampleConfigMap)
	}

	// Probes on the HTTPS listener.
	https := listenPort(t, setting(t, c, known, "INJECTOR_LISTEN_ADDR"))
	for _, p := range []struct {
		what  string
		probe *corev1.Probe
		path  string
	}{{"readinessProbe", c.ReadinessProbe, "/readyz"}, {"livenessProbe", c.LivenessProbe, "/healthz"}} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("no HTTP %s", p.what)
			continue
		}
		g := p.probe.HTTPGet
		if g.Path != p.path || g.Scheme != corev1.URISchemeHTTPS || containerPort(t, c, g.Port) != https {
			t.Errorf("%s %s %s port %s, want %s on HTTPS port %d", p.what, g.Scheme, g.Path, g.Port.String(), p.path, https)
		}
	}
	if p := listenPort(t, setting(t, c, known, "INJECTOR_METRICS_ADDR")); containerPort(t, c, intstr.FromInt32(p)) != p {
		t.Errorf("metrics port %d not declared", p)
	}

	// The serving certificate: the Secret of the Certificate, mounted as a
	// directory (never subPath, which the kubelet never updates) where the
	// injector reads it.
	certFile := setting(t, c, known, "INJECTOR_TLS_CERT_FILE")
	keyFile := setting(t, c, known, "INJECTOR_TLS_KEY_FILE")
	if path.Dir(certFile) != path.Dir(keyFile) {
		t.Fatalf("certificate %s and key %s in different directories", certFile, keyFile)
	}
	if path.Base(certFile) != corev1.TLSCertKey || path.Base(keyFile) != corev1.TLSPrivateKeyKey {
		t.Errorf("certificate %s and key %s are not a kubernetes.io/tls Secret's keys", certFile, keyFile)
	}
	var mount *corev1.VolumeMount
	for i, m := range c.VolumeMounts {
		if m.MountPath == path.Dir(certFile) {
			mount = &c.VolumeMounts[i]
		}
	}
	if mount == nil || !mount.ReadOnly || mount.SubPath != "" {
		t.Fatalf("no read-only directory mount at %s: %+v", path.Dir(certFile), c.VolumeMounts)
	}
	var secret string
	for _, v := range pod.Volumes {
		if v.Name == mount.Name && v.Secret != nil {
			secret = v.Secret.SecretName
			if v.Secret.DefaultMode == nil || *v.Secret.DefaultMode&0o007 != 0 {
				t.Errorf("TLS Secret volume mode %v, want no access for others", v.Secret.DefaultMode)
			}
		}
	}
	if want := servingCertificate(t, in).Spec.SecretName; secret == "" || secret != want {
		t.Errorf("TLS volume is Secret %q, want the serving Certificate's %q", secret, want)
	}
}

// TestInjectorImage: the image tag is set once, in kustomization.yaml, and
// the injector injects the image it runs from.
func TestInjectorImage(t *testing.T) {
	in := renderInjector(t)
	var k struct {
		Images []struct {
			Name    string `json:"name"`
			NewName string `json:"newName"`
			NewTag  string `json:"newTag"`
			Digest  string `json:"digest"`
		} `json:"images"`
	}
	// Only images: kustomize has checked the rest.
	if err := yaml.Unmarshal(readManifest(t, "injector/kustomization.yaml"), &k); err != nil {
		t.Fatal(err)
	}
	if len(k.Images) != 1 || k.Images[0].Name != injectorImageName || (k.Images[0].NewTag == "" && k.Images[0].Digest == "") {
		t.Fatalf("kustomization images %+v, want one entry for %s with a tag or digest", k.Images, injectorImageName)
	}
	img := k.Images[0]
	want := injectorImageName
	if img.NewName != "" {
		want = img.NewName
	}
	if img.NewTag != "" {
		want += ":" + img.NewTag
	}
	if img.Digest != "" {
		want += "@" + img.Digest
	}
	if in.container.Image != want {
		t.Errorf("injector image %q, want %q", in.container.Image, want)
	}
	if v, _ := env(in.container, "INJECTOR_SIDECAR_IMAGE"); v != in.container.Image {
		t.Errorf("INJECTOR_SIDECAR_IMAGE=%q, want the injector's own image %q", v, in.container.Image)
	}
	// Nowhere else: the sources name the image without a tag.
	for _, f := range []string{"deployment.yaml"} {
		if s := string(readManifest(t, "injector/"+f)); strings.Contains(s, injectorImageName+":") {
			t.Errorf("injector/%s tags the image; set the tag in kustomization.yaml only", f)
		}
	}
}

// TestInjectorService: 443 on the Service reaches the HTTPS port (9443) of
// the injector's pods.
func TestInjectorService(t *testing.T) {
	in := renderInjector(t)
	s := in.service
	if !selects(t, &metav1.LabelSelector{MatchLabels: s.Spec.Selector}, in.deployment.Spec.Template.Labels) || len(s.Spec.Selector) == 0 {
		t.Errorf("Service selector %v does not select the injector's pods", s.Spec.Selector)
	}
	known := variables(t, "kong-metrics-injector")
	https := listenPort(t, setting(t, in.container, known, "INJECTOR_LISTEN_ADDR"))
	if len(s.Spec.Ports) != 1 {
		t.Fatalf("Service ports %+v, want one", s.Spec.Ports)
	}
	p := s.Spec.Ports[0]
	if p.Port != 443 || containerPort(t, in.container, p.TargetPort) != https {
		t.Errorf("Service port %d → %s, want 443 → %d", p.Port, p.TargetPort.String(), https)
	}
}

// TestWebhookConfiguration pins the webhook registration.
func TestWebhookConfiguration(t *testing.T) {
	in := renderInjector(t)
	if len(in.webhook.Webhooks) != 1 {
		t.Fatalf("%d webhooks, want 1", len(in.webhook.Webhooks))
	}
	w := in.webhook.Webhooks[0]
	check := func(what string, got, want any) {
		t.Helper()
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s = %#v, want %#v", what, got, want)
		}
	}
	check("admissionReviewVersions", w.AdmissionReviewVersions, []string{"v1"})
	svc := w.ClientConfig.Service
	if svc == nil || svc.Path == nil || svc.Port == nil || w.ClientConfig.URL != nil {
		t.Fatalf("clientConfig %+v, want a Service with path and port", w.ClientConfig)
	}
	check("service", svc.Namespace+"/"+svc.Name, in.service.Namespace+"/"+in.service.Name)
	check("service port", *svc.Port, in.service.Spec.Ports[0].Port)
	check("path", *svc.Path, "/mutate")
	check("rules", w.Rules, []admissionregistrationv1.RuleWithOperations{{
		Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
		Rule: admissionregistrationv1.Rule{
			APIGroups:   []string{""},
			APIVersions: []string{"v1"},
			Resources:   []string{"pods"},
			Scope:       new(admissionregistrationv1.NamespacedScope),
		},
	}})
	check("failurePolicy", deref(w.FailurePolicy), admissionregistrationv1.Ignore)
	check("sideEffects", deref(w.SideEffects), admissionregistrationv1.SideEffectClassNone)
	check("timeoutSeconds", deref(w.TimeoutSeconds), int32(5))
	check("reinvocationPolicy", deref(w.ReinvocationPolicy), admissionregistrationv1.IfNeededReinvocationPolicy)

	// objectSelector: exactly the opt-in label.
	if w.ObjectSelector == nil {
		t.Fatal("no objectSelector")
	}
	check("objectSelector", *w.ObjectSelector, metav1.LabelSelector{MatchLabels: map[string]string{labelInject: "true"}})
	// namespaceSelector: every namespace but kube-system and the injector's.
	if w.NamespaceSelector == nil {
		t.Fatal("no namespaceSelector")
	}
	for ns, want := range map[string]bool{"kube-system": false, injectorNamespace: false, "kong": true, "default": true} {
		if got := selects(t, w.NamespaceSelector, map[string]string{corev1.LabelMetadataName: ns}); got != want {
			t.Errorf("namespaceSelector selects namespace %s: %v, want %v", ns, got, want)
		}
	}
}

func deref[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}

// servingCertificate is the Certificate whose CA cert-manager injects into
// the webhook.
func servingCertificate(t *testing.T, in injector) *cmv1.Certificate {
	t.Helper()
	from := in.webhook.Annotations["cert-manager.io/inject-ca-from"]
	ns, name, ok := strings.Cut(from, "/")
	if !ok || ns != injectorNamespace {
		t.Fatalf("cert-manager.io/inject-ca-from %q, want %s/<Certificate>", from, injectorNamespace)
	}
	return find[cmv1.Certificate](t, in.objs, name)
}

// TestCertificates: a self-signed Issuer makes a CA, whose Issuer signs the
// serving certificate for the Service's DNS names; the webhook's caBundle
// comes from it.
func TestCertificates(t *testing.T) {
	in := renderInjector(t)
	if in.webhook.Webhooks[0].ClientConfig.CABundle != nil {
		t.Error("caBundle is set; cert-manager injects it")
	}
	serving := servingCertificate(t, in)
	for _, dns := range []string{
		in.service.Name + "." + in.service.Namespace + ".svc",
		in.service.Name + "." + in.service.Namespace + ".svc.cluster.local",
	} {
		if !slices.Contains(serving.Spec.DNSNames, dns) {
			t.Errorf("serving Certificate dnsNames %v lack %s", serving.Spec.DNSNames, dns)
		}
	}
	if serving.Spec.IsCA {
		t.Error("the serving Certificate is a CA")
	}
	if !slices.Contains(serving.Spec.Usages, cmv1.UsageServerAuth) {
		t.Errorf("serving Certificate usages %v lack server auth", serving.Spec.Usages)
	}
	caIssuer := findIssuer(t, in, serving.Spec.IssuerRef)
	if caIssuer.Spec.CA == nil {
		t.Fatalf("the serving Certificate's Issuer %s is not a CA Issuer", caIssuer.Name)
	}
	var ca *cmv1.Certificate
	for _, c := range all[cmv1.Certificate](in.objs) {
		if c.Spec.SecretName == caIssuer.Spec.CA.SecretName {
			ca = c
		}
	}
	if ca == nil || !ca.Spec.IsCA {
		t.Fatalf("no CA Certificate writes Secret %s", caIssuer.Spec.CA.SecretName)
	}
	if root := findIssuer(t, in, ca.Spec.IssuerRef); root.Spec.SelfSigned == nil {
		t.Errorf("the CA's Issuer %s is not self-signed", root.Name)
	}
}

// findIssuer returns the Issuer ref names; it must be a namespaced
// cert-manager Issuer in the install.
func findIssuer(t *testing.T, in injector, ref cmmeta.IssuerReference) *cmv1.Issuer {
	t.Helper()
	if ref.Kind != "Issuer" || (ref.Group != "" && ref.Group != "cert-manager.io") {
		t.Fatalf("issuerRef %+v, want a cert-manager.io Issuer", ref)
	}
	return find[cmv1.Issuer](t, in.objs, ref.Name)
}
