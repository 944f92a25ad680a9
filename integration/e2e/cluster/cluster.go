// Package cluster runs a Kubernetes control plane on loopback for the
// end-to-end test: etcd, kube-apiserver with the aggregation layer and
// kube-controller-manager with the controllers the test needs, each a
// process of its own, with the certificates they use generated on start.
// No kubelet, scheduler or network: pods are only API objects.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/testsupport/harness"
)

// Binaries are the paths of the control plane's programs.
type Binaries struct {
	Etcd, APIServer, ControllerManager string
}

// Options configure Start.
type Options struct {
	// Dir holds etcd's data, the certificates and the kubeconfigs.
	Dir  string
	Bins Binaries
	// HPASyncPeriod is the HPA controller's --horizontal-pod-autoscaler-sync-period.
	HPASyncPeriod time.Duration
}

// Cluster is a running control plane. Its methods are not safe for
// concurrent use, except Processes.
type Cluster struct {
	Dir string
	// URL is the API server's https://127.0.0.1:<port>.
	URL string
	// CA signs the API server's certificate and every client certificate;
	// Serving certificates of the test's webhook and adapter come from it too.
	CA *harness.CA
	// FrontProxyCA signs the API server's client certificate for the
	// aggregation layer; extension API servers trust it for request headers.
	FrontProxyCA *harness.CA
	// FrontProxyCAFile is FrontProxyCA's certificate on disk.
	FrontProxyCAFile string
	// Admin is a system:masters client configuration, AdminKubeconfig its file.
	Admin           *rest.Config
	AdminKubeconfig string
	Client          kubernetes.Interface

	procs []*harness.Process // in start order
}

// The names the API server's certificate is valid for.
var apiServerNames = []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"}

// Start generates the PKI and starts etcd, kube-apiserver and
// kube-controller-manager, waiting for each to be ready. On error, what
// was started is stopped again.
func Start(ctx context.Context, opts Options) (c *Cluster, err error) {
	c = &Cluster{Dir: opts.Dir}
	defer func() {
		if err != nil {
			err = fmt.Errorf("%w%s", err, c.Logs())
			c.Stop()
			c = nil
		}
	}()
	pki := filepath.Join(opts.Dir, "pki")
	if err := os.MkdirAll(pki, 0o700); err != nil {
		return c, err
	}
	if c.CA, err = harness.NewNamedCA("e2e-cluster-ca"); err != nil {
		return c, err
	}
	if c.FrontProxyCA, err = harness.NewNamedCA("e2e-front-proxy-ca"); err != nil {
		return c, err
	}
	caFile := filepath.Join(pki, "ca.crt")
	c.FrontProxyCAFile = filepath.Join(pki, "front-proxy-ca.crt")
	if err := os.WriteFile(caFile, c.CA.CertPEM, 0o644); err != nil {
		return c, err
	}
	if err := os.WriteFile(c.FrontProxyCAFile, c.FrontProxyCA.CertPEM, 0o644); err != nil {
		return c, err
	}
	serving, err := c.CA.IssuePair(harness.CertRequest{CommonName: "kube-apiserver", DNSNames: apiServerNames,
		IPs: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv4(10, 0, 0, 1)}, Server: true})
	if err != nil {
		return c, err
	}
	servingCert, servingKey, err := serving.Write(pki, "apiserver")
	if err != nil {
		return c, err
	}
	proxy, err := c.FrontProxyCA.IssuePair(harness.CertRequest{CommonName: "front-proxy-client", Client: true})
	if err != nil {
		return c, err
	}
	proxyCert, proxyKey, err := proxy.Write(pki, "front-proxy-client")
	if err != nil {
		return c, err
	}
	saKey, saPub, err := newSigningKey(pki)
	if err != nil {
		return c, err
	}

	etcdURL, err := c.startEtcd(opts)
	if err != nil {
		return c, err
	}

	apiAddr, err := harness.FreeAddr()
	if err != nil {
		return c, err
	}
	host, port, _ := net.SplitHostPort(apiAddr)
	c.URL = "https://" + apiAddr
	api, err := harness.Start("kube-apiserver", opts.Bins.APIServer, []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=" + host,
		"--advertise-address=" + host,
		"--secure-port=" + port,
		"--tls-cert-file=" + servingCert,
		"--tls-private-key-file=" + servingKey,
		"--client-ca-file=" + caFile,
		"--authorization-mode=RBAC",
		"--service-cluster-ip-range=10.0.0.0/24",
		"--endpoint-reconciler-type=none",
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file=" + saPub,
		"--service-account-signing-key-file=" + saKey,
		"--api-audiences=https://kubernetes.default.svc",
		// The aggregation layer: the API server proxies to extension API
		// servers with this client certificate and these headers.
		"--requestheader-client-ca-file=" + c.FrontProxyCAFile,
		"--requestheader-allowed-names=front-proxy-client",
		"--requestheader-username-headers=X-Remote-User",
		"--requestheader-group-headers=X-Remote-Group",
		"--requestheader-extra-headers-prefix=X-Remote-Extra-",
		"--proxy-client-cert-file=" + proxyCert,
		"--proxy-client-key-file=" + proxyKey,
		"--enable-aggregator-routing=false",
		"--profiling=false",
	}, nil)
	if err != nil {
		return c, err
	}
	c.procs = append(c.procs, api)

	c.AdminKubeconfig, err = c.Kubeconfig("admin", "admin", []string{"system:masters"})
	if err != nil {
		return c, err
	}
	if c.Admin, err = clientcmd.BuildConfigFromFlags("", c.AdminKubeconfig); err != nil {
		return c, fmt.Errorf("loading the admin kubeconfig: %w", err)
	}
	c.Admin.QPS, c.Admin.Burst = 100, 200
	if c.Client, err = kubernetes.NewForConfig(c.Admin); err != nil {
		return c, err
	}
	if err := c.waitReady(ctx, api, 60*time.Second); err != nil {
		return c, err
	}

	// With --use-service-account-credentials=false every controller acts
	// as system:kube-controller-manager, which the default policy gives
	// almost nothing: without this binding the deployment controller only
	// backs off on Forbidden.
	if _, err := c.Client.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "e2e:kube-controller-manager"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: "system:kube-controller-manager"}},
	}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return c, fmt.Errorf("binding system:kube-controller-manager: %w", err)
	}
	kcmConfig, err := c.Kubeconfig("kube-controller-manager", "system:kube-controller-manager", nil)
	if err != nil {
		return c, err
	}
	kcmAddr, err := harness.FreeAddr()
	if err != nil {
		return c, err
	}
	kcmHost, kcmPort, _ := net.SplitHostPort(kcmAddr)
	sync := opts.HPASyncPeriod
	if sync == 0 {
		sync = 2 * time.Second
	}
	kcm, err := harness.Start("kube-controller-manager", opts.Bins.ControllerManager, []string{
		"--kubeconfig=" + kcmConfig,
		"--authentication-kubeconfig=" + kcmConfig,
		"--authorization-kubeconfig=" + kcmConfig,
		"--bind-address=" + kcmHost,
		"--secure-port=" + kcmPort,
		"--leader-elect=false",
		"--use-service-account-credentials=false",
		// serviceaccount: the API server refuses pods until their
		// namespace's default ServiceAccount exists.
		// endpoints and endpointslice: service discovery finds the pods
		// behind a Service through them, as Prometheus does.
		"--controllers=deployment-controller,replicaset-controller,horizontal-pod-autoscaler-controller,serviceaccount-controller,garbage-collector-controller,endpoints-controller,endpointslice-controller",
		"--horizontal-pod-autoscaler-sync-period=" + sync.String(),
		"--concurrent-deployment-syncs=5",
		"--profiling=false",
	}, nil)
	if err != nil {
		return c, err
	}
	c.procs = append(c.procs, kcm)
	// The serviceaccount controller's first work proves the controller
	// manager is up and allowed to act.
	if err := poll(ctx, 60*time.Second, kcm, func() error {
		_, err := c.Client.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		return err
	}); err != nil {
		return c, fmt.Errorf("waiting for the controller manager to create ServiceAccount default/default: %w", err)
	}
	return c, nil
}

func (c *Cluster) startEtcd(opts Options) (string, error) {
	clientAddr, err := harness.FreeAddr()
	if err != nil {
		return "", err
	}
	peerAddr, err := harness.FreeAddr()
	if err != nil {
		return "", err
	}
	clientURL, peerURL := "http://"+clientAddr, "http://"+peerAddr
	etcd, err := harness.Start("etcd", opts.Bins.Etcd, []string{
		"--name=e2e",
		"--data-dir=" + filepath.Join(opts.Dir, "etcd"),
		"--listen-client-urls=" + clientURL,
		"--advertise-client-urls=" + clientURL,
		"--listen-peer-urls=" + peerURL,
		"--initial-advertise-peer-urls=" + peerURL,
		"--initial-cluster=e2e=" + peerURL,
		"--unsafe-no-fsync",
		"--log-level=warn",
	}, nil)
	if err != nil {
		return "", err
	}
	c.procs = append(c.procs, etcd)
	if err := harness.WaitHTTP(clientURL+"/health", etcd, 30*time.Second); err != nil {
		return "", err
	}
	return clientURL, nil
}

func (c *Cluster) waitReady(ctx context.Context, api *harness.Process, timeout time.Duration) error {
	return poll(ctx, timeout, api, func() error {
		body, err := c.Client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err != nil {
			return fmt.Errorf("%w: %s", err, body)
		}
		return nil
	})
}

// Kubeconfig issues a client certificate for user (in groups) and writes a
// kubeconfig named <name>.kubeconfig that uses it; it returns the file.
func (c *Cluster) Kubeconfig(name, user string, groups []string) (string, error) {
	kp, err := c.CA.IssuePair(harness.CertRequest{CommonName: user, Organizations: groups, Client: true})
	if err != nil {
		return "", err
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["e2e"] = &clientcmdapi.Cluster{Server: c.URL, CertificateAuthorityData: c.CA.CertPEM}
	cfg.AuthInfos[name] = &clientcmdapi.AuthInfo{ClientCertificateData: kp.CertPEM, ClientKeyData: kp.KeyPEM}
	cfg.Contexts["e2e"] = &clientcmdapi.Context{Cluster: "e2e", AuthInfo: name}
	cfg.CurrentContext = "e2e"
	file := filepath.Join(c.Dir, "pki", name+".kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, file); err != nil {
		return "", fmt.Errorf("writing %s: %w", file, err)
	}
	return file, nil
}

// Processes returns the control plane's processes in start order.
func (c *Cluster) Processes() []*harness.Process { return append([]*harness.Process(nil), c.procs...) }

// Logs is the tail of every component's output, for failure reports.
func (c *Cluster) Logs() string {
	var b strings.Builder
	for _, p := range c.procs {
		b.WriteString(Tail(p, 40))
	}
	return b.String()
}

// Tail formats the last n lines of a process's output under a header.
func Tail(p *harness.Process, n int) string {
	lines := strings.Split(strings.TrimRight(p.Output(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	state := "running"
	if p.Exited() {
		state = "exited"
	}
	return "\n--- " + p.Name + " (" + state + ", last " + strconv.Itoa(len(lines)) + " lines) ---\n" + strings.Join(lines, "\n") + "\n"
}

// Stop stops the components in reverse start order, so the API server
// ends before etcd (the other way round it hangs in shutdown).
func (c *Cluster) Stop() {
	for i := len(c.procs) - 1; i >= 0; i-- {
		c.procs[i].Stop(10 * time.Second)
	}
}

// poll calls f until it succeeds, proc exits, ctx ends or timeout passes.
func poll(ctx context.Context, timeout time.Duration, proc *harness.Process, f func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return nil
		}
		if proc != nil && proc.Exited() {
			return fmt.Errorf("%s exited: %w", proc.Name, err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %s: %w", timeout, err)
		}
		select {
		case <-ctx.Done():
			return errors.Join(ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
