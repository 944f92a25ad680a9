package doctor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// The names the doctor looks for, as the project ships them.
const (
	sidecarContainer = "kong-metrics-sidecar"
	sidecarPortName  = "sidecar-metrics"
	configAnnotation = "kong-metrics-sidecar.io/config"
	defaultConfigMap = "kong-metrics-sidecar"
	configKey        = "config.yaml"
	webhookName      = "inject.kong-metrics-sidecar.io"
	// CustomMetricsAPIService is the APIService prometheus-adapter registers.
	CustomMetricsAPIService = "v1beta1.custom.metrics.k8s.io"
	customMetricsPath       = "/apis/custom.metrics.k8s.io/v1beta1"
	// maxBody bounds every body the doctor reads: a Kong page with many
	// routes is megabytes, never a gigabyte.
	maxBody = 64 << 20
)

var (
	serviceMonitors = schema.GroupVersionResource{Group: "monitoring.coreos.com", Version: "v1", Resource: "servicemonitors"}
	podMonitors     = schema.GroupVersionResource{Group: "monitoring.coreos.com", Version: "v1", Resource: "podmonitors"}
	prometheuses    = schema.GroupVersionResource{Group: "monitoring.coreos.com", Version: "v1", Resource: "prometheuses"}
	scaledObjects   = schema.GroupVersionResource{Group: "keda.sh", Version: "v1alpha1", Resource: "scaledobjects"}
)

// FetchOptions say what to fetch and from where.
type FetchOptions struct {
	// Config is the user's kubeconfig, as kubectl loads it.
	Config *rest.Config
	// Namespace and Target (service/x, hpa/x or scaledobject/x).
	Namespace, Target string
	// Prometheus, when set, is namespace/service:port (reached through the
	// Service's proxy subresource) or an http(s) URL.
	Prometheus string
}

// ErrTarget is wrapped by Fetch's errors about the target the user named.
var ErrTarget = errors.New("target")

// ParseTarget splits kind/name; kind is service, hpa or scaledobject
// (their usual short and plural forms accepted).
func ParseTarget(s string) (kind, name string, err error) {
	kind, name, found := strings.Cut(s, "/")
	if !found || name == "" || strings.Contains(name, "/") {
		return "", "", fmt.Errorf("%w %q: want service/NAME, hpa/NAME or scaledobject/NAME", ErrTarget, s)
	}
	switch strings.ToLower(kind) {
	case "service", "services", "svc":
		return "service", name, nil
	case "hpa", "horizontalpodautoscaler", "horizontalpodautoscalers":
		return "hpa", name, nil
	case "scaledobject", "scaledobjects", "so":
		return "scaledobject", name, nil
	}
	return "", "", fmt.Errorf("%w %q: kind %q is none of service, hpa, scaledobject", ErrTarget, s, kind)
}

// fetcher holds the clients of one Fetch.
type fetcher struct {
	opts FetchOptions
	kube kubernetes.Interface
	dyn  dynamic.Interface
	a    *Answers
}

// Fetch asks the API server (and through it the sidecars, Prometheus and
// the custom metrics API) everything Diagnose needs. Its error is about
// the target (wrapping ErrTarget) or the clients; what fails further on
// is recorded in the Answers for the checks to judge.
func Fetch(ctx context.Context, opts FetchOptions) (*Answers, error) {
	kind, name, err := ParseTarget(opts.Target)
	if err != nil {
		return nil, err
	}
	kube, err := kubernetes.NewForConfig(opts.Config)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	dyn, err := dynamic.NewForConfig(opts.Config)
	if err != nil {
		return nil, fmt.Errorf("dynamic client: %w", err)
	}
	f := &fetcher{opts: opts, kube: kube, dyn: dyn, a: &Answers{Namespace: opts.Namespace, Target: kind + "/" + name}}
	if err := f.target(ctx, kind, name); err != nil {
		return nil, err
	}
	f.pods(ctx)
	f.extension(ctx)
	f.injector(ctx)
	f.monitors(ctx)
	f.prometheus(ctx)
	if !usesKEDA(f.a) {
		f.customMetrics(ctx)
	}
	return f.a, nil
}

// target finds the Service of the named object, and the autoscalers.
func (f *fetcher) target(ctx context.Context, kind, name string) error {
	ns := f.opts.Namespace
	switch kind {
	case "service":
		if _, err := f.kube.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{}); err != nil {
			return fmt.Errorf("%w: Service %s/%s: %w", ErrTarget, ns, name, err)
		}
		f.a.Service = name
		// KEDA scales on the Service when a ScaledObject's query names it.
		if list, err := f.dyn.Resource(scaledObjects).Namespace(ns).List(ctx, metav1.ListOptions{}); err == nil {
			for i := range list.Items {
				so := scaledObjectAnswer(&list.Items[i])
				if m := exportedService.FindStringSubmatch(so.Query); m != nil && m[1] == name {
					so.Events = f.events(ctx, "ScaledObject", so.Name)
					f.a.ScaledObjects = append(f.a.ScaledObjects, so)
				}
			}
		}
	case "hpa":
		h, err := f.kube.AutoscalingV2().HorizontalPodAutoscalers(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("%w: HorizontalPodAutoscaler %s/%s: %w", ErrTarget, ns, name, err)
		}
		for _, m := range h.Spec.Metrics {
			if m.Type == autoscalingv2.ObjectMetricSourceType && m.Object != nil && m.Object.DescribedObject.Kind == "Service" {
				f.a.Service = m.Object.DescribedObject.Name
				break
			}
		}
		if f.a.Service == "" {
			return fmt.Errorf("%w: HorizontalPodAutoscaler %s/%s uses no Object metric of a Service (the tutorial's kind of HPA)", ErrTarget, ns, name)
		}
	case "scaledobject":
		so, err := f.dyn.Resource(scaledObjects).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("%w: ScaledObject %s/%s: %w", ErrTarget, ns, name, err)
		}
		ans := scaledObjectAnswer(so)
		svc := exportedService.FindStringSubmatch(ans.Query)
		if svc == nil {
			return fmt.Errorf("%w: ScaledObject %s/%s has no prometheus trigger whose query names exported_service=\"...\"", ErrTarget, ns, name)
		}
		f.a.Service = svc[1]
		f.a.ScaledObjects = []ScaledObjectAnswer{ans}
		f.a.ScaledObjects[0].Events = f.events(ctx, "ScaledObject", name)
	}
	f.hpas(ctx, kind, name)
	return nil
}

var exportedService = regexp.MustCompile(`exported_service\s*=\s*"([^"]+)"`)

func scaledObjectAnswer(u *unstructured.Unstructured) ScaledObjectAnswer {
	ans := ScaledObjectAnswer{Name: u.GetName()}
	triggers, _, _ := unstructured.NestedSlice(u.Object, "spec", "triggers")
	for _, t := range triggers {
		tm, _ := t.(map[string]any)
		typ, _ := tm["type"].(string)
		ans.Triggers = append(ans.Triggers, typ)
		if q, found, _ := unstructured.NestedString(tm, "metadata", "query"); found && typ == "prometheus" {
			ans.Query = q
		}
	}
	ans.HPA, _, _ = unstructured.NestedString(u.Object, "status", "hpaName")
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		cm, _ := c.(map[string]any)
		s := func(k string) string { v, _ := cm[k].(string); return v }
		ans.Conditions = append(ans.Conditions, Condition{Type: s("type"), Status: s("status"), Reason: s("reason"), Message: s("message")})
	}
	return ans
}

func (f *fetcher) hpas(ctx context.Context, kind, name string) {
	list, err := f.kube.AutoscalingV2().HorizontalPodAutoscalers(f.opts.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return
	}
	for i := range list.Items {
		h := &list.Items[i]
		ans := HPAAnswer{Name: h.Name, Max: h.Spec.MaxReplicas, CurrentReplicas: h.Status.CurrentReplicas, DesiredReplicas: h.Status.DesiredReplicas}
		if h.Spec.MinReplicas != nil {
			ans.Min = *h.Spec.MinReplicas
		}
		for _, o := range h.OwnerReferences {
			if o.Kind == "ScaledObject" {
				ans.ManagedBy = o.Name
			}
		}
		for _, m := range h.Spec.Metrics {
			if m.Type == autoscalingv2.ObjectMetricSourceType && m.Object != nil && m.Object.DescribedObject.Kind == "Service" && m.Object.DescribedObject.Name == f.a.Service {
				ans.Metrics = append(ans.Metrics, m.Object.Metric.Name)
			}
		}
		switch {
		case kind == "hpa" && h.Name != name:
			continue
		case kind == "scaledobject" && ans.ManagedBy != name:
			continue
		case kind == "service" && len(ans.Metrics) == 0 && !slices.ContainsFunc(f.a.ScaledObjects, func(so ScaledObjectAnswer) bool { return so.Name == ans.ManagedBy }):
			continue
		}
		for _, c := range h.Status.Conditions {
			ans.Conditions = append(ans.Conditions, Condition{Type: string(c.Type), Status: string(c.Status), Reason: c.Reason, Message: c.Message})
		}
		ans.Events = f.events(ctx, "HorizontalPodAutoscaler", h.Name)
		f.a.HPAs = append(f.a.HPAs, ans)
	}
}

// events are the last ten events of an object, oldest first.
func (f *fetcher) events(ctx context.Context, kind, name string) []Event {
	list, err := f.kube.CoreV1().Events(f.opts.Namespace).List(ctx, metav1.ListOptions{
		FieldSelector: "involvedObject.kind=" + kind + ",involvedObject.name=" + name,
	})
	if err != nil {
		return nil
	}
	items := list.Items
	slices.SortFunc(items, func(a, b corev1.Event) int { return eventTime(a).Compare(eventTime(b)) })
	if len(items) > 10 {
		items = items[len(items)-10:]
	}
	var out []Event
	for _, e := range items {
		out = append(out, Event{Type: e.Type, Reason: e.Reason, Message: e.Message, Count: e.Count})
	}
	return out
}

func eventTime(e corev1.Event) time.Time {
	if !e.LastTimestamp.IsZero() {
		return e.LastTimestamp.Time
	}
	if !e.EventTime.IsZero() {
		return e.EventTime.Time
	}
	return e.CreationTimestamp.Time
}

// isKong reports whether a container runs Kong Gateway.
func isKong(c corev1.Container) bool {
	return c.Name == "proxy" || (strings.Contains(c.Image, "kong") && !strings.Contains(c.Image, "kong-metrics"))
}

func (f *fetcher) pods(ctx context.Context) {
	list, err := f.kube.CoreV1().Pods(f.opts.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return
	}
	for i := range list.Items {
		p := &list.Items[i]
		if p.DeletionTimestamp != nil {
			continue
		}
		ans := PodAnswer{Name: p.Name, Labels: p.Labels, OptedIn: p.Labels[InjectLabel] == "true"}
		scheme := "http"
		for _, c := range slices.Concat(p.Spec.InitContainers, p.Spec.Containers) {
			if c.Name == sidecarContainer {
				ans.Sidecar = true
				for _, port := range c.Ports {
					if port.Name == sidecarPortName || ans.SidecarPort == 0 {
						ans.SidecarPort, ans.SidecarPortName = int(port.ContainerPort), port.Name
					}
				}
				for _, e := range c.Env {
					if e.Name == "SIDECAR_WEB_CONFIG_FILE" && e.Value != "" {
						scheme = "https"
					}
				}
			} else if isKong(c) {
				ans.Kong = true
			}
		}
		if !ans.Kong && !ans.OptedIn {
			continue
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady {
				ans.Ready = c.Status == corev1.ConditionTrue
			}
		}
		if o := metav1.GetControllerOf(p); o != nil {
			ans.Owner = o.Kind + "/" + o.Name
		}
		if ans.Sidecar && ans.SidecarPort != 0 {
			port := strconv.Itoa(ans.SidecarPort)
			ans.Metrics = fetched(f.kube.CoreV1().Pods(p.Namespace).ProxyGet(scheme, p.Name, port, "/metrics", nil).DoRaw(ctx))
			ans.KongPage = fetched(f.kube.CoreV1().Pods(p.Namespace).ProxyGet(scheme, p.Name, port, "/metrics/kong", nil).DoRaw(ctx))
		}
		f.a.Pods = append(f.a.Pods, ans)
	}
	slices.SortFunc(f.a.Pods, func(a, b PodAnswer) int { return strings.Compare(a.Name, b.Name) })
}

func fetched(body []byte, err error) *Fetched {
	if err != nil {
		msg := err.Error()
		if len(body) > 0 && !strings.Contains(msg, string(body)) {
			msg += ": " + string(body)
		}
		if len(msg) > 300 {
			msg = msg[:300] + "…"
		}
		return &Fetched{Error: msg}
	}
	return &Fetched{Body: string(body)}
}

func (f *fetcher) extension(ctx context.Context) {
	name := defaultConfigMap
	for _, p := range f.a.Pods {
		if p.OptedIn {
			pod, err := f.kube.CoreV1().Pods(f.opts.Namespace).Get(ctx, p.Name, metav1.GetOptions{})
			if err == nil && pod.Annotations[configAnnotation] != "" {
				name = pod.Annotations[configAnnotation]
			}
			break
		}
	}
	f.a.Extension.ConfigMap = name
	cm, err := f.kube.CoreV1().ConfigMaps(f.opts.Namespace).Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return
	case err != nil:
		f.a.Extension.Error = err.Error()
		return
	}
	f.a.Extension.Found = true
	f.a.Extension.Data, f.a.Extension.HasKey = cm.Data[configKey]
}

func (f *fetcher) injector(ctx context.Context) {
	in := &f.a.Injector
	list, err := f.kube.AdmissionregistrationV1().MutatingWebhookConfigurations().List(ctx, metav1.ListOptions{})
	if err != nil {
		return
	}
	for _, cfg := range list.Items {
		for _, w := range cfg.Webhooks {
			if w.Name != webhookName {
				continue
			}
			in.Webhook = true
			if w.FailurePolicy != nil {
				in.FailurePolicy = string(*w.FailurePolicy)
			}
			if s := w.ClientConfig.Service; s != nil {
				in.Service = s.Namespace + "/" + s.Name
				in.ReadyEndpoints = f.readyEndpoints(ctx, s.Namespace, s.Name)
				in.Log = f.injectorLog(ctx, s.Namespace, s.Name)
			}
		}
	}
	if in.Webhook {
		in.Probe = f.probe(ctx)
	}
}

// warningCollector keeps the warnings of the API server's answers.
type warningCollector struct {
	mu       sync.Mutex // Protects warnings.
	warnings []string
}

// HandleWarningHeaderWithContext is rest.WarningHandlerWithContext.
func (w *warningCollector) HandleWarningHeaderWithContext(_ context.Context, _ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.warnings = append(w.warnings, text)
}

// probe creates, with dryRun=All, a copy of the first opted-in pod that
// lacks the sidecar: the API server calls the webhook as for a real pod
// (its sideEffects are None) and stores nothing. The answer tells an
// injector that is down (no sidecar, no warning) from one that skips the
// pod (its warnings, which a ReplicaSet's pods never show anyone).
func (f *fetcher) probe(ctx context.Context) *ProbeAnswer {
	var name string
	for _, p := range f.a.Pods {
		if p.OptedIn && !p.Sidecar {
			name = p.Name
			break
		}
	}
	if name == "" {
		return nil
	}
	ans := &ProbeAnswer{Pod: name}
	pod, err := f.kube.CoreV1().Pods(f.opts.Namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		ans.Error = err.Error()
		return ans
	}
	probe := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "kong-metrics-doctor-probe-", Namespace: pod.Namespace, Labels: pod.Labels, Annotations: pod.Annotations},
		Spec:       *pod.Spec.DeepCopy(),
	}
	probe.Spec.NodeName = ""
	probe.Spec.EphemeralContainers = nil
	warnings := &warningCollector{}
	cfg := rest.CopyConfig(f.opts.Config)
	cfg.WarningHandler = nil
	cfg.WarningHandlerWithContext = warnings
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		ans.Error = err.Error()
		return ans
	}
	got, err := kube.CoreV1().Pods(pod.Namespace).Create(ctx, probe, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err != nil {
		ans.Error = err.Error()
		return ans
	}
	for _, c := range slices.Concat(got.Spec.InitContainers, got.Spec.Containers) {
		ans.Injected = ans.Injected || c.Name == sidecarContainer
	}
	warnings.mu.Lock()
	ans.Warnings = warnings.warnings
	warnings.mu.Unlock()
	return ans
}

// readyEndpoints counts the ready endpoints of a Service; -1 when it has
// no selector (ExternalName, or endpoints kept by something else).
func (f *fetcher) readyEndpoints(ctx context.Context, ns, name string) int {
	svc, err := f.kube.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return 0
	}
	if len(svc.Spec.Selector) == 0 {
		return -1
	}
	eps, err := f.kube.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + name})
	if err != nil {
		return 0
	}
	n := 0
	for _, s := range eps.Items {
		for _, e := range s.Endpoints {
			if e.Conditions.Ready == nil || *e.Conditions.Ready {
				n++
			}
		}
	}
	return n
}

// injectorLog is what the injector's pods logged lately about pods they
// left without the sidecar.
func (f *fetcher) injectorLog(ctx context.Context, ns, name string) []string {
	svc, err := f.kube.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil || len(svc.Spec.Selector) == 0 {
		return nil
	}
	var sel []string
	for k, v := range svc.Spec.Selector {
		sel = append(sel, k+"="+v)
	}
	slices.Sort(sel)
	pods, err := f.kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: strings.Join(sel, ",")})
	if err != nil {
		return nil
	}
	var lines []string
	tail := int64(500)
	for _, p := range pods.Items {
		raw, err := f.kube.CoreV1().Pods(ns).GetLogs(p.Name, &corev1.PodLogOptions{TailLines: &tail}).DoRaw(ctx)
		if err != nil {
			continue
		}
		for l := range strings.SplitSeq(string(raw), "\n") {
			if strings.Contains(l, "left without the sidecar") {
				lines = append(lines, p.Name+": "+l)
			}
		}
	}
	if len(lines) > 5 {
		lines = lines[len(lines)-5:]
	}
	return lines
}

func labelSelector(m map[string]any, path ...string) LabelSelector {
	var sel LabelSelector
	raw, found, _ := unstructured.NestedMap(m, path...)
	if !found {
		return sel
	}
	b, _ := json.Marshal(raw)
	_ = json.Unmarshal(b, &sel)
	return sel
}

func optionalSelector(m map[string]any, path ...string) *LabelSelector {
	if _, found, _ := unstructured.NestedFieldNoCopy(m, path...); !found {
		return nil
	}
	sel := labelSelector(m, path...)
	return &sel
}

func (f *fetcher) monitors(ctx context.Context) {
	for _, kind := range []struct {
		gvr       schema.GroupVersionResource
		kind, eps string
	}{{serviceMonitors, "ServiceMonitor", "endpoints"}, {podMonitors, "PodMonitor", "podMetricsEndpoints"}} {
		list, err := f.dyn.Resource(kind.gvr).List(ctx, metav1.ListOptions{})
		if err != nil {
			continue
		}
		for _, u := range list.Items {
			m := MonitorAnswer{Kind: kind.kind, Namespace: u.GetNamespace(), Name: u.GetName(), Labels: u.GetLabels(), Selector: labelSelector(u.Object, "spec", "selector")}
			m.AnyNamespace, _, _ = unstructured.NestedBool(u.Object, "spec", "namespaceSelector", "any")
			m.MatchNames, _, _ = unstructured.NestedStringSlice(u.Object, "spec", "namespaceSelector", "matchNames")
			eps, _, _ := unstructured.NestedSlice(u.Object, "spec", kind.eps)
			for _, e := range eps {
				em, _ := e.(map[string]any)
				port := fmt.Sprint(em["port"])
				if em["port"] == nil {
					port = fmt.Sprint(em["targetPort"])
					if em["portNumber"] != nil {
						port = fmt.Sprint(em["portNumber"])
					}
				}
				m.Ports = append(m.Ports, port)
			}
			f.a.Monitors = append(f.a.Monitors, m)
		}
	}
	list, err := f.dyn.Resource(prometheuses).List(ctx, metav1.ListOptions{})
	if err == nil {
		for _, u := range list.Items {
			f.a.Prometheuses = append(f.a.Prometheuses, PrometheusResource{
				Namespace: u.GetNamespace(), Name: u.GetName(),
				ServiceMonitorSelector:          optionalSelector(u.Object, "spec", "serviceMonitorSelector"),
				ServiceMonitorNamespaceSelector: optionalSelector(u.Object, "spec", "serviceMonitorNamespaceSelector"),
				PodMonitorSelector:              optionalSelector(u.Object, "spec", "podMonitorSelector"),
				PodMonitorNamespaceSelector:     optionalSelector(u.Object, "spec", "podMonitorNamespaceSelector"),
			})
		}
	}
	if nss, err := f.kube.CoreV1().Namespaces().List(ctx, metav1.ListOptions{}); err == nil {
		f.a.NamespaceLabels = map[string]map[string]string{}
		for _, ns := range nss.Items {
			f.a.NamespaceLabels[ns.Name] = ns.Labels
		}
	}
	if svcs, err := f.kube.CoreV1().Services(f.opts.Namespace).List(ctx, metav1.ListOptions{}); err == nil {
		for _, s := range svcs.Items {
			ans := ServiceAnswer{Name: s.Name, Labels: s.Labels, Selector: s.Spec.Selector}
			for _, p := range s.Spec.Ports {
				ans.Ports = append(ans.Ports, ServicePort{Name: p.Name, Port: int(p.Port), TargetPort: p.TargetPort.String()})
			}
			f.a.Services = append(f.a.Services, ans)
		}
	}
}

// promGetter GETs a path of Prometheus' HTTP API.
type promGetter func(ctx context.Context, path string, query url.Values) ([]byte, error)

// prometheusGetter is how to reach Prometheus: the flag, else the
// Service of the first Prometheus resource (kube-prometheus-stack names
// it as the resource; the operator's own is prometheus-operated).
func (f *fetcher) prometheusGetter(ctx context.Context) (promGetter, string) {
	flag := f.opts.Prometheus
	if strings.HasPrefix(flag, "http://") || strings.HasPrefix(flag, "https://") {
		client := &http.Client{Timeout: 30 * time.Second}
		return func(ctx context.Context, path string, q url.Values) ([]byte, error) {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(flag, "/")+path+"?"+q.Encode(), nil)
			if err != nil {
				return nil, err
			}
			resp, err := client.Do(req)
			if err != nil {
				return nil, err
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
			if err == nil && resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("HTTP %s", resp.Status)
			}
			return body, err
		}, flag
	}
	if flag != "" {
		ns, rest, _ := strings.Cut(flag, "/")
		name, port, _ := strings.Cut(rest, ":")
		return f.serviceGetter(ns, name, port), "Service " + flag
	}
	for _, p := range f.a.Prometheuses {
		for _, candidate := range []string{p.Name, "prometheus-operated"} {
			svc, err := f.kube.CoreV1().Services(p.Namespace).Get(ctx, candidate, metav1.GetOptions{})
			if err != nil || len(svc.Spec.Ports) == 0 {
				continue
			}
			port := strconv.Itoa(int(svc.Spec.Ports[0].Port))
			return f.serviceGetter(p.Namespace, candidate, port), fmt.Sprintf("Service %s/%s:%s", p.Namespace, candidate, port)
		}
	}
	return nil, ""
}

func (f *fetcher) serviceGetter(ns, name, port string) promGetter {
	return func(ctx context.Context, path string, q url.Values) ([]byte, error) {
		params := map[string]string{}
		for k := range q {
			params[k] = q.Get(k)
		}
		return f.kube.CoreV1().Services(ns).ProxyGet("http", name, port, path, params).DoRaw(ctx)
	}
}

func (f *fetcher) prometheus(ctx context.Context) {
	get, via := f.prometheusGetter(ctx)
	if get == nil {
		return
	}
	p := &f.a.Prometheus
	p.Via = via
	p.Targets = *fetched(get(ctx, "/api/v1/targets", url.Values{"state": {"active"}}))
	if p.Targets.Error != "" {
		return
	}
	ns, svc := strconv.Quote(f.a.Namespace), strconv.Quote(f.a.Service)
	p.Series = *fetched(get(ctx, "/api/v1/query", url.Values{"query": {
		`count by (__name__) ({__name__=~"kong_.+",exported_namespace=` + ns + `,exported_service=` + svc + `})`}}))
	p.Unlabelled = *fetched(get(ctx, "/api/v1/query", url.Values{"query": {
		`count by (job) ({__name__=~"kong_(upstream_latency_ms|request_latency_ms|kong_latency_ms)_count|kong_http_requests_total|kong_bandwidth_bytes",exported_service="",service=~".*[.]` +
			regexp.QuoteMeta(f.a.Service) + `[.].*"})`}}))
}

// apiService is the part of an APIService the doctor reads.
type apiService struct {
	Status struct {
		Conditions []Condition `json:"conditions"`
	} `json:"status"`
}

func (f *fetcher) customMetrics(ctx context.Context) {
	cm := &f.a.CustomMetrics
	cm.APIService = CustomMetricsAPIService
	rc := f.kube.Discovery().RESTClient()
	raw, err := rc.Get().AbsPath("/apis/apiregistration.k8s.io/v1/apiservices/" + CustomMetricsAPIService).DoRaw(ctx)
	if apierrors.IsNotFound(err) {
		return
	}
	cm.Found = true
	if err != nil {
		cm.Reason, cm.Message = "Unknown", err.Error()
		return
	}
	var as apiService
	if err := json.Unmarshal(raw, &as); err != nil {
		cm.Reason, cm.Message = "Unknown", err.Error()
		return
	}
	if c, found := condition(as.Status.Conditions, "Available"); found {
		cm.Available, cm.Reason, cm.Message = c.Status == "True", c.Reason, c.Message
	}
	if !cm.Available {
		return
	}
	raw, err = rc.Get().AbsPath(customMetricsPath).DoRaw(ctx)
	if err != nil {
		cm.DiscoveryError = err.Error()
		return
	}
	var list metav1.APIResourceList
	if err := json.Unmarshal(raw, &list); err != nil {
		cm.DiscoveryError = err.Error()
		return
	}
	var served []string
	for _, r := range list.APIResources {
		cm.Resources = append(cm.Resources, r.Name)
		if n, found := strings.CutPrefix(r.Name, "services/"); found {
			served = append(served, n)
		}
	}
	slices.Sort(cm.Resources)
	// The metrics the HPAs ask for, where served; else every metric of
	// Services (a few).
	var ask []string
	for _, h := range f.a.HPAs {
		for _, m := range h.Metrics {
			if slices.Contains(served, m) {
				ask = append(ask, m)
			}
		}
	}
	if len(ask) == 0 {
		ask = served[:min(len(served), 5)]
	}
	cm.Values = map[string]MetricValue{}
	for _, m := range ask {
		var code int
		raw, err := rc.Get().AbsPath(customMetricsPath, "namespaces", f.a.Namespace, "services", f.a.Service, m).Do(ctx).StatusCode(&code).Raw()
		if err != nil {
			cm.Values[m] = MetricValue{Code: code, Error: err.Error()}
			continue
		}
		var v struct {
			Items []struct {
				Value string `json:"value"`
			} `json:"items"`
		}
		if err := json.Unmarshal(raw, &v); err != nil || len(v.Items) == 0 {
			cm.Values[m] = MetricValue{Code: code, Error: fmt.Sprintf("no item in %.200s", raw)}
			continue
		}
		cm.Values[m] = MetricValue{Code: code, Value: v.Items[0].Value}
	}
}
