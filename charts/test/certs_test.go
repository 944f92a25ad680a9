package test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/scheme"
)

// notAfterAnnotation is where the chart records a generated certificate's
// expiry, for the upgrade that renews it.
const notAfterAnnotation = "kong-metrics-sidecar.io/not-after"

// The defaults of selfSignedCertificate in values.yaml.
const (
	caValidity      = 3650 * 24 * time.Hour
	servingValidity = 1095 * 24 * time.Hour
	renewBefore     = 180 * 24 * time.Hour
)

// checkSelfSigned checks a rendering without cert-manager: the Secret the
// injector mounts holds a key pair for the Service's DNS names, signed by a
// CA in the webhook's caBundle, whose own key is in another Secret that the
// injector does not mount; each records its expiry.
func checkSelfSigned(t *testing.T, r rendering, in injector, secretName string) {
	t.Helper()
	sc := selfSignedOf(t, r)
	if sc.tls.Name != secretName {
		t.Fatalf("the injector mounts Secret %s, the chart makes %s", secretName, sc.tls.Name)
	}
	if _, err := tls.X509KeyPair(sc.tls.Data["tls.crt"], sc.tls.Data["tls.key"]); err != nil {
		t.Errorf("Secret %s: %v", sc.tls.Name, err)
	}
	if _, err := tls.X509KeyPair(sc.ca.Data["tls.crt"], sc.ca.Data["tls.key"]); err != nil {
		t.Errorf("Secret %s: %v", sc.ca.Name, err)
	}
	caCert := parseCert(t, sc.ca.Data["tls.crt"])
	if !caCert.IsCA {
		t.Errorf("Secret %s holds no CA", sc.ca.Name)
	}
	if !bytes.Equal(sc.tls.Data["ca.crt"], sc.ca.Data["tls.crt"]) {
		t.Errorf("Secret %s: ca.crt is not the CA of Secret %s", sc.tls.Name, sc.ca.Name)
	}
	leaf := parseCert(t, sc.tls.Data["tls.crt"])
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(sc.caBundle) {
		t.Fatal("the webhook's caBundle holds no PEM certificate")
	}
	for _, name := range serviceDNSNames(in.service) {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Errorf("the serving certificate does not verify for %s against the caBundle: %v", name, err)
		}
	}
	checkNotAfter(t, sc.ca, caCert)
	checkNotAfter(t, sc.tls, leaf)
	for _, v := range in.deployment.Spec.Template.Spec.Volumes {
		if v.Secret != nil && v.Secret.SecretName == sc.ca.Name {
			t.Errorf("the injector mounts the CA's Secret %s (and so its key)", sc.ca.Name)
		}
	}
}

// checkNotAfter checks that a Secret's annotation records its certificate's
// expiry (to the second the template saw).
func checkNotAfter(t *testing.T, s *corev1.Secret, cert *x509.Certificate) {
	t.Helper()
	recorded, err := time.Parse(time.RFC3339, s.Annotations[notAfterAnnotation])
	if err != nil {
		t.Errorf("Secret %s: annotation %s: %v", s.Name, notAfterAnnotation, err)
		return
	}
	// The template and Sprig each read the clock once, moments apart.
	if d := recorded.Sub(cert.NotAfter).Abs(); d > time.Hour {
		t.Errorf("Secret %s: annotation %s is %s, the certificate expires at %s", s.Name, notAfterAnnotation, recorded, cert.NotAfter)
	}
}

// selfSigned are the generated certificates of a rendering.
type selfSigned struct {
	ca, tls  *corev1.Secret
	caBundle []byte
}

func selfSignedOf(t *testing.T, r rendering) selfSigned {
	t.Helper()
	var sc selfSigned
	for _, s := range all[corev1.Secret](r.objs) {
		if s.Type != corev1.SecretTypeTLS {
			t.Errorf("Secret %s has type %q, want %s", s.Name, s.Type, corev1.SecretTypeTLS)
		}
		if _, hasCA := s.Data["ca.crt"]; hasCA {
			sc.tls = s
		} else {
			sc.ca = s
		}
	}
	if sc.ca == nil || sc.tls == nil {
		t.Fatalf("Secrets %v, want the CA's and the serving certificate's", ids(r.objs))
	}
	webhooks := all[admissionregistrationv1.MutatingWebhookConfiguration](r.objs)
	if len(webhooks) != 1 {
		t.Fatalf("%d MutatingWebhookConfigurations, want 1", len(webhooks))
	}
	sc.caBundle = webhooks[0].Webhooks[0].ClientConfig.CABundle
	return sc
}

func parseCert(t *testing.T, data []byte) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatalf("no PEM certificate in %q", data)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// bundleCerts parses every certificate of a caBundle.
func bundleCerts(t *testing.T, bundle []byte) []*x509.Certificate {
	t.Helper()
	var certs []*x509.Certificate
	for rest := bundle; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		certs = append(certs, c)
	}
	return certs
}

// fakeCluster answers the chart's lookup calls from the objects it holds,
// through client-go's fake dynamic client, as the API server answers helm
// upgrade. It serves Secrets only: a lookup of anything else fails the
// rendering.
type fakeCluster struct {
	client *dynamicfake.FakeDynamicClient
}

func newFakeCluster(objs ...runtime.Object) fakeCluster {
	return fakeCluster{client: dynamicfake.NewSimpleDynamicClient(scheme.Scheme, objs...)}
}

func (c fakeCluster) GetClientFor(apiVersion, kind string) (dynamic.NamespaceableResourceInterface, bool, error) {
	if apiVersion != "v1" || kind != "Secret" {
		return nil, false, fmt.Errorf("the fake cluster serves v1 Secrets only, not %s %s", apiVersion, kind)
	}
	return c.client.Resource(corev1.SchemeGroupVersion.WithResource("secrets")), true, nil
}

// clusterAfter is the cluster after a release of r: its Secrets, each
// changed by edit (when not nil).
func clusterAfter(r rendering, edit func(*corev1.Secret)) fakeCluster {
	var objs []runtime.Object
	for _, s := range all[corev1.Secret](r.objs) {
		s = s.DeepCopy()
		if edit != nil {
			edit(s)
		}
		objs = append(objs, s)
	}
	return newFakeCluster(objs...)
}

// setNotAfter returns an edit that records expiry at for the Secret named
// name.
func setNotAfter(name string, at time.Time) func(*corev1.Secret) {
	return func(s *corev1.Secret) {
		if s.Name == name {
			s.Annotations[notAfterAnnotation] = at.UTC().Format(time.RFC3339)
		}
	}
}

// TestSelfSignedUpgrade renders an install, then upgrades against a fake
// cluster holding what the install created: the certificates are kept
// (the caBundle does not change) until one comes within renewBeforeDays of
// its expiry; a renewed serving certificate keeps the CA, and a renewed CA
// is trusted beside the old one for that upgrade.
func TestSelfSignedUpgrade(t *testing.T) {
	const values = "logLevel: info\n"
	install := render(t, values, renderOptions{})
	first := selfSignedOf(t, install)
	upgrade := func(t *testing.T, cluster fakeCluster, values string) rendering {
		t.Helper()
		r := render(t, values, renderOptions{upgrade: true, cluster: cluster})
		checkInvariants(t, r)
		return r
	}
	now := time.Now()

	t.Run("kept", func(t *testing.T) {
		// Another value changes; the certificates do not.
		r := upgrade(t, clusterAfter(install, nil), "logLevel: debug\n")
		got := selfSignedOf(t, r)
		if !bytes.Equal(got.caBundle, first.caBundle) {
			t.Error("helm upgrade changed the caBundle")
		}
		for _, pair := range [][2]*corev1.Secret{{first.ca, got.ca}, {first.tls, got.tls}} {
			if !equalSecrets(pair[0], pair[1]) {
				t.Errorf("helm upgrade changed Secret %s", pair[0].Name)
			}
		}
	})

	t.Run("serving certificate renewed", func(t *testing.T) {
		r := upgrade(t, clusterAfter(install, setNotAfter(first.tls.Name, now.Add(renewBefore-24*time.Hour))), values)
		got := selfSignedOf(t, r)
		if !bytes.Equal(got.caBundle, first.caBundle) || !equalSecrets(got.ca, first.ca) {
			t.Error("renewing the serving certificate changed the CA")
		}
		if bytes.Equal(got.tls.Data["tls.crt"], first.tls.Data["tls.crt"]) || bytes.Equal(got.tls.Data["tls.key"], first.tls.Data["tls.key"]) {
			t.Error("the serving certificate (or its key) near its expiry was kept")
		}
		if leaf := parseCert(t, got.tls.Data["tls.crt"]); leaf.NotAfter.Before(now.Add(servingValidity - time.Hour)) {
			t.Errorf("the renewed certificate expires at %s, want %s after now", leaf.NotAfter, servingValidity)
		}
	})

	t.Run("serving certificate outside the window kept", func(t *testing.T) {
		// Not checkInvariants: the record no longer matches the certificate.
		r := render(t, values, renderOptions{upgrade: true, cluster: clusterAfter(install, setNotAfter(first.tls.Name, now.Add(renewBefore+24*time.Hour)))})
		if got := selfSignedOf(t, r); !bytes.Equal(got.tls.Data["tls.crt"], first.tls.Data["tls.crt"]) {
			t.Error("a serving certificate a day outside the renewal window was renewed")
		}
	})

	t.Run("CA renewed", func(t *testing.T) {
		r := upgrade(t, clusterAfter(install, setNotAfter(first.ca.Name, now.Add(renewBefore-24*time.Hour))), values)
		got := selfSignedOf(t, r)
		if bytes.Equal(got.ca.Data["tls.crt"], first.ca.Data["tls.crt"]) {
			t.Fatal("the CA near its expiry was kept")
		}
		bundle := bundleCerts(t, got.caBundle)
		oldCA, newCA := parseCert(t, first.ca.Data["tls.crt"]), parseCert(t, got.ca.Data["tls.crt"])
		if len(bundle) != 2 || !bundle[0].Equal(newCA) || !bundle[1].Equal(oldCA) {
			t.Errorf("caBundle holds %d certificates, want the new CA and the old one, which pods still serving the old certificate need", len(bundle))
		}
		if bytes.Equal(got.tls.Data["tls.crt"], first.tls.Data["tls.crt"]) {
			t.Error("the serving certificate of the old CA was kept")
		}
		// While the injector's pods move from the old certificate to the
		// new one, the API server trusts both.
		roots := x509.NewCertPool()
		roots.AppendCertsFromPEM(got.caBundle)
		name := serviceDNSNames(injectorOf(t, r).service)[0]
		for what, leaf := range map[string][]byte{"old": first.tls.Data["tls.crt"], "new": got.tls.Data["tls.crt"]} {
			if _, err := parseCert(t, leaf).Verify(x509.VerifyOptions{DNSName: name, Roots: roots}); err != nil {
				t.Errorf("the %s serving certificate does not verify against the caBundle: %v", what, err)
			}
		}
		if newCA.NotAfter.Before(now.Add(caValidity - time.Hour)) {
			t.Errorf("the renewed CA expires at %s, want %s after now", newCA.NotAfter, caValidity)
		}

		// The next upgrade drops the old CA.
		next := selfSignedOf(t, upgrade(t, clusterAfter(r, nil), values))
		if bundle := bundleCerts(t, next.caBundle); len(bundle) != 1 || !bundle[0].Equal(newCA) {
			t.Errorf("the upgrade after a renewal: caBundle holds %d certificates, want the new CA alone", len(bundle))
		}
	})

	t.Run("expired CA not trusted", func(t *testing.T) {
		r := upgrade(t, clusterAfter(install, setNotAfter(first.ca.Name, now.Add(-time.Hour))), values)
		if bundle := bundleCerts(t, selfSignedOf(t, r).caBundle); len(bundle) != 1 {
			t.Errorf("caBundle holds %d certificates, want the new CA alone (the old one has expired)", len(bundle))
		}
	})

	t.Run("unreadable record regenerates", func(t *testing.T) {
		for name, edit := range map[string]func(*corev1.Secret){
			"no annotation": func(s *corev1.Secret) { delete(s.Annotations, notAfterAnnotation) },
			"bad date":      func(s *corev1.Secret) { s.Annotations[notAfterAnnotation] = "soon" },
			"no key":        func(s *corev1.Secret) { delete(s.Data, "tls.key") },
		} {
			t.Run(name, func(t *testing.T) {
				r := upgrade(t, clusterAfter(install, edit), values)
				if got := selfSignedOf(t, r); bytes.Equal(got.caBundle, first.caBundle) {
					t.Error("Secrets without a readable record were kept")
				}
			})
		}
	})
}

func equalSecrets(a, b *corev1.Secret) bool {
	if a.Annotations[notAfterAnnotation] != b.Annotations[notAfterAnnotation] || len(a.Data) != len(b.Data) {
		return false
	}
	for k, v := range a.Data {
		if !bytes.Equal(v, b.Data[k]) {
			return false
		}
	}
	return true
}

// objectMeta returns an object's metadata.
func objectMeta(t *testing.T, o object) interface{ GetLabels() map[string]string } {
	t.Helper()
	m, err := meta.Accessor(o.value)
	if err != nil {
		t.Fatal(err)
	}
	return m
}
