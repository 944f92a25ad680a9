// Package fakekubelet does, for a cluster without nodes, the two things of
// a kubelet that the end-to-end test depends on: pods become Running and
// Ready, and a ConfigMap volume follows the ConfigMap.
package fakekubelet

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/integration/kubelet"
)

// RunPods marks every pod in namespace matching the label selector Running
// and Ready as it appears, by patching pods/status (no Node, no binding),
// until ctx ends. It returns once its informer has synced.
func RunPods(ctx context.Context, client kubernetes.Interface, namespace, selector string, logger *slog.Logger) error {
	f := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = selector }))
	inf := f.Core().V1().Pods().Informer()
	mark := func(obj any) {
		pod, ok := obj.(*corev1.Pod)
		if !ok || pod.DeletionTimestamp != nil || ready(pod) {
			return
		}
		if err := markReady(ctx, client, pod); err != nil && ctx.Err() == nil {
			logger.Warn("Marking pod ready failed", "pod", pod.Namespace+"/"+pod.Name, "err", err)
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

func markReady(ctx context.Context, client kubernetes.Interface, pod *corev1.Pod) error {
	now := metav1.NewTime(time.Now())
	status := map[string]any{
		"phase":     corev1.PodRunning,
		"startTime": now,
		"podIP":     "127.0.0.1",
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
