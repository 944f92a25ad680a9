package inject

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	admissionv1 "k8s.io/api/admission/v1"
)

// testConfig is the injector configuration of the golden files.
var testConfig = Config{
	Image:            "ghcr.io/kong-metrics-sidecar/kong-metrics-sidecar:v0.1.0",
	Mode:             ModeNative,
	DefaultConfigMap: "kong-metrics-sidecar",
	Version:          "dev",
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func newTestHandler(cfg Config) *Handler {
	return NewHandler(cfg, discardLogger(), NewMetrics(prometheus.NewRegistry()))
}

// admissions is the handler's admissions_total for result.
func admissions(h *Handler, result string) float64 {
	return testutil.ToFloat64(h.metrics.admissions.WithLabelValues(result))
}

// post sends body to h and returns the recorded response.
func post(h http.Handler, body []byte) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/mutate", bytes.NewReader(body)))
	return rec
}

// decodeResponse checks that rec holds an AdmissionReview v1 response and
// returns it.
func decodeResponse(t testing.TB, rec *httptest.ResponseRecorder) *admissionv1.AdmissionResponse {
	t.Helper()
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d, want 200; body %q", rec.Code, rec.Body.String())
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	var review admissionv1.AdmissionReview
	dec := json.NewDecoder(bytes.NewReader(rec.Body.Bytes()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&review); err != nil {
		t.Fatalf("decoding the response: %v", err)
	}
	if review.APIVersion != "admission.k8s.io/v1" || review.Kind != "AdmissionReview" {
		t.Errorf("response is apiVersion %q kind %q", review.APIVersion, review.Kind)
	}
	if review.Request != nil {
		t.Error("the response echoes the request")
	}
	if review.Response == nil {
		t.Fatal("the AdmissionReview has no response")
	}
	return review.Response
}

// normalizeJSON re-encodes JSON with sorted keys and indentation, so that
// golden files are stable and readable.
func normalizeJSON(t testing.TB, data []byte) []byte {
	t.Helper()
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatalf("normalizing JSON: %v\n%s", err, data)
	}
	out, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(out, '\n')
}

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "admission", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
