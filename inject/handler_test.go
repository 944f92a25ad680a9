package inject

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	kjson "sigs.k8s.io/json"
)

func TestHandlerRejectsMalformedRequests(t *testing.T) {
	valid := string(readFixture(t, "helm-chart"))
	cases := []struct {
		name   string
		method string
		body   string
		status int
		msg    string // in the response body
	}{
		{"empty body", http.MethodPost, "", 400, "decoding the AdmissionReview: unexpected end of JSON input"},
		{"not JSON", http.MethodPost, "<html>", 400, "decoding the AdmissionReview: invalid character '<'"},
		{"truncated", http.MethodPost, valid[:len(valid)/2], 400, "decoding the AdmissionReview"},
		{"trailing garbage", http.MethodPost, valid + "}", 400, "decoding the AdmissionReview"},
		{"JSON null", http.MethodPost, "null", 400, "want apiVersion admission.k8s.io/v1 and kind AdmissionReview"},
		{"array", http.MethodPost, "[]", 400, "decoding the AdmissionReview"},
		{"v1beta1", http.MethodPost, strings.Replace(valid, `"admission.k8s.io/v1"`, `"admission.k8s.io/v1beta1"`, 1), 400, `got apiVersion "admission.k8s.io/v1beta1" and kind "AdmissionReview"`},
		{"wrong kind", http.MethodPost, strings.Replace(valid, `"kind": "AdmissionReview"`, `"kind": "ConversionReview"`, 1), 400, `kind "ConversionReview"`},
		{"kind in lower case", http.MethodPost, strings.Replace(valid, `"kind": "AdmissionReview"`, `"kind": "admissionreview"`, 1), 400, `kind "admissionreview"`},
		{"field names are case-sensitive", http.MethodPost, strings.Replace(valid, `"request"`, `"Request"`, 1), 400, "the AdmissionReview has no request"},
		{"no request", http.MethodPost, `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`, 400, "the AdmissionReview has no request"},
		{"a response instead", http.MethodPost, `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"1","allowed":true}}`, 400, "no request"},
		{"no uid", http.MethodPost, `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"operation":"CREATE"}}`, 400, "request has no uid"},
		{"wrong type", http.MethodPost, `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":7}}`, 400, "decoding the AdmissionReview"},
		{"GET", http.MethodGet, "", 405, "use POST"},
		{"too large", http.MethodPost, `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"` + strings.Repeat("x", MaxRequestBytes) + `"}}`, 413, "larger than"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newTestHandler(testConfig)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(tc.method, "/mutate", strings.NewReader(tc.body)))
			if rec.Code != tc.status || !strings.Contains(rec.Body.String(), tc.msg) {
				t.Errorf("got %d %q, want %d with %q", rec.Code, clipForLog(rec.Body.String()), tc.status, tc.msg)
			}
			want := 1.0
			if tc.method != http.MethodPost {
				want = 0 // not an admission request
			}
			if got := admissions(h, ResultError); got != want {
				t.Errorf("admissions_total{result=\"error\"} = %v, want %v", got, want)
			}
		})
	}
}

func clipForLog(s string) string {
	if len(s) > 300 {
		return s[:300] + "…"
	}
	return s
}

// A pod the webhook cannot decode is allowed, with a warning, and counted
// as an error: the webhook must not block pods it does not understand.
func TestHandlerUndecodablePod(t *testing.T) {
	body := `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u1","operation":"CREATE",
		"resource":{"group":"","version":"v1","resource":"pods"},"namespace":"kong",
		"object":{"metadata":{"labels":{"kong-metrics-sidecar.io/inject":"true"}},"spec":{"containers":"proxy"}}}}`
	h := newTestHandler(testConfig)
	resp := decodeResponse(t, post(h, []byte(body)))
	if !resp.Allowed || resp.UID != "u1" || resp.Patch != nil {
		t.Errorf("response %+v, want allowed without a patch", resp)
	}
	if len(resp.Warnings) != 1 || !strings.Contains(resp.Warnings[0], "cannot decode the pod") {
		t.Errorf("warnings %q", resp.Warnings)
	}
	if got := admissions(h, ResultError); got != 1 {
		t.Errorf("admissions_total{result=\"error\"} = %v, want 1", got)
	}
}

// A panic while answering is a 500 for that request only: the server goes
// on answering.
func TestHandlerRecoversFromPanics(t *testing.T) {
	h := newTestHandler(testConfig)
	var calls int
	var mu sync.Mutex
	h.mutate = func(p *corev1.Pod, c Config) Result {
		mu.Lock()
		calls++
		n := calls
		mu.Unlock()
		if n == 1 {
			panic("boom")
		}
		return Mutate(p, c)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	body := readFixture(t, "helm-chart")
	for i, want := range []int{http.StatusInternalServerError, http.StatusOK} {
		res, err := srv.Client().Post(srv.URL, "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != want {
			t.Errorf("request %d: status %d %q, want %d", i, res.StatusCode, b, want)
		}
	}
	if got := admissions(h, ResultError); got != 1 {
		t.Errorf("admissions_total{result=\"error\"} = %v, want 1", got)
	}
	if got := admissions(h, "injected"); got != 1 {
		t.Errorf("admissions_total{result=\"injected\"} = %v, want 1", got)
	}
}

// fixtureResults are the admissions_total result of each fixture in native mode.
var fixtureResults = map[string]string{
	"helm-chart": "injected", "dataplane-operator": "injected", "minimal-opted-in": "injected",
	"annotated-status-port-name": "injected", "ipv6-status-listen": "injected", "status-port-annotation": "injected",
	"annotation-keys-escaped": "injected", "status-listen-from-configmap": "injected",
	"already-injected": "skipped", "no-labels": "skipped", "not-opted-in": "skipped", "deployment": "skipped", "pod-update": "skipped",
	"no-kong-container": "invalid", "status-listen-off": "invalid", "status-listen-malformed": "invalid", "status-listen-tls-only": "invalid",
	"invalid-status-port": "invalid", "invalid-status-port-off": "invalid", "invalid-config": "invalid", "invalid-cpu-request": "invalid",
	"invalid-memory-request": "invalid", "invalid-memory-limit": "invalid", "invalid-memory-request-over-limit": "invalid",
	"invalid-min-fetch-interval": "invalid",
}

func TestFixtureResultsCoverTestdata(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "admission", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(fixtureResults) {
		t.Errorf("%d fixtures, %d in fixtureResults", len(files), len(fixtureResults))
	}
	for _, f := range files {
		if _, ok := fixtureResults[strings.TrimSuffix(filepath.Base(f), ".json")]; !ok {
			t.Errorf("%s is not in fixtureResults", f)
		}
	}
}

// TestHandlerManyMixedRequests sends 1,000 concurrent requests, valid and
// malformed, through a real HTTP server and checks every answer and the
// counters.
func TestHandlerManyMixedRequests(t *testing.T) {
	type request struct {
		body   []byte
		status int
		uid    string
		result string
	}
	var valid []request
	for name, result := range fixtureResults {
		body := readFixture(t, name)
		var r admissionv1.AdmissionReview
		if err := json.Unmarshal(body, &r); err != nil {
			t.Fatal(err)
		}
		valid = append(valid, request{body: body, status: 200, uid: string(r.Request.UID), result: result})
	}
	rng := rand.New(rand.NewPCG(1, 2))
	malformed := func() request {
		body := valid[rng.IntN(len(valid))].body
		switch rng.IntN(4) {
		case 0: // cut short
			body = body[:rng.IntN(len(body))]
		case 1: // wrong version
			body = bytes.Replace(body, []byte(`"admission.k8s.io/v1"`), []byte(`"admission.k8s.io/v1beta1"`), 1)
		case 2: // random bytes
			body = make([]byte, rng.IntN(512))
			for i := range body {
				body[i] = byte(rng.UintN(256))
			}
		case 3: // no request
			body = []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":null}`)
		}
		return request{body: body, status: 400, result: ResultError}
	}
	reqs := make([]request, 1000)
	want := map[string]float64{}
	for i := range reqs {
		if rng.IntN(3) == 0 {
			reqs[i] = malformed()
		} else {
			reqs[i] = valid[rng.IntN(len(valid))]
		}
		want[reqs[i].result]++
	}

	h := newTestHandler(testConfig)
	srv := httptest.NewServer(h)
	defer srv.Close()
	work := make(chan int)
	var wg sync.WaitGroup
	errs := make(chan error, len(reqs))
	for range 16 {
		wg.Go(func() {
			for i := range work {
				if err := checkAnswer(srv, reqs[i].body, reqs[i].status, reqs[i].uid, reqs[i].result); err != nil {
					errs <- fmt.Errorf("request %d: %w", i, err)
				}
			}
		})
	}
	for i := range reqs {
		work <- i
	}
	close(work)
	wg.Wait()
	close(errs)
	n := 0
	for err := range errs {
		if n++; n <= 10 {
			t.Error(err)
		}
	}
	for _, r := range results {
		if got := admissions(h, r); got != want[r] {
			t.Errorf("admissions_total{result=%q} = %v, want %v", r, got, want[r])
		}
	}
}

func checkAnswer(srv *httptest.Server, body []byte, status int, uid, result string) error {
	res, err := srv.Client().Post(srv.URL, "application/json", bytes.NewReader(body))
	if err != nil {
		return err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return err
	}
	if res.StatusCode != status {
		return fmt.Errorf("status %d %q, want %d", res.StatusCode, clipForLog(string(b)), status)
	}
	if status != 200 {
		return nil
	}
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(b, &review); err != nil {
		return err
	}
	r := review.Response
	switch {
	case r == nil:
		return fmt.Errorf("no response")
	case string(r.UID) != uid:
		return fmt.Errorf("uid %q, want %q", r.UID, uid)
	case !r.Allowed:
		return fmt.Errorf("denied")
	case (r.Patch != nil) != (result == "injected"):
		return fmt.Errorf("patch %q for a %s request", r.Patch, result)
	case result == "invalid" && len(r.Warnings) == 0, result == "skipped" && len(r.Warnings) > 0:
		return fmt.Errorf("warnings %q for a %s request", r.Warnings, result)
	}
	return nil
}

// FuzzHandler sends arbitrary bodies: the handler must answer every one
// with 200 or 400, never panic, and any patch it returns must apply to the
// pod and leave nothing for a second pass.
func FuzzHandler(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "admission", "*.json"))
	if err != nil {
		f.Fatal(err)
	}
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"x","operation":"CREATE","resource":{"resource":"pods"},` +
		`"object":{"metadata":{"labels":{"kong-metrics-sidecar.io/inject":"true"},"annotations":{"kong-metrics-sidecar.io/status-port":"8100"}}}}}`))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"x","operation":"CREATE","resource":{"resource":"pods"},` +
		`"object":{"metadata":{"labels":{"kong-metrics-sidecar.io/inject":"true"},"annotations":null},"spec":{"containers":[{"name":"proxy"}],"volumes":null}}}}`))
	f.Add([]byte("null"))
	f.Add([]byte(""))
	h := newTestHandler(testConfig)
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := post(h, body)
		if rec.Code == http.StatusBadRequest {
			return
		}
		resp := decodeResponse(t, rec)
		var in admissionv1.AdmissionReview
		if err := kjson.UnmarshalCaseSensitivePreserveInts(body, &in); err != nil {
			t.Fatalf("answered 200 to a body that does not decode: %v", err)
		}
		if resp.UID != in.Request.UID || !resp.Allowed {
			t.Fatalf("response %+v for uid %q", resp, in.Request.UID)
		}
		if resp.Patch == nil {
			return
		}
		patched := applyPatch(t, in.Request.Object.Raw, resp.Patch)
		in.Request.Object.Raw = patched
		again, err := json.Marshal(in)
		if err != nil {
			t.Fatal(err)
		}
		if resp2 := decodeResponse(t, post(h, again)); resp2.Patch != nil {
			t.Fatalf("second pass patched again: %s", resp2.Patch)
		}
	})
}

// FuzzMutatePod wraps arbitrary pod JSON in a valid AdmissionReview: the
// handler must answer 200, and any patch must apply to exactly that JSON
// and leave nothing for a second pass.
func FuzzMutatePod(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "admission", "*.json"))
	if err != nil {
		f.Fatal(err)
	}
	for _, file := range files {
		var r admissionv1.AdmissionReview
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		if err := json.Unmarshal(b, &r); err != nil {
			f.Fatal(err)
		}
		f.Add([]byte(r.Request.Object.Raw))
	}
	f.Add([]byte(`{"metadata":{"labels":{"kong-metrics-sidecar.io/inject":"true"},"annotations":null},"spec":{"containers":[{"name":"proxy"}],"initContainers":null}}`))
	f.Add([]byte(`{"metadata":{"labels":{"kong-metrics-sidecar.io/inject":"true"},"annotations":{"kong-metrics-sidecar.io/status-port":"8100"}},"spec":{"containers":[{}]}}`))
	h := newTestHandler(testConfig)
	f.Fuzz(func(t *testing.T, pod []byte) {
		if !json.Valid(pod) {
			return
		}
		review := func(obj []byte) []byte {
			b, err := json.Marshal(admissionv1.AdmissionReview{
				TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
				Request: &admissionv1.AdmissionRequest{
					UID: "fuzz", Operation: admissionv1.Create, Namespace: "kong",
					Resource: metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
					Object:   runtime.RawExtension{Raw: obj},
				},
			})
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
		resp := decodeResponse(t, post(h, review(pod)))
		if !resp.Allowed || resp.UID != "fuzz" {
			t.Fatalf("response %+v", resp)
		}
		if resp.Patch == nil {
			return
		}
		patched := applyPatch(t, pod, resp.Patch)
		if resp2 := decodeResponse(t, post(h, review(patched))); resp2.Patch != nil {
			t.Fatalf("second pass patched again: %s", resp2.Patch)
		}
	})
}
