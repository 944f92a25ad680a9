package inject

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime/debug"
	"time"

	"golang.org/x/sync/semaphore"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kjson "sigs.k8s.io/json"
)

// MaxRequestBytes bounds an AdmissionReview body. The API server takes at
// most 3 MiB for a request body, and a review carries the object plus, for
// updates, the old one.
const MaxRequestBytes = 8 << 20

// maxBytesInFlight bounds the request bodies the Handler holds at once,
// and so its memory: decoding a review takes about three times its size,
// so one review as large as MaxRequestBytes, or many small ones, fit the
// injector's memory limit; the others wait for their turn before their
// body is read.
const maxBytesInFlight = MaxRequestBytes

// admissionAPIVersion is the only AdmissionReview version the webhook
// speaks; its MutatingWebhookConfiguration lists only v1.
var admissionAPIVersion = admissionv1.SchemeGroupVersion.String()

// Handler answers AdmissionReviews POSTed to /mutate. It is safe for
// concurrent use.
type Handler struct {
	cfg     Config
	logger  *slog.Logger
	metrics *Metrics
	mutate  func(*corev1.Pod, Config) Result // Mutate; tests replace it to make it panic
	bodies  *semaphore.Weighted              // bytes of the request bodies held, up to maxBytesInFlight
}

// NewHandler returns a Handler that injects the sidecar described by cfg.
func NewHandler(cfg Config, logger *slog.Logger, metrics *Metrics) *Handler {
	return &Handler{cfg: cfg, logger: logger, metrics: metrics, mutate: Mutate, bodies: semaphore.NewWeighted(maxBytesInFlight)}
}

// ServeHTTP answers one AdmissionReview. A body that is not an
// AdmissionReview v1 with a request gets HTTP 400; everything else gets an
// allowed response, with a patch when the sidecar is injected and warnings
// when an opted-in pod cannot get it. The webhook never denies a pod: a
// metrics sidecar is not worth keeping Kong from starting.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		// Not an admission request, so not counted as one.
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "use POST with an AdmissionReview", http.StatusMethodNotAllowed)
		return
	}
	start := time.Now()
	result := ResultError
	defer func() {
		if p := recover(); p != nil {
			// The response is written last, in one piece, so nothing has
			// been written yet.
			h.logger.ErrorContext(r.Context(), "panic while answering an admission request", "panic", p, "stack", string(debug.Stack()))
			http.Error(w, "internal error", http.StatusInternalServerError)
			result = ResultError
		}
		h.metrics.observeAdmission(result, time.Since(start))
	}()
	// The body's share of maxBytesInFlight: its Content-Length (the server
	// reads no more), or the most it may be.
	share := int64(MaxRequestBytes)
	if r.ContentLength > 0 && r.ContentLength < share {
		share = r.ContentLength
	}
	if err := h.bodies.Acquire(r.Context(), share); err != nil {
		return // the API server gave up waiting; it applies failurePolicy Ignore
	}
	defer h.bodies.Release(share)
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxRequestBytes))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			http.Error(w, fmt.Sprintf("AdmissionReview larger than %d bytes", MaxRequestBytes), http.StatusRequestEntityTooLarge)
			return
		}
		h.logger.WarnContext(r.Context(), "cannot read an admission request", "remote", r.RemoteAddr, "err", err)
		http.Error(w, fmt.Sprintf("reading the request body: %v", err), http.StatusBadRequest)
		return
	}
	req, err := decodeReview(body)
	if err != nil {
		h.logger.WarnContext(r.Context(), "bad admission request", "remote", r.RemoteAddr, "err", err)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	resp, res := h.review(r.Context(), req)
	out, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: admissionAPIVersion, Kind: "AdmissionReview"},
		Response: resp,
	})
	if err != nil {
		panic(fmt.Sprintf("BUG: encoding an AdmissionReview: %v", err))
	}
	result = res
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(out) // an error means the API server is gone; it will retry or ignore
}

// decodeReview returns the request of an AdmissionReview v1. It decodes
// JSON as the API server does, with case-sensitive field names, so that
// the pod the patch is computed from is the document the patch applies to.
func decodeReview(body []byte) (*admissionv1.AdmissionRequest, error) {
	var review admissionv1.AdmissionReview
	if err := kjson.UnmarshalCaseSensitivePreserveInts(body, &review); err != nil {
		return nil, fmt.Errorf("decoding the AdmissionReview: %w", err)
	}
	if review.APIVersion != admissionAPIVersion || review.Kind != "AdmissionReview" {
		return nil, fmt.Errorf("want apiVersion %s and kind AdmissionReview, got apiVersion %s and kind %s",
			admissionAPIVersion, clip(review.APIVersion), clip(review.Kind))
	}
	if review.Request == nil {
		return nil, errors.New("the AdmissionReview has no request")
	}
	if review.Request.UID == "" {
		return nil, errors.New("the AdmissionReview's request has no uid")
	}
	return review.Request, nil
}

// review answers req; the string is the admissions_total result.
func (h *Handler) review(ctx context.Context, req *admissionv1.AdmissionRequest) (*admissionv1.AdmissionResponse, string) {
	resp := &admissionv1.AdmissionResponse{UID: req.UID, Allowed: true}
	logger := h.logger.With("uid", req.UID, "namespace", req.Namespace)
	if req.Resource.Group != "" || req.Resource.Resource != "pods" || req.SubResource != "" {
		logger.DebugContext(ctx, "skipped: not a pod", "resource", req.Resource.String(), "sub_resource", req.SubResource)
		return resp, string(Skipped)
	}
	if req.Operation != admissionv1.Create {
		logger.DebugContext(ctx, "skipped: not a creation", "operation", req.Operation)
		return resp, string(Skipped)
	}
	var pod corev1.Pod
	if err := kjson.UnmarshalCaseSensitivePreserveInts(req.Object.Raw, &pod); err != nil {
		logger.ErrorContext(ctx, "cannot decode the pod", "err", err)
		resp.Warnings = []string{clipWarning("kong-metrics-sidecar not injected: the webhook cannot decode the pod: " + err.Error())}
		return resp, ResultError
	}
	// Pods created by controllers have no name yet, only a generateName,
	// and often no namespace in their metadata: the request has it.
	if pod.Name != "" {
		logger = logger.With("pod", pod.Name)
	} else {
		logger = logger.With("generate_name", pod.GenerateName)
	}
	res := h.mutate(&pod, h.cfg)
	resp.Warnings = res.Warnings
	switch res.Outcome {
	case Injected:
		p, err := json.Marshal(res.Patch)
		if err != nil {
			panic(fmt.Sprintf("BUG: encoding a JSON patch: %v", err))
		}
		resp.Patch = p
		resp.PatchType = new(admissionv1.PatchTypeJSONPatch)
		logger.InfoContext(ctx, "injected the sidecar", "mode", h.cfg.Mode, "upstream", res.UpstreamURL, "upstream_from", res.UpstreamFrom, "warnings", len(res.Warnings))
	case Invalid:
		logger.WarnContext(ctx, "opted-in pod left without the sidecar", "reason", res.Reason)
	default:
		logger.DebugContext(ctx, "skipped", "reason", res.Reason)
	}
	return resp, string(res.Outcome)
}

// maxQuoted bounds a value quoted in a message: an annotation value can be
// 256 KiB, and the API server truncates long warnings anyway.
const maxQuoted = 64

// clip quotes s, shortened to maxQuoted bytes.
func clip(s string) string {
	if len(s) > maxQuoted {
		return fmt.Sprintf("%q…", s[:maxQuoted])
	}
	return fmt.Sprintf("%q", s)
}

// maxWarning is the length of warning the API server passes on whole.
const maxWarning = 256

// clipWarning shortens s to maxWarning bytes, at a rune boundary.
func clipWarning(s string) string {
	if len(s) <= maxWarning {
		return s
	}
	cut := 0
	for i := range s {
		if i > maxWarning-len("…") {
			break
		}
		cut = i
	}
	return s[:cut] + "…"
}
