package routemap

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
)

// Key is the ConfigMap key (in binaryData) that holds the mapping; the
// sidecar's SIDECAR_ROUTE_MAPPING_FILE names the file the kubelet makes of it.
const Key = "routes.json.gz"

// GroupVersion is the Gateway API version whose routes are watched.
const GroupVersion = "gateway.networking.k8s.io/v1"

// resources are the route kinds watched, by resource name.
var resources = map[string]string{"httproutes": "HTTPRoute", "grpcroutes": "GRPCRoute"}

// Options configure a Publisher.
type Options struct {
	// Config reaches the API server.
	Config *rest.Config
	// Namespaces get the ConfigMap.
	Namespaces []string
	// ConfigMap is the ConfigMap's name in each namespace.
	ConfigMap string
	// Debounce is how long a burst of route changes is gathered before one
	// publication; 0 means 200ms.
	Debounce time.Duration
	// Rediscover is how often the Publisher checks again which route
	// kinds the API server serves (a CRD installed later), and writes the
	// ConfigMaps again even when nothing changed (one deleted or edited by
	// hand); 0 means a minute.
	Rediscover time.Duration
	Registry   prometheus.Registerer
	Logger     *slog.Logger
}

// Publisher watches the cluster's HTTPRoutes and GRPCRoutes and keeps the
// route mapping ConfigMaps current. Several replicas may run at once: the
// same routes encode to the same bytes, and a ConfigMap already holding
// them is not written.
type Publisher struct {
	opts Options
	dyn  dynamic.Interface
	disc discovery.DiscoveryInterface
	core corev1client.ConfigMapsGetter

	publishes  *prometheus.CounterVec
	kongNames  prometheus.Gauge
	size       prometheus.Gauge
	lastPublic prometheus.Gauge
}

// New returns a Publisher; nothing happens until Run.
func New(opts Options) (*Publisher, error) {
	if opts.Debounce == 0 {
		opts.Debounce = 200 * time.Millisecond
	}
	if opts.Rediscover == 0 {
		opts.Rediscover = time.Minute
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	dyn, err := dynamic.NewForConfig(opts.Config)
	if err != nil {
		return nil, fmt.Errorf("route mapping: dynamic client: %w", err)
	}
	disc, err := discovery.NewDiscoveryClientForConfig(opts.Config)
	if err != nil {
		return nil, fmt.Errorf("route mapping: discovery client: %w", err)
	}
	core, err := corev1client.NewForConfig(opts.Config)
	if err != nil {
		return nil, fmt.Errorf("route mapping: core client: %w", err)
	}
	p := &Publisher{
		opts: opts, dyn: dyn, disc: disc, core: core,
		publishes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kong_metrics_injector_route_mapping_publishes_total",
			Help: "Writes of the route mapping ConfigMaps, by result (success, failure); an unchanged ConfigMap is not written.",
		}, []string{"result"}),
		kongNames: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kong_metrics_injector_route_mapping_kong_services",
			Help: "Kong service names in the route mapping last built (route rules with one Service, and with several backends).",
		}),
		size: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kong_metrics_injector_route_mapping_bytes",
			Help: "Size of the route mapping last built, gzip-compressed, as each ConfigMap and sidecar holds it.",
		}),
		lastPublic: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kong_metrics_injector_route_mapping_last_success_timestamp_seconds",
			Help: "When every route mapping ConfigMap was last found or made current.",
		}),
	}
	p.publishes.WithLabelValues("success")
	p.publishes.WithLabelValues("failure")
	if opts.Registry != nil {
		opts.Registry.MustRegister(p.publishes, p.kongNames, p.size, p.lastPublic)
	}
	return p, nil
}

// Run publishes until ctx is done. It returns nil then; API errors are
// logged and retried.
func (p *Publisher) Run(ctx context.Context) error {
	log := p.opts.Logger
	var served []string
	var w watching
	defer w.stop()
	tick := time.NewTicker(p.opts.Rediscover)
	defer tick.Stop()
	for {
		now, err := p.served()
		switch {
		case err != nil:
			log.Warn("route mapping: cannot tell which Gateway API routes are served; trying again", "err", err, "retry_in", p.opts.Rediscover)
		case !slices.Equal(now, served):
			w.stop()
			served = now
			log.Info("route mapping: watching routes", "group_version", GroupVersion, "resources", served, "namespaces", p.opts.Namespaces, "configmap", p.opts.ConfigMap)
			watchCtx, cancel := context.WithCancel(ctx)
			w = watching{cancel: cancel, done: make(chan struct{})}
			go func(done chan struct{}) { defer close(done); p.watch(watchCtx, served) }(w.done)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// watching is the watch under way, if any.
type watching struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// stop ends the watch under way and waits for it.
func (w *watching) stop() {
	if w.cancel != nil {
		w.cancel()
		<-w.done
		*w = watching{}
	}
}

// served lists the route resources the API server serves, sorted; none
// when the Gateway API's CRDs are not installed.
func (p *Publisher) served() ([]string, error) {
	list, err := p.disc.ServerResourcesForGroupVersion(GroupVersion)
	if apierrors.IsNotFound(err) {
		return []string{}, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, r := range list.APIResources {
		if _, ok := resources[r.Name]; ok {
			out = append(out, r.Name)
		}
	}
	slices.Sort(out)
	if out == nil {
		out = []string{}
	}
	return out, nil
}

// watch runs informers for the served resources and publishes on every
// change (debounced) and every Rediscover, until ctx is done.
func (p *Publisher) watch(ctx context.Context, served []string) {
	factory := dynamicinformer.NewDynamicSharedInformerFactory(p.dyn, 0)
	changed := make(chan struct{}, 1)
	notify := func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	handler := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { notify() },
		UpdateFunc: func(any, any) { notify() },
		DeleteFunc: func(any) { notify() },
	}
	var listers []cache.GenericLister
	for _, name := range served {
		inf := factory.ForResource(schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: name})
		if _, err := inf.Informer().AddEventHandler(handler); err != nil {
			p.opts.Logger.Error("route mapping: watching routes", "resource", name, "err", err)
			return
		}
		listers = append(listers, inf.Lister())
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	for _, ok := range factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return
		}
	}
	var last []byte
	retry := time.Second
	heal := time.NewTicker(p.opts.Rediscover)
	defer heal.Stop()
	notify() // the first publication
	for {
		select {
		case <-ctx.Done():
			return
		case <-heal.C:
			last = nil // write again whatever was published
			notify()
			continue
		case <-changed:
		}
		// Gather the rest of a burst.
		select {
		case <-ctx.Done():
			return
		case <-time.After(p.opts.Debounce):
		}
		data, n, err := p.build(listers)
		if err != nil {
			p.opts.Logger.Error("route mapping: building", "err", err)
			continue
		}
		if bytes.Equal(data, last) {
			continue
		}
		if err := p.publish(ctx, data); err != nil {
			p.publishes.WithLabelValues("failure").Inc()
			p.opts.Logger.Error("route mapping: publishing; trying again", "err", err, "retry_in", retry)
			wg.Add(1)
			time.AfterFunc(retry, func() { defer wg.Done(); notify() })
			retry = min(2*retry, 30*time.Second)
			continue
		}
		retry = time.Second
		last = data
		p.kongNames.Set(float64(n))
		p.size.Set(float64(len(data)))
		p.lastPublic.SetToCurrentTime()
	}
}

// build lists the routes from the informers' caches and encodes their
// mapping; n is its number of Kong service names.
func (p *Publisher) build(listers []cache.GenericLister) (data []byte, n int, err error) {
	var routes []Route
	var errs []error
	for _, l := range listers {
		objs, err := l.List(labelsEverything)
		if err != nil {
			return nil, 0, err
		}
		for _, obj := range objs {
			u, ok := obj.(*unstructured.Unstructured)
			if !ok {
				continue
			}
			r, err := FromObject(u)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			routes = append(routes, r)
		}
	}
	if len(errs) > 0 {
		p.opts.Logger.Warn("route mapping: routes left out", "err", errors.Join(errs...))
	}
	m := Build(routes)
	data, err = Encode(m, p.opts.ConfigMap)
	return data, len(m.Services) + len(m.MultiBackend), err
}

// publish makes each namespace's ConfigMap hold data.
func (p *Publisher) publish(ctx context.Context, data []byte) error {
	var errs []error
	for _, ns := range p.opts.Namespaces {
		written, err := p.publishTo(ctx, ns, data)
		if err != nil {
			errs = append(errs, fmt.Errorf("ConfigMap %s/%s: %w", ns, p.opts.ConfigMap, err))
			continue
		}
		if written {
			p.publishes.WithLabelValues("success").Inc()
			p.opts.Logger.Info("route mapping published", "namespace", ns, "configmap", p.opts.ConfigMap, "bytes", len(data))
		}
	}
	return errors.Join(errs...)
}

func (p *Publisher) publishTo(ctx context.Context, ns string, data []byte) (bool, error) {
	cms := p.core.ConfigMaps(ns)
	cm, err := cms.Get(ctx, p.opts.ConfigMap, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		cm = &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: p.opts.ConfigMap, Namespace: ns, Labels: map[string]string{
				"app.kubernetes.io/part-of":    "kong-metrics-sidecar",
				"app.kubernetes.io/managed-by": "kong-metrics-injector",
			}},
			BinaryData: map[string][]byte{Key: data},
		}
		_, err = cms.Create(ctx, cm, metav1.CreateOptions{FieldManager: "kong-metrics-injector"})
		return err == nil, err
	}
	if err != nil {
		return false, err
	}
	if bytes.Equal(cm.BinaryData[Key], data) && len(cm.Data) == 0 && len(cm.BinaryData) == 1 {
		return false, nil
	}
	cm.Data = nil
	cm.BinaryData = map[string][]byte{Key: data}
	_, err = cms.Update(ctx, cm, metav1.UpdateOptions{FieldManager: "kong-metrics-injector"})
	return err == nil, err
}
