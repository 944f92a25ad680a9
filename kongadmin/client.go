// Package kongadmin reads Kong services and the tags the Kong Ingress
// Controller puts on them (k8s-kind, k8s-namespace, k8s-name, …) from Kong's
// Admin API, in the background, and publishes what they say as an
// immutable mapping that the relabel package resolves with.
//
// Scrapes never wait on the Admin API: they use the last mapping the
// Refresher published.
package kongadmin

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/relabel"
)

// The kinds of refresh error, the values of refresh_errors_total's kind label.
const (
	KindConnect = "connect" // refused, DNS, reset
	KindTLS     = "tls"     // handshake, certificate verification, unreadable certificate files
	KindTimeout = "timeout" // the refresh timeout passed
	KindStatus  = "status"  // an HTTP status other than 200
	KindDecode  = "decode"  // a body that is not Kong's JSON
)

// ErrorKinds lists every kind of refresh error.
var ErrorKinds = []string{KindConnect, KindTLS, KindTimeout, KindStatus, KindDecode}

// Error is a failed read of the Admin API.
type Error struct {
	Kind string // one of ErrorKinds
	Err  error
}

func (e *Error) Error() string { return "kong admin api (" + e.Kind + "): " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// ClientOptions configure a Client.
type ClientOptions struct {
	// URL is the Admin API's base URL, e.g. https://127.0.0.1:8444.
	URL string
	// CAFile verifies the Admin API's certificate (empty: system roots).
	// CertFile and KeyFile are a client certificate (both or neither).
	// The files are re-read when their size or modification time changes.
	CAFile, CertFile, KeyFile string
	// Token is sent as the Kong-Admin-Token header when not empty.
	Token string
	// PageSize is the size parameter of each page (default 1000, Kong's maximum).
	PageSize int
}

// Client lists Kong services. It is safe for concurrent use.
type Client struct {
	base     *url.URL
	token    string
	pageSize int
	hc       *http.Client
}

// maxPages bounds one listing, so an Admin API that keeps answering with a
// next page cannot hold the refresher forever.
const maxPages = 10000

// NewClient returns a Client for o.
func NewClient(o ClientOptions) (*Client, error) {
	base, err := url.Parse(o.URL)
	if err != nil {
		return nil, fmt.Errorf("kong admin url: %w", err)
	}
	if base.Scheme != "http" && base.Scheme != "https" || base.Host == "" {
		return nil, fmt.Errorf("kong admin url %q: want an absolute http or https URL", o.URL)
	}
	if (o.CertFile == "") != (o.KeyFile == "") {
		return nil, errors.New("kong admin client certificate: the certificate and key files go together")
	}
	if o.PageSize <= 0 {
		o.PageSize = 1000
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsConfig(o, base.Hostname())
	tr.MaxIdleConnsPerHost = 1
	return &Client{base: base, token: o.Token, pageSize: o.PageSize, hc: &http.Client{Transport: tr}}, nil
}

// tlsConfig loads the CA and the client certificate from their files on
// each handshake that finds them changed, keeping the last good ones.
func tlsConfig(o ClientOptions, host string) *tls.Config {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.CAFile != "" {
		ca := &watchedFile[*x509.CertPool]{paths: []string{o.CAFile}, load: func(b [][]byte) (*x509.CertPool, error) {
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(b[0]) {
				return nil, fmt.Errorf("%s holds no PEM certificate", o.CAFile)
			}
			return pool, nil
		}}
		// Verification is done in VerifyConnection against the CA as it is
		// now, which a static RootCAs could not follow.
		cfg.InsecureSkipVerify = true
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			pool, err := ca.get()
			if err != nil {
				return err
			}
			if len(cs.PeerCertificates) == 0 {
				return errors.New("tls: the Admin API sent no certificate")
			}
			opts := x509.VerifyOptions{Roots: pool, DNSName: host, Intermediates: x509.NewCertPool()}
			for _, c := range cs.PeerCertificates[1:] {
				opts.Intermediates.AddCert(c)
			}
			_, err = cs.PeerCertificates[0].Verify(opts)
			return err
		}
	}
	if o.CertFile != "" {
		pair := &watchedFile[*tls.Certificate]{paths: []string{o.CertFile, o.KeyFile}, load: func(b [][]byte) (*tls.Certificate, error) {
			c, err := tls.X509KeyPair(b[0], b[1])
			return &c, err
		}}
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return pair.get() }
	}
	return cfg
}

// watchedFile is a value loaded from files, loaded again when one of them
// changes size or modification time. A failed load keeps the last good value.
type watchedFile[T any] struct {
	paths []string
	load  func([][]byte) (T, error)

	mu    sync.Mutex // Protects the fields below.
	stamp string
	value T
	ok    bool
}

func (w *watchedFile[T]) get() (T, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var stamp strings.Builder
	for _, p := range w.paths {
		fi, err := os.Stat(p)
		if err != nil {
			return w.fallback(fmt.Errorf("tls: %w", err))
		}
		fmt.Fprintf(&stamp, "%d/%d;", fi.Size(), fi.ModTime().UnixNano())
	}
	if w.ok && stamp.String() == w.stamp {
		return w.value, nil
	}
	data := make([][]byte, len(w.paths))
	for i, p := range w.paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return w.fallback(fmt.Errorf("tls: %w", err))
		}
		data[i] = b
	}
	v, err := w.load(data)
	if err != nil {
		return w.fallback(fmt.Errorf("tls: loading %s: %w", strings.Join(w.paths, ", "), err))
	}
	w.value, w.ok, w.stamp = v, true, stamp.String()
	return v, nil
}

func (w *watchedFile[T]) fallback(err error) (T, error) {
	if w.ok {
		return w.value, nil
	}
	var zero T
	return zero, err
}

// page is one page of GET /services.
type page struct {
	Data []struct {
		Name *string  `json:"name"`
		Tags []string `json:"tags"`
	} `json:"data"`
	Next   *string `json:"next"`
	Offset *string `json:"offset"`
}

// Services reads every Kong service, following the pages, and returns
// what each one's tags say, by Kong service name. Untagged services map to
// a zero Tag. The error is an *Error.
func (c *Client) Services(ctx context.Context) (map[string]relabel.Tag, error) {
	tags := map[string]relabel.Tag{}
	offset := ""
	for range maxPages {
		p, err := c.page(ctx, offset)
		if err != nil {
			return nil, err
		}
		for _, s := range p.Data {
			if s.Name != nil {
				tags[*s.Name] = parseTags(s.Tags)
			}
		}
		offset = ""
		if p.Offset != nil {
			offset = *p.Offset
		} else if p.Next != nil {
			if u, err := url.Parse(*p.Next); err == nil {
				offset = u.Query().Get("offset")
			}
		}
		if offset == "" || p.Next == nil && p.Offset == nil {
			return tags, nil
		}
	}
	return nil, &Error{Kind: KindDecode, Err: fmt.Errorf("more than %d pages", maxPages)}
}

func (c *Client) page(ctx context.Context, offset string) (*page, error) {
	u := c.base.JoinPath("services")
	q := url.Values{"size": {fmt.Sprint(c.pageSize)}}
	if offset != "" {
		q.Set("offset", offset)
	}
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, &Error{Kind: KindConnect, Err: err}
	}
	req.Header.Set("Accept", "application/json")
	if c.token != "" {
		req.Header.Set("Kong-Admin-Token", c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, &Error{Kind: classify(ctx, err), Err: err}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return nil, &Error{Kind: KindStatus, Err: fmt.Errorf("GET %s: %s", u.Path, resp.Status)}
	}
	var p page
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&p); err != nil {
		kind := KindDecode
		if ctx.Err() != nil {
			kind = KindTimeout
		}
		return nil, &Error{Kind: kind, Err: fmt.Errorf("decoding GET %s: %w", u.Path, err)}
	}
	return &p, nil
}

func classify(ctx context.Context, err error) string {
	var netErr net.Error
	var verifyErr *tls.CertificateVerificationError
	var recordErr tls.RecordHeaderError
	var unknownCA x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	switch {
	case ctx.Err() != nil, errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		return KindTimeout
	case errors.As(err, &verifyErr), errors.As(err, &recordErr), errors.As(err, &unknownCA), errors.As(err, &hostErr),
		strings.Contains(err.Error(), "tls:"), strings.Contains(err.Error(), "x509:"):
		return KindTLS
	}
	return KindConnect
}

// parseTags reads the tags KIC writes: k8s-kind:<kind>, k8s-namespace:<ns>,
// k8s-name:<name>. A Service whose names are not valid Kubernetes names
// counts as untagged, so the naming rules get their turn.
func parseTags(tags []string) relabel.Tag {
	var t relabel.Tag
	for _, tag := range tags {
		k, v, ok := strings.Cut(tag, ":")
		if !ok {
			continue
		}
		switch k {
		case "k8s-kind":
			t.Kind = v
		case "k8s-namespace":
			t.Service.Namespace = v
		case "k8s-name":
			t.Service.Name = v
		}
	}
	if t.Kind == "Service" && (!relabel.IsNamespaceName(t.Service.Namespace) || !relabel.IsServiceName(t.Service.Name)) {
		return relabel.Tag{}
	}
	return t
}
