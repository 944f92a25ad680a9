// Package fakekubelet does, for a cluster without a kubelet, the things of
// a kubelet that the end-to-end test depends on: a Node, pods bound to it
// becoming Running and Ready with an address each, and a ConfigMap volume
// following the ConfigMap.
package fakekubelet

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/testsupport/kubelet"
)

// NodeName is the Node that RunPods registers and binds its pods to. The
// EndpointSlice controller leaves out the pods of a Node it cannot find.
const NodeName = "e2e-node"

// PodIP gives a pod its address; RunPods calls it once for each pod.
type PodIP func(pod *corev1.Pod) (string, error)

// RunPods registers Node NodeName and, as every pod in namespace matching
// the label selector appears, binds it to that Node (pods/binding, as the
// scheduler does) and marks it Running and Ready with the address podIP
// gives it (127.0.0.1 when podIP is nil), by patching pods/status, until
// ctx ends. It returns once its informer has synced.
func RunPods(ctx context.Context, client kubernetes.Interface, namespace, selector string, podIP PodIP, logger *slog.Logger) error {
	if podIP == nil {
		podIP = func(*corev1.Pod) (string, error) { return "127.0.0.1", nil }
	}
	if err := ensureNode(ctx, client); err != nil {
		return err
	}
	// The informer calls handlers one at a time: no lock.
	ips := map[types.UID]string{}
	f := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = selector }))
	inf := f.Core().V1().Pods().Informer()
	mark := func(obj any) {
		pod, ok := obj.(*corev1.Pod)
		if !ok || pod.DeletionTimestamp != nil || ready(pod) {
			return
		}
		ip, ok := ips[pod.UID]
		if !ok {
			var err error
			if ip, err = podIP(pod); err != nil {
				logger.Warn("No address for pod", "pod", pod.Namespace+"/"+pod.Name, "err", err)
				return
			}
			ips[pod.UID] = ip
		}
		if err := run(ctx, client, pod, ip); err != nil && ctx.Err() == nil {
			logger.Warn("Running pod failed", "pod", pod.Namespace+"/"+pod.Name, "err", err)
		}
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    mark,
		UpdateFunc: func(_, obj any) { mark(obj) },
	}); err != nil {
		return err
	}
	f.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		return fmt.Errorf("pod informer for %s/%s did not sync", namespace, selector)
	}
	return nil
}

func ready(pod *corev1.Pod) bool {
	if pod.Status.Phase != corev1.PodRunning {
		return false
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// ensureNode registers Node NodeName, unless it exists.
func ensureNode(ctx context.Context, client kubernetes.Interface) error {
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: NodeName}}
	if _, err := client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("registering node %s: %w", NodeName, err)
	}
	return nil
}

// run binds pod to Node NodeName unless it is bound, and marks it Running
// and Ready with address ip.
func run(ctx context.Context, client kubernetes.Interface, pod *corev1.Pod, ip string) error {
	if pod.Spec.NodeName == "" {
		b := &corev1.Binding{
			ObjectMeta: metav1.ObjectMeta{Name: pod.Name, UID: pod.UID},
			Target:     corev1.ObjectReference{Kind: "Node", Name: NodeName},
		}
		if err := client.CoreV1().Pods(pod.Namespace).Bind(ctx, b, metav1.CreateOptions{}); err != nil && !apierrors.IsConflict(err) {
			return fmt.Errorf("binding to node %s: %w", NodeName, err)
		}
	}
	now := metav1.NewTime(time.Now())
	status := map[string]any{
		"phase":     corev1.PodRunning,
		"startTime": now,
		"hostIP":    "127.0.0.1",
		"podIP":     ip,
		"podIPs":    []corev1.PodIP{{IP: ip}},
		"conditions": []corev1.PodCondition{
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.PodInitialized, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.ContainersReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
		},
	}
	patch, err := json.Marshal(map[string]any{"status": status})
	if err != nil {
		return fmt.Errorf("BUG: encoding status patch: %w", err)
	}
	_, err = client.CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "status")
	return err
}

// ProjectConfigMap keeps dir holding the ConfigMap namespace/name's keys
// the way the kubelet writes a ConfigMap volume (kubelet.AtomicWriter:
// timestamped directory, ..data symlink swap), until ctx ends. It returns
// once the ConfigMap has been written the first time; onWrite, when set,
// is called after each write with the ConfigMap's resourceVersion.
func ProjectConfigMap(ctx context.Context, client kubernetes.Interface, namespace, name, dir string, logger *slog.Logger, onWrite func(resourceVersion string)) error {
	f := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", name).String()
		}))
	inf := f.Core().V1().ConfigMaps().Informer()
	// The informer calls handlers one at a time, as the writer needs.
	w := &kubelet.AtomicWriter{Dir: dir}
	first := make(chan struct{})
	written := false
	write := func(obj any) {
		cm, ok := obj.(*corev1.ConfigMap)
		if !ok {
			return
		}
		payload := map[string][]byte{}
		for k, v := range cm.Data {
			payload[k] = []byte(v)
		}
		for k, v := range cm.BinaryData {
			payload[k] = v
		}
		if err := w.Write(payload); err != nil {
			logger.Warn("Projecting ConfigMap failed", "configmap", namespace+"/"+name, "err", err)
			return
		}
		if onWrite != nil {
			onWrite(cm.ResourceVersion)
		}
		if !written {
			written = true
			close(first)
		}
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    write,
		UpdateFunc: func(_, obj any) { write(obj) },
	}); err != nil {
		return err
	}
	f.Start(ctx.Done())
	select {
	case <-first:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("ConfigMap %s/%s never projected: %w", namespace, name, ctx.Err())
	}
}
