package test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/kube"
	"helm.sh/helm/v3/pkg/releaseutil"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/integration/e2e/cluster"
	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/testsupport/harness"
)

// kongNamespace is where the test's Kong pods are created, as the chart's
// default kongNamespaces names it.
const kongNamespace = "kong"

// TestChartOnAPIServer installs the chart with the Helm SDK on a real
// kube-apiserver (with etcd and kube-controller-manager, as the end-to-end
// test runs them), without cert-manager, and checks what a platform
// engineer would:
//   - the API server calls the injector over TLS, trusting the chart's
//     caBundle, and an opted-in Kong pod is stored with the sidecar;
//   - helm upgrade with changed values keeps the certificate and the
//     caBundle, and admission works throughout: no opted-in pod created
//     during the upgrade is stored without the sidecar;
//   - helm uninstall leaves nothing the chart created, nor Helm's record.
//
// The injector runs as a local process with the environment of the stored
// Deployment and the serving certificate from the stored Secret, laid out
// as the kubelet lays out a Secret volume. A post-renderer does what the
// end-to-end overlay does for a cluster without nodes: the injector's
// Service becomes an ExternalName to localhost, on the process's port.
func TestChartOnAPIServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	third, err := harness.ThirdPartyBinaries(ctx, "etcd", "kubernetes")
	if err != nil {
		t.Fatal(err)
	}
	own, err := harness.Binaries(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c, err := cluster.Start(ctx, cluster.Options{
		Dir: filepath.Join(t.TempDir(), "cluster"),
		Bins: cluster.Binaries{
			Etcd:              third["E2E_ETCD_BIN"],
			APIServer:         third["E2E_KUBE_APISERVER_BIN"],
			ControllerManager: third["E2E_KUBE_CONTROLLER_MANAGER_BIN"],
		},
		HPASyncPeriod: time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	for _, ns := range []string{releaseNamespace, kongNamespace} {
		if _, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	injectorAddr, err := harness.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	port, err := strconv.ParseInt(injectorAddr[strings.LastIndex(injectorAddr, ":")+1:], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	helmCfg := helmConfiguration(t, c.AdminKubeconfig)
	chrt := loadChart(t)

	// --- helm install, no cert-manager.
	install := action.NewInstall(helmCfg)
	install.ReleaseName, install.Namespace = releaseName, releaseNamespace
	install.PostRenderer = loopbackService{port: port}
	install.Timeout = time.Minute
	rel, err := install.RunWithContext(ctx, chrt, map[string]any{})
	if err != nil {
		t.Fatalf("helm install: %v", err)
	}
	created := manifestObjects(t, rel.Manifest)
	if len(created) < 5 {
		t.Fatalf("the release holds %d objects: %v", len(created), created)
	}
	caBundle := webhookCABundle(ctx, t, c.Client)
	tlsSecret := storedTLSSecret(ctx, t, c.Client)

	vol := &secretVolume{dir: t.TempDir()}
	vol.write(t, tlsSecret)
	// The route mapping reaches the API server as the chart's
	// ServiceAccount, so that the chart's RBAC is what allows it.
	kubeconfig, err := c.Kubeconfig("injector", "system:serviceaccount:"+releaseNamespace+":"+releaseName,
		[]string{"system:serviceaccounts", "system:serviceaccounts:" + releaseNamespace})
	if err != nil {
		t.Fatal(err)
	}
	injector := startInjector(ctx, t, c.Client, own["kong-metrics-injector"], injectorAddr, vol.dir, kubeconfig, caBundle)
	t.Cleanup(func() { injector.Stop(10 * time.Second) })

	if pod := createKongPod(ctx, t, c.Client, "kong-installed"); !hasSidecar(pod) {
		t.Fatalf("the opted-in pod was stored without the sidecar: the API server did not reach the injector with the chart's caBundle\n%s", injector.Output())
	}

	// --- helm upgrade with changed values, while opted-in pods keep coming.
	stopPods, podsDone := make(chan struct{}), make(chan []*corev1.Pod, 1)
	go func() { podsDone <- createPodsUntil(ctx, t, c.Client, stopPods) }()
	upgrade := action.NewUpgrade(helmCfg)
	upgrade.Namespace = releaseNamespace
	upgrade.PostRenderer = loopbackService{port: port}
	upgrade.Timeout = time.Minute
	values := map[string]any{
		"webhook":        map[string]any{"timeoutSeconds": 10},
		"podAnnotations": map[string]any{"example.com/upgraded": "true"},
	}
	if _, err := upgrade.RunWithContext(ctx, releaseName, chrt, values); err != nil {
		close(stopPods)
		t.Fatalf("helm upgrade: %v", err)
	}
	time.Sleep(time.Second) // pods created after the upgrade's last write, too
	close(stopPods)
	pods := <-podsDone
	if len(pods) == 0 {
		t.Fatal("no pod was created during the upgrade")
	}
	for _, p := range pods {
		if !hasSidecar(p) {
			t.Errorf("pod %s, created during helm upgrade, was stored without the sidecar", p.Name)
		}
	}
	if got := webhookCABundle(ctx, t, c.Client); !bytes.Equal(got, caBundle) {
		t.Error("helm upgrade changed the webhook's caBundle: a fresh install's CA must be kept")
	}
	if got := storedTLSSecret(ctx, t, c.Client); !bytes.Equal(got.Data["tls.crt"], tlsSecret.Data["tls.crt"]) {
		t.Error("helm upgrade replaced the serving certificate of a fresh install")
	}
	wh, err := c.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, releaseName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ts := wh.Webhooks[0].TimeoutSeconds; ts == nil || *ts != 10 {
		t.Errorf("after the upgrade timeoutSeconds = %v, want the upgraded 10", ts)
	}
	t.Logf("%d opted-in pods created during helm upgrade, each stored with the sidecar", len(pods))

	// --- helm uninstall.
	if _, err := action.NewUninstall(helmCfg).Run(releaseName); err != nil {
		t.Fatalf("helm uninstall: %v", err)
	}
	left := leftOver(ctx, t, c, created)
	if len(left) > 0 {
		t.Errorf("helm uninstall left %v", left)
	}
	records, err := c.Client.CoreV1().Secrets(releaseNamespace).List(ctx, metav1.ListOptions{LabelSelector: "owner=helm,name=" + releaseName})
	if err != nil {
		t.Fatal(err)
	}
	if len(records.Items) > 0 {
		t.Errorf("helm uninstall left %d release records", len(records.Items))
	}
	// And admission is gone with it: a pod now is stored as it was sent.
	if pod := createKongPod(ctx, t, c.Client, "kong-uninstalled"); hasSidecar(pod) {
		t.Error("a pod created after helm uninstall still got the sidecar")
	}
}

// helmConfiguration is the Helm SDK's configuration for the release
// namespace of the cluster behind kubeconfig, with releases stored as
// Secrets (Helm's default driver).
func helmConfiguration(t *testing.T, kubeconfig string) *action.Configuration {
	t.Helper()
	cfg := new(action.Configuration)
	getter := kube.GetConfig(kubeconfig, "", releaseNamespace)
	if err := cfg.Init(getter, releaseNamespace, "secret", t.Logf); err != nil {
		t.Fatalf("helm configuration: %v", err)
	}
	return cfg
}

// loopbackService is a Helm post-renderer that points the injector's
// Service at a local process: an ExternalName to localhost, on port, in
// the Service and in the webhook's clientConfig (the API server dials the
// webhook's port on the external name).
type loopbackService struct{ port int64 }

// Run implements postrender.PostRenderer.
func (l loopbackService) Run(rendered *bytes.Buffer) (*bytes.Buffer, error) {
	var out bytes.Buffer
	for _, doc := range releaseutil.SplitManifests(rendered.String()) {
		var obj map[string]any
		if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
			return nil, fmt.Errorf("post-render: %w", err)
		}
		if obj == nil {
			continue
		}
		u := &unstructured.Unstructured{Object: obj}
		switch {
		case u.GetKind() == "Service" && u.GetName() == releaseName:
			unstructured.RemoveNestedField(obj, "spec", "selector")
			if err := unstructured.SetNestedField(obj, "ExternalName", "spec", "type"); err != nil {
				return nil, err
			}
			if err := unstructured.SetNestedField(obj, "localhost", "spec", "externalName"); err != nil {
				return nil, err
			}
			ports, _, _ := unstructured.NestedSlice(obj, "spec", "ports")
			for _, p := range ports {
				p.(map[string]any)["port"] = l.port
			}
			if err := unstructured.SetNestedSlice(obj, ports, "spec", "ports"); err != nil {
				return nil, err
			}
		case u.GetKind() == "MutatingWebhookConfiguration":
			hooks, _, _ := unstructured.NestedSlice(obj, "webhooks")
			for _, h := range hooks {
				if err := unstructured.SetNestedField(h.(map[string]any), l.port, "clientConfig", "service", "port"); err != nil {
					return nil, err
				}
			}
			if err := unstructured.SetNestedSlice(obj, hooks, "webhooks"); err != nil {
				return nil, err
			}
		}
		b, err := yaml.Marshal(obj)
		if err != nil {
			return nil, err
		}
		out.WriteString("---\n")
		out.Write(b)
	}
	return &out, nil
}

// ref names one object a release created.
type ref struct {
	apiVersion, kind, namespace, name string
}

func (r ref) String() string { return r.kind + " " + r.namespace + "/" + r.name }

// manifestObjects lists the objects of a release's manifest.
func manifestObjects(t *testing.T, manifest string) []ref {
	t.Helper()
	var refs []ref
	for _, doc := range releaseutil.SplitManifests(manifest) {
		var u unstructured.Unstructured
		if err := yaml.Unmarshal([]byte(doc), &u.Object); err != nil {
			t.Fatal(err)
		}
		if u.Object == nil {
			continue
		}
		refs = append(refs, ref{u.GetAPIVersion(), u.GetKind(), u.GetNamespace(), u.GetName()})
	}
	return refs
}

// leftOver returns the objects of refs that the API server still has.
func leftOver(ctx context.Context, t *testing.T, c *cluster.Cluster, refs []ref) []ref {
	t.Helper()
	dc, err := dynamic.NewForConfig(c.Admin)
	if err != nil {
		t.Fatal(err)
	}
	var left []ref
	for _, r := range refs {
		gv, err := schema.ParseGroupVersion(r.apiVersion)
		if err != nil {
			t.Fatal(err)
		}
		res := gv.WithResource(strings.ToLower(r.kind) + "s")
		var getErr error
		if r.namespace != "" {
			_, getErr = dc.Resource(res).Namespace(r.namespace).Get(ctx, r.name, metav1.GetOptions{})
		} else {
			_, getErr = dc.Resource(res).Get(ctx, r.name, metav1.GetOptions{})
		}
		switch {
		case apierrors.IsNotFound(getErr):
		case getErr != nil:
			t.Fatalf("looking for %s: %v", r, getErr)
		default:
			left = append(left, r)
		}
	}
	return left
}

// webhookCABundle is the caBundle the API server trusts the injector with.
func webhookCABundle(ctx context.Context, t *testing.T, client kubernetes.Interface) []byte {
	t.Helper()
	wh, err := client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, releaseName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var hook *admissionregistrationv1.MutatingWebhook
	if len(wh.Webhooks) != 1 {
		t.Fatalf("%d webhooks, want 1", len(wh.Webhooks))
	}
	hook = &wh.Webhooks[0]
	if len(hook.ClientConfig.CABundle) == 0 {
		t.Fatal("the webhook has no caBundle without cert-manager")
	}
	return hook.ClientConfig.CABundle
}

// storedTLSSecret is the serving certificate's Secret as the API server
// holds it.
func storedTLSSecret(ctx context.Context, t *testing.T, client kubernetes.Interface) *corev1.Secret {
	t.Helper()
	list, err := client.CoreV1().Secrets(releaseNamespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range list.Items {
		s := &list.Items[i]
		if s.Type == corev1.SecretTypeTLS && strings.HasSuffix(s.Name, "-tls") && !strings.Contains(s.Name, "-ca") {
			return s
		}
	}
	t.Fatalf("no serving certificate Secret in %s", releaseNamespace)
	return nil
}

// startInjector runs the injector as the stored Deployment configures it,
// with its certificate from dir and its API access (the route mapping)
// from kubeconfig, and waits until it serves a certificate that caBundle
// trusts.
func startInjector(ctx context.Context, t *testing.T, client kubernetes.Interface, bin, addr, dir, kubeconfig string, caBundle []byte) *harness.Process {
	t.Helper()
	d, err := client.AppsV1().Deployments(releaseNamespace).Get(ctx, releaseName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	env := []string{
		"INJECTOR_LISTEN_ADDR=" + addr,
		"INJECTOR_TLS_CERT_FILE=" + filepath.Join(dir, "tls.crt"),
		"INJECTOR_TLS_KEY_FILE=" + filepath.Join(dir, "tls.key"),
		"INJECTOR_METRICS_ADDR=127.0.0.1:0",
		"INJECTOR_KUBECONFIG=" + kubeconfig,
	}
	env = append(env, injectorEnv(d)...)
	if bin == "" {
		t.Fatal("no kong-metrics-injector binary")
	}
	p, err := harness.Start("kong-metrics-injector", bin, nil, env)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caBundle) {
		p.Stop(5 * time.Second)
		t.Fatalf("the caBundle holds no certificate: %s", base64.StdEncoding.EncodeToString(caBundle))
	}
	// The API server verifies the Service's name, not the loopback address
	// it dials: so does this wait.
	serverName := releaseName + "." + releaseNamespace + ".svc"
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: serverName, MinVersion: tls.VersionTLS12},
	}}
	deadline := time.Now().Add(time.Minute) // a hang guard, not a latency bound
	for {
		res, err := hc.Get("https://" + addr + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return p
			}
			err = fmt.Errorf("HTTP %s", res.Status)
		}
		if p.Exited() || time.Now().After(deadline) || ctx.Err() != nil {
			p.Stop(5 * time.Second)
			t.Fatalf("the injector did not serve %s with the chart's certificate: %v\n%s", serverName, err, p.Output())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// injectorEnv is the stored Deployment's INJECTOR_* settings with plain
// values, but the listen addresses and certificate files, which the test
// sets for a local process.
func injectorEnv(d *appsv1.Deployment) []string {
	var env []string
	for _, e := range d.Spec.Template.Spec.Containers[0].Env {
		switch e.Name {
		case "INJECTOR_LISTEN_ADDR", "INJECTOR_METRICS_ADDR", "INJECTOR_TLS_CERT_FILE", "INJECTOR_TLS_KEY_FILE":
			continue
		}
		if strings.HasPrefix(e.Name, "INJECTOR_") && e.ValueFrom == nil {
			env = append(env, e.Name+"="+e.Value)
		}
	}
	return env
}

// createKongPod creates an opted-in Kong pod, as Kong's Helm chart makes
// it with podLabels, and returns it as the API server stored it.
func createKongPod(ctx context.Context, t *testing.T, client kubernetes.Interface, name string) *corev1.Pod {
	t.Helper()
	pod, err := client.CoreV1().Pods(kongNamespace).Create(ctx, kongPod(name), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return pod
}

func kongPod(name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": "kong", "kong-metrics-sidecar.io/inject": "true"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name:  "proxy",
			Image: "kong/kong-gateway:3.9",
			Env:   []corev1.EnvVar{{Name: "KONG_STATUS_LISTEN", Value: "0.0.0.0:8100"}},
			Ports: []corev1.ContainerPort{{Name: "status", ContainerPort: 8100}},
		}}},
	}
}

// createPodsUntil creates opted-in pods one after another until stop is
// closed and returns them as stored.
func createPodsUntil(ctx context.Context, t *testing.T, client kubernetes.Interface, stop <-chan struct{}) []*corev1.Pod {
	var pods []*corev1.Pod
	for i := 0; ; i++ {
		select {
		case <-stop:
			return pods
		case <-ctx.Done():
			return pods
		default:
		}
		pod, err := client.CoreV1().Pods(kongNamespace).Create(ctx, kongPod(fmt.Sprintf("kong-upgrade-%d", i)), metav1.CreateOptions{})
		if err != nil {
			t.Errorf("creating a pod during the upgrade: %v", err)
			return pods
		}
		pods = append(pods, pod)
		time.Sleep(50 * time.Millisecond)
	}
}

// hasSidecar reports whether a stored pod has the injected sidecar.
func hasSidecar(pod *corev1.Pod) bool {
	for _, c := range append(append([]corev1.Container(nil), pod.Spec.InitContainers...), pod.Spec.Containers...) {
		if c.Name == "kong-metrics-sidecar" {
			return true
		}
	}
	return false
}
