package kongadmin

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/testsupport/harness"
	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/testsupport/kongsim"
	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/relabel"
)

func simulator(t *testing.T, specs ...string) *kongsim.Simulator {
	t.Helper()
	svcs, err := kongsim.ParseServices(strings.Join(specs, ","))
	if err != nil {
		t.Fatal(err)
	}
	sim, err := kongsim.New(kongsim.Config{Services: svcs})
	if err != nil {
		t.Fatal(err)
	}
	return sim
}

// countRequests counts the requests h serves.
func countRequests(h http.Handler, n *atomic.Int32) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { n.Add(1); h.ServeHTTP(w, r) })
}

func TestServicesPagination(t *testing.T) {
	var specs []string
	for i := range 7 {
		specs = append(specs, fmt.Sprintf("httproute/ns%d/svc%d/0", i, i))
	}
	sim := simulator(t, specs...)
	tests := []struct {
		pageSize, wantRequests int
	}{{1, 7}, {2, 4}, {3, 3}, {7, 1}, {1000, 1}}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.pageSize), func(t *testing.T) {
			var n atomic.Int32
			srv := httptest.NewServer(countRequests(sim.AdminHandler(kongsim.AdminOptions{}), &n))
			defer srv.Close()
			c, err := NewClient(ClientOptions{URL: srv.URL, PageSize: tt.pageSize})
			if err != nil {
				t.Fatal(err)
			}
			tags, err := c.Services(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if len(tags) != 7 || int(n.Load()) != tt.wantRequests {
				t.Fatalf("got %d services in %d requests, want 7 in %d", len(tags), n.Load(), tt.wantRequests)
			}
			for i := range 7 {
				want := relabel.Tag{Kind: "Service", Service: relabel.Service{Namespace: fmt.Sprintf("ns%d", i), Name: fmt.Sprintf("svc%d", i)}}
				if got := tags[fmt.Sprintf("httproute.ns%d.svc%d.0", i, i)]; got != want {
					t.Errorf("service %d: got %+v, want %+v", i, got, want)
				}
			}
		})
	}
}

func TestParseTags(t *testing.T) {
	tests := []struct {
		tags []string
		want relabel.Tag
	}{
		{[]string{"k8s-name:command", "k8s-namespace:kong", "k8s-kind:Service", "k8s-uid:x", "k8s-version:v1"},
			relabel.Tag{Kind: "Service", Service: relabel.Service{Namespace: "kong", Name: "command"}}},
		{[]string{"k8s-name:route", "k8s-namespace:kong", "k8s-kind:HTTPRoute", "k8s-group:gateway.networking.k8s.io"},
			relabel.Tag{Kind: "HTTPRoute", Service: relabel.Service{Namespace: "kong", Name: "route"}}},
		{nil, relabel.Tag{}},
		{[]string{"managed-by-me", "k8s-kind:Service", "k8s-name:Bad_Name", "k8s-namespace:kong"}, relabel.Tag{}},
	}
	for _, tt := range tests {
		if got := parseTags(tt.tags); got != tt.want {
			t.Errorf("parseTags(%q) = %+v, want %+v", tt.tags, got, tt.want)
		}
	}
}

func TestTokenHeader(t *testing.T) {
	sim := simulator(t, "kong/command:80")
	srv := httptest.NewServer(sim.AdminHandler(kongsim.AdminOptions{Token: "s3cret"}))
	defer srv.Close()
	tests := []struct {
		token    string
		wantKind string // "" for success
	}{{"s3cret", ""}, {"", KindStatus}, {"wrong", KindStatus}}
	for _, tt := range tests {
		c, err := NewClient(ClientOptions{URL: srv.URL, Token: tt.token})
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Services(t.Context())
		checkKind(t, err, tt.wantKind)
	}
}

func checkKind(t *testing.T, err error, want string) {
	t.Helper()
	var e *Error
	switch {
	case want == "" && err != nil:
		t.Errorf("got %v, want success", err)
	case want != "" && (!errors.As(err, &e) || e.Kind != want):
		t.Errorf("got %v, want an error of kind %s", err, want)
	}
}

// TestMutualTLS: the Admin API requires a client certificate; without one
// the read fails as tls, with one it succeeds, and a certificate
// replaced on disk is picked up without a new Client.
func TestMutualTLS(t *testing.T) {
	ca, err := harness.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	otherCA, err := harness.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	caFile, certFile, keyFile := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(caFile, ca.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	srvCert, srvKey, err := ca.Issue(2, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(srvCert, srvKey)
	if err != nil {
		t.Fatal(err)
	}
	sim := simulator(t, "kong/command:80")
	srv := httptest.NewUnstartedServer(sim.AdminHandler(kongsim.AdminOptions{}))
	srv.TLS = kongsim.AdminTLSConfig(pair, ca.Pool())
	srv.StartTLS()
	defer srv.Close()

	noCert, err := NewClient(ClientOptions{URL: srv.URL, CAFile: caFile})
	if err != nil {
		t.Fatal(err)
	}
	_, err = noCert.Services(t.Context())
	checkKind(t, err, KindTLS)

	// A client certificate from another CA is refused; once the right one
	// is written over it, the same Client presents it.
	bad, badKey, _ := otherCA.Issue(3, time.Now().Add(time.Hour))
	if err := harness.WritePair(certFile, keyFile, bad, badKey); err != nil {
		t.Fatal(err)
	}
	c, err := NewClient(ClientOptions{URL: srv.URL, CAFile: caFile, CertFile: certFile, KeyFile: keyFile})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Services(t.Context())
	checkKind(t, err, KindTLS)
	ctx, cancel := context.WithCancel(t.Context())
	followed := make(chan struct{})
	go func() { c.FollowFiles(ctx, slog.New(slog.DiscardHandler)); close(followed) }()
	defer func() { cancel(); <-followed }()
	good, goodKey, _ := ca.Issue(4, time.Now().Add(time.Hour))
	if err := harness.WritePair(certFile, keyFile, good, goodKey); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the new client certificate", func() bool {
		cert, err := c.pair.get()
		return err == nil && cert.Leaf != nil && cert.Leaf.SerialNumber.Int64() == 4
	})
	c.hc.CloseIdleConnections()
	tags, err := c.Services(t.Context())
	if err != nil || len(tags) != 1 {
		t.Fatalf("with the client certificate: %v, %d services", err, len(tags))
	}

	// A server certificate the CA file does not sign is a tls error.
	otherCAFile := filepath.Join(dir, "other-ca.pem")
	if err := os.WriteFile(otherCAFile, otherCA.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	wrongCA, _ := NewClient(ClientOptions{URL: srv.URL, CAFile: otherCAFile, CertFile: certFile, KeyFile: keyFile})
	_, err = wrongCA.Services(t.Context())
	checkKind(t, err, KindTLS)
}

// TestClientFollowsFiles: FollowFiles, which the caller runs beside the
// Refresher, follows the Client's CA and client certificate files; a file
// replaced by something that does not load keeps the last good value in
// use and is logged once, and a missing file at start is an error until it
// appears.
func TestClientFollowsFiles(t *testing.T) {
	ca, err := harness.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	caFile, certFile, keyFile := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	cert1, key1, _ := ca.Issue(1, time.Now().Add(time.Hour))
	if err := harness.WritePair(certFile, keyFile, cert1, key1); err != nil {
		t.Fatal(err)
	}
	c, err := NewClient(ClientOptions{URL: "https://127.0.0.1:1", CAFile: caFile, CertFile: certFile, KeyFile: keyFile})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ca.get(); err == nil || !strings.Contains(err.Error(), "ca.pem") {
		t.Errorf("the missing CA file: %v, want an error naming it", err)
	}
	serial := func() int64 {
		cert, err := c.pair.get()
		if err != nil {
			t.Fatalf("client certificate: %v", err)
		}
		return cert.Leaf.SerialNumber.Int64()
	}
	if serial() != 1 {
		t.Fatalf("serial %d at start, want 1", serial())
	}

	logs := &syncBuffer{}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { c.FollowFiles(ctx, slog.New(slog.NewTextHandler(logs, nil))); close(done) }()
	defer func() { cancel(); <-done }()

	if err := os.WriteFile(caFile, ca.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the CA file", func() bool { _, err := c.ca.get(); return err == nil })
	cert2, key2, _ := ca.Issue(2, time.Now().Add(time.Hour))
	if err := harness.WritePair(certFile, keyFile, cert2, key2); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the new client certificate", func() bool { return serial() == 2 })

	// A broken pair keeps the last good one; the next good one is taken.
	if err := harness.WritePair(certFile, keyFile, []byte("not a certificate"), key2); err != nil {
		t.Fatal(err)
	}
	const rejected = "the Admin API client certificate does not load; keeping the last good one"
	waitFor(t, "the broken pair to be tried", func() bool { return strings.Contains(logs.String(), rejected) })
	if serial() != 2 {
		t.Errorf("serial %d with a broken pair, want the last good 2", serial())
	}
	cert3, key3, _ := ca.Issue(3, time.Now().Add(time.Hour))
	if err := harness.WritePair(certFile, keyFile, cert3, key3); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the next good client certificate", func() bool { return serial() == 3 })
	if n := strings.Count(logs.String(), rejected); n != 1 {
		t.Errorf("the broken pair was logged %d times, want once:\n%s", n, logs)
	}
}

// syncBuffer is a bytes.Buffer that a logger writes to while a test reads.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestClassify: the kind of an error is told by the types it wraps, not
// by its text: a host named x509 is not a TLS problem.
func TestClassify(t *testing.T) {
	dial := func(err error) error {
		return &url.Error{Op: "Get", URL: "https://kong:8444/services", Err: &net.OpError{Op: "dial", Net: "tcp", Err: err}}
	}
	cert := &x509.Certificate{}
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"refused", dial(syscall.ECONNREFUSED), KindConnect},
		{"a host named x509", dial(&net.DNSError{Err: "no such host", Name: "x509", IsNotFound: true}), KindConnect},
		{"text that looks like tls", errors.New("tls: x509: but no type"), KindConnect},
		{"unknown authority", &url.Error{Op: "Get", Err: x509.UnknownAuthorityError{Cert: cert}}, KindTLS},
		{"hostname", &url.Error{Op: "Get", Err: x509.HostnameError{Certificate: cert, Host: "kong"}}, KindTLS},
		{"expired", &url.Error{Op: "Get", Err: x509.CertificateInvalidError{Cert: cert, Reason: x509.Expired}}, KindTLS},
		{"verification", &url.Error{Op: "Get", Err: &tls.CertificateVerificationError{Err: errors.New("x")}}, KindTLS},
		{"plain HTTP answered", &url.Error{Op: "Get", Err: tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}}, KindTLS},
		{"alert received", &url.Error{Op: "Get", Err: &net.OpError{Op: "remote error", Err: tls.AlertError(116)}}, KindTLS},
		{"files", &url.Error{Op: "Get", Err: &filesError{paths: []string{"ca.pem"}, err: errors.New("no PEM")}}, KindTLS},
		{"deadline", &url.Error{Op: "Get", Err: context.DeadlineExceeded}, KindTimeout},
	}
	for _, tc := range tests {
		if got := classify(t.Context(), tc.err); got != tc.want {
			t.Errorf("%s: classify(%v) = %s, want %s", tc.name, tc.err, got, tc.want)
		}
	}
}

func TestErrorKinds(t *testing.T) {
	const closedURL = "http://127.0.0.1:1" // nothing listens on port 1
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	defer close(release)
	garbage := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("<html>not json"))
	}))
	defer garbage.Close()
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no", http.StatusInternalServerError)
	}))
	defer failing.Close()
	// Only the slow server's case has a deadline: a busy machine may take
	// longer than it for a round trip, which is then a timeout too.
	tests := []struct {
		name, url, kind string
		deadline        time.Duration
	}{
		{"connect", closedURL, KindConnect, 0},
		{"timeout", slow.URL, KindTimeout, 100 * time.Millisecond},
		{"decode", garbage.URL, KindDecode, 0},
		{"status", failing.URL, KindStatus, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := NewClient(ClientOptions{URL: tt.url})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := t.Context(), context.CancelFunc(func() {})
			if tt.deadline > 0 {
				ctx, cancel = context.WithTimeout(ctx, tt.deadline)
			}
			defer cancel()
			_, err = c.Services(ctx)
			checkKind(t, err, tt.kind)
		})
	}
}

// fakeLister answers from a channel, so tests decide when and what.
type fakeLister struct {
	calls   chan struct{}
	answers chan answer
}

type answer struct {
	tags map[string]relabel.Tag
	err  error
}

func newFakeLister() *fakeLister {
	return &fakeLister{calls: make(chan struct{}, 16), answers: make(chan answer, 16)}
}

func (f *fakeLister) Services(ctx context.Context) (map[string]relabel.Tag, error) {
	f.calls <- struct{}{}
	select {
	case a := <-f.answers:
		return a.tags, a.err
	case <-ctx.Done():
		return nil, &Error{Kind: KindTimeout, Err: ctx.Err()}
	}
}

var tagged = relabel.Tag{Kind: "Service", Service: relabel.Service{Namespace: "kong", Name: "command"}}

func TestRefreshMetricsAndVersions(t *testing.T) {
	reg := prometheus.NewRegistry()
	l := newFakeLister()
	r := NewRefresher(l, Options{Registry: reg})
	base := relabel.New(relabel.Selection{Services: map[relabel.Service]relabel.Metrics{tagged.Service: relabel.StatusCode}})

	// Down at start: the mapping stays empty, the error is counted.
	l.answers <- answer{err: &Error{Kind: KindConnect, Err: errors.New("refused")}}
	if err := r.Refresh(t.Context()); err == nil {
		t.Fatal("want an error")
	}
	if got := testutil.ToFloat64(r.errors.WithLabelValues(KindConnect)); got != 1 {
		t.Errorf("connect errors = %v, want 1", got)
	}
	if testutil.ToFloat64(r.up) != 0 || r.Mapping().Version != 0 {
		t.Error("want up 0 and version 0")
	}
	rw0 := r.Rewriter(base)
	if r.Rewriter(base) != rw0 {
		t.Error("Rewriter rebuilt without a change")
	}

	// Up: a new version, a new Rewriter that resolves through the tags.
	l.answers <- answer{tags: map[string]relabel.Tag{"httproute.kong.command.0": tagged}}
	if err := r.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	if testutil.ToFloat64(r.up) != 1 || testutil.ToFloat64(r.services) != 1 || testutil.ToFloat64(r.lastSuccess) == 0 {
		t.Error("want up 1, 1 service and a success timestamp")
	}
	rw1 := r.Rewriter(base)
	if rw1 == rw0 || rw1.Selection().Tags["httproute.kong.command.0"] != tagged {
		t.Fatal("the Rewriter does not follow the new mapping")
	}

	// The same answer keeps the version and the Rewriter.
	l.answers <- answer{tags: map[string]relabel.Tag{"httproute.kong.command.0": tagged}}
	_ = r.Refresh(t.Context())
	if r.Rewriter(base) != rw1 || r.Mapping().Version != 1 {
		t.Error("an unchanged mapping made a new version")
	}

	// Down later: the last mapping stays, the counter moves.
	l.answers <- answer{err: &Error{Kind: KindStatus, Err: errors.New("503")}}
	_ = r.Refresh(t.Context())
	if testutil.ToFloat64(r.up) != 0 || testutil.ToFloat64(r.errors.WithLabelValues(KindStatus)) != 1 || r.Rewriter(base) != rw1 {
		t.Error("a failed refresh lost the mapping or was not counted")
	}

	// A new base (config reload) makes a new Rewriter with the same tags.
	base2 := relabel.New(relabel.Selection{})
	if rw := r.Rewriter(base2); rw == rw1 || len(rw.Selection().Tags) != 1 {
		t.Error("a new config snapshot did not make a new Rewriter")
	}
}

// TestNudgeOnUnseenName: a scrape meeting an unknown Kong service name
// starts a refresh (without waiting for it), which picks up the service.
func TestNudgeOnUnseenName(t *testing.T) {
	l := newFakeLister()
	r := NewRefresher(l, Options{Interval: time.Hour, MinInterval: time.Millisecond})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	<-l.calls // the first refresh, at once
	l.answers <- answer{tags: map[string]relabel.Tag{}}
	base := relabel.New(relabel.Selection{Services: map[relabel.Service]relabel.Metrics{tagged.Service: relabel.StatusCode}})
	line := []byte(`kong_http_requests_total{service="httproute.kong.command.0",code="200"} 1`)

	// The Admin API answers the nudged refresh only after the scrape is
	// done: a scrape that waited on it would never be done.
	p := r.Rewriter(base).NewPage()
	scraped := make(chan []byte, 1)
	go func() { scraped <- p.AppendLine(nil, line) }()
	select {
	case out := <-scraped:
		if len(out) != 0 {
			t.Fatalf("kept %q before the service is known", out)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the scrape waits on the Admin API")
	}
	<-l.calls // the nudged refresh
	l.answers <- answer{tags: map[string]relabel.Tag{"httproute.kong.command.0": tagged}}
	waitVersion(t, r, 1)
	if out := r.Rewriter(base).NewPage().AppendLine(nil, line); !strings.Contains(string(out), `kubernetes_name="command"`) {
		t.Fatalf("after the refresh: %q", out)
	}
}

// waitVersion waits for the Refresher to publish version v.
func waitVersion(t *testing.T, r *Refresher, v uint64) {
	t.Helper()
	waitFor(t, fmt.Sprintf("version %d", v), func() bool { return r.Mapping().Version >= v })
}

// waitFor polls a condition the code under test makes true, with a
// deadline that only turns a hang into a failure, rather than sleeping a
// guessed time.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestRedirectNotFollowed: a redirect from the Admin API is a status
// error; its target never gets a request, so never the token.
func TestRedirectNotFollowed(t *testing.T) {
	sim := simulator(t, "kong/command:80")
	var reached atomic.Int32
	var tokens atomic.Int32
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached.Add(1)
		if r.Header.Get("Kong-Admin-Token") != "" {
			tokens.Add(1)
		}
		sim.AdminHandler(kongsim.AdminOptions{}).ServeHTTP(w, r)
	}))
	defer target.Close()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL+r.URL.RequestURI(), http.StatusTemporaryRedirect)
	}))
	defer srv.Close()
	c, err := NewClient(ClientOptions{URL: srv.URL, Token: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	c.hc.Transport.(*http.Transport).TLSClientConfig.RootCAs = srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	_, err = c.Services(t.Context())
	checkKind(t, err, KindStatus)
	if reached.Load() != 0 || tokens.Load() != 0 {
		t.Errorf("the redirect's plain-http target got %d requests, %d with the token; want none", reached.Load(), tokens.Load())
	}
}
