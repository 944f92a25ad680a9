package inject

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
)

// largeReview is an AdmissionReview for a pod whose annotations make it
// more than half of MaxRequestBytes (two do not fit maxBytesInFlight).
func largeReview(t *testing.T) []byte {
	t.Helper()
	pod := kongPod()
	pod.Annotations = map[string]string{}
	for i := range 20 {
		pod.Annotations[string(rune('a'+i%26))+strings.Repeat("x", i)] = strings.Repeat("v", 256<<10)
	}
	raw, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	body, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID:       types.UID("11111111-2222-4333-8444-555555555555"),
			Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
			Operation: admissionv1.Create,
			Object:    kruntime.RawExtension{Raw: raw},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(body) > MaxRequestBytes || len(body) <= maxBytesInFlight/2 {
		t.Fatalf("review of %d bytes, want more than half of %d", len(body), maxBytesInFlight)
	}
	return body
}

// TestConcurrentLargeReviewsBounded: three reviews of 5 MiB at once are not all held at once: their bodies wait for a share of
// maxBytesInFlight before they are read, and the live heap while the
// admitted ones are being answered (measured after a GC) stays far below
// the injector's 128 MiB memory limit. All are answered.
func TestConcurrentLargeReviewsBounded(t *testing.T) {
	const n = 3
	body := largeReview(t)
	h := newTestHandler(testConfig)
	var inside, most atomic.Int32
	release := make(chan struct{})
	h.mutate = func(p *corev1.Pod, c Config) Result {
		k := inside.Add(1)
		for m := most.Load(); k > m && !most.CompareAndSwap(m, k); m = most.Load() {
		}
		<-release
		inside.Add(-1)
		return Mutate(p, c)
	}
	var wg sync.WaitGroup
	codes := make([]int, n)
	for i := range n {
		wg.Go(func() {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/mutate", bytes.NewReader(body)))
			codes[i] = rec.Code
		})
	}
	// Wait until every request is either being answered or waiting for
	// its share (or, without the bound, all are being answered).
	deadline := time.Now().Add(time.Minute) // only a broken handler waits this long
	for time.Now().Before(deadline) {
		if in := int(inside.Load()); in == n || in >= 1 && in+waitingForShare() == n {
			break
		}
		time.Sleep(time.Millisecond) // a poll: Stack is costly under -race
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	close(release)
	wg.Wait()
	t.Logf("%d reviews of %d bytes: at most %d answered at once, live heap %d MiB", n, len(body), most.Load(), ms.HeapAlloc>>20)
	if got := most.Load(); int64(got)*int64(len(body)) > maxBytesInFlight {
		t.Errorf("%d reviews of %d bytes held at once, more than %d bytes", got, len(body), maxBytesInFlight)
	}
	// One review held costs about twice its size (body and pod): two
	// would pass three times its size.
	if limit := 3 * uint64(len(body)); ms.HeapAlloc > limit {
		t.Errorf("live heap %d MiB while answering, want at most %d MiB", ms.HeapAlloc>>20, limit>>20)
	}
	for i, code := range codes {
		if code != http.StatusOK {
			t.Errorf("review %d: status %d", i, code)
		}
	}
}

// waitingForShare counts the goroutines waiting for a share of the bodies' budget.
func waitingForShare() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	return strings.Count(string(buf), "semaphore.(*Weighted).Acquire")
}
