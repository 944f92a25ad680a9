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
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/filewatch"
	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/lastgood"
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
	// The files are followed for changes (see filewatch) while
	// FollowFiles runs; the last good ones stay in use.
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

	ca   *loaded[*x509.CertPool]   // nil without a CA file
	pair *loaded[*tls.Certificate] // nil without a client certificate
}

// FollowFiles keeps the CA and the client certificate in step with their
// files until ctx is done, and returns then; without it the files NewClient
// loaded stay in use. A file that does not load is logged once, as long as
// it stays so, and the last good one stays in use. Call it once, beside
// the Refresher's Run; it returns at once for a Client without files.
func (c *Client) FollowFiles(ctx context.Context, logger *slog.Logger) {
	var wg sync.WaitGroup
	if c.ca != nil {
		wg.Go(func() { c.ca.follow(ctx, logger) })
	}
	if c.pair != nil {
		wg.Go(func() { c.pair.follow(ctx, logger) })
	}
	wg.Wait()
}

// maxPages bounds one listing, so an Admin API that keeps answering with a
// next page cannot hold the refresher forever.
const maxPages = 10000

// The bounds of one refresh, and so of the memory of the mapping it
// builds: an Admin API past them is an error (kind decode), and the last
// mapping stays in use. Kong's pages of 1,000 services with KIC's tags are
// about 1 MB; a mapping of MaxServices takes some 20 MiB.
const (
	// MaxServices is the most Kong services one refresh keeps.
	MaxServices = 20000
	// MaxPageBytes bounds one page of GET /services.
	MaxPageBytes = 8 << 20
	// MaxRefreshBytes bounds the pages of one refresh together.
	MaxRefreshBytes = 32 << 20
)

// NewClient returns a Client for o.
func NewClient(o ClientOptions) (*Client, error) {
	base, err := url.Parse(o.URL)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // not the URL, which may hold a password
		}
		return nil, fmt.Errorf("kong admin url: %w", err)
	}
	if base.Scheme != "http" && base.Scheme != "https" || base.Host == "" {
		return nil, fmt.Errorf("kong admin url %q: want an absolute http or https URL", base.Redacted())
	}
	if (o.CertFile == "") != (o.KeyFile == "") {
		return nil, errors.New("kong admin client certificate: the certificate and key files go together")
	}
	if o.PageSize <= 0 {
		o.PageSize = 1000
	}
	c := &Client{base: base, token: o.Token, pageSize: o.PageSize}
	if o.CAFile != "" {
		c.ca = newLoaded("CA", []string{o.CAFile}, func(f []filewatch.File) (*x509.CertPool, error) {
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(f[0].Data) {
				return nil, fmt.Errorf("%s holds no PEM certificate", o.CAFile)
			}
			return pool, nil
		})
	}
	if o.CertFile != "" {
		c.pair = newLoaded("client certificate", []string{o.CertFile, o.KeyFile}, func(f []filewatch.File) (*tls.Certificate, error) {
			pair, err := tls.X509KeyPair(f[0].Data, f[1].Data)
			return &pair, err
		})
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsConfig(c.ca, c.pair, base.Hostname())
	tr.MaxIdleConnsPerHost = 1
	// Redirects are not followed: the Admin API never sends one, and
	// following it would send Kong-Admin-Token to wherever it points, even
	// from https to plain http. A redirect is a status error.
	c.hc = &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return c, nil
}

// tlsConfig builds the TLS configuration of the Admin API connections:
// each handshake uses the last good CA and client certificate loaded.
func tlsConfig(ca *loaded[*x509.CertPool], pair *loaded[*tls.Certificate], host string) *tls.Config {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if ca != nil {
		// Verification is done in VerifyConnection against the CA as it is
		// now, which a static RootCAs could not follow.
		cfg.InsecureSkipVerify = true
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			pool, err := ca.get()
			if err != nil {
				return err
			}
			if len(cs.PeerCertificates) == 0 {
				return errors.New("the Admin API sent no certificate")
			}
			opts := x509.VerifyOptions{Roots: pool, DNSName: host, Intermediates: x509.NewCertPool()}
			for _, c := range cs.PeerCertificates[1:] {
				opts.Intermediates.AddCert(c)
			}
			_, err = cs.PeerCertificates[0].Verify(opts)
			return err
		}
	}
	if pair != nil {
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return pair.get() }
	}
	return cfg
}

// filesError is a CA or client certificate file that does not load.
type filesError struct {
	paths []string
	err   error
}

func (e *filesError) Error() string {
	return fmt.Sprintf("loading %s: %v", strings.Join(e.paths, ", "), e.err)
}
func (e *filesError) Unwrap() error { return e.err }

// loaded is a value loaded from files: the last good one, or, until one
// loaded, why none did. get is safe for concurrent use; update is called by
// one goroutine at a time (NewClient's, then follow's).
type loaded[T any] struct {
	what  string
	paths []string
	load  func([]filewatch.File) (T, error)
	value lastgood.Keeper[T]
}

// newLoaded loads the value from paths now; a failure is the handshakes'
// error until the files load.
func newLoaded[T any](what string, paths []string, load func([]filewatch.File) (T, error)) *loaded[T] {
	l := &loaded[T]{what: what, paths: paths, load: load}
	_, _ = l.update(filewatch.Read(paths...))
	return l
}

// get returns the last good value, or the error of the last load while
// there is none.
func (l *loaded[T]) get() (T, error) { return l.value.Get() }

// follow updates the value whenever its files change, until ctx is done.
func (l *loaded[T]) follow(ctx context.Context, logger *slog.Logger) {
	filewatch.New(filewatch.Options{Paths: l.paths, What: "Admin API " + l.what, Logger: logger}, func(c filewatch.Content) error {
		if outcome, err := l.update(c); outcome == lastgood.Rejected {
			logger.Warn("the Admin API "+l.what+" does not load; keeping the last good one", "err", err)
		}
		return nil
	}).Run(ctx)
}

// update loads the value from c unless c is the content in use or the
// bad content tried last. A failure keeps the last good value.
func (l *loaded[T]) update(c filewatch.Content) (lastgood.Outcome, error) {
	return l.value.Offer(c.Key(), func() (T, error) {
		err := c.Err()
		var v T
		if err == nil {
			v, err = l.load(c.Files)
		}
		if err != nil {
			return v, &filesError{paths: l.paths, err: err}
		}
		return v, nil
	})
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
	budget := int64(MaxRefreshBytes) // what the pages still to come may take together
	for range maxPages {
		p, err := c.page(ctx, offset, &budget)
		if err != nil {
			return nil, err
		}
		for _, s := range p.Data {
			if s.Name != nil {
				tags[*s.Name] = parseTags(s.Tags)
			}
		}
		if len(tags) > MaxServices {
			return nil, &Error{Kind: KindDecode, Err: fmt.Errorf("more than %d services", MaxServices)}
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

// page reads one page of GET /services, of at most MaxPageBytes and
// *budget bytes, and takes what it read off *budget.
func (c *Client) page(ctx context.Context, offset string, budget *int64) (*page, error) {
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
	limit := min(int64(MaxPageBytes), *budget)
	body := &io.LimitedReader{R: resp.Body, N: limit + 1}
	var p page
	err = json.NewDecoder(body).Decode(&p)
	*budget -= limit + 1 - body.N
	if body.N <= 0 {
		return nil, &Error{Kind: KindDecode, Err: fmt.Errorf("GET %s: a page of more than %d bytes, or pages of more than %d bytes together", u.Path, MaxPageBytes, MaxRefreshBytes)}
	}
	if err != nil {
		kind := KindDecode
		if ctx.Err() != nil {
			kind = KindTimeout
		}
		return nil, &Error{Kind: kind, Err: fmt.Errorf("decoding GET %s: %w", u.Path, err)}
	}
	return &p, nil
}

// classify tells a failed round trip's kind by the types of the errors it
// wraps, never by their text. A handshake that crypto/tls ends with an
// error of no type of its own (a protocol version or cipher suite the
// two sides do not share) counts as connect.
func classify(ctx context.Context, err error) string {
	var (
		netErr     net.Error
		opErr      *net.OpError
		files      *filesError
		verify     *tls.CertificateVerificationError
		record     tls.RecordHeaderError
		alert      tls.AlertError
		unknownCA  x509.UnknownAuthorityError
		hostname   x509.HostnameError
		invalid    x509.CertificateInvalidError
		constraint x509.ConstraintViolationError
		system     x509.SystemRootsError
	)
	switch {
	case ctx.Err() != nil, errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		return KindTimeout
	case errors.As(err, &files),
		errors.As(err, &verify), errors.As(err, &record), errors.As(err, &alert),
		errors.As(err, &unknownCA), errors.As(err, &hostname), errors.As(err, &invalid),
		errors.As(err, &constraint), errors.As(err, &system),
		// An alert the Admin API sent, such as "certificate required", or
		// one sent to it: crypto/tls returns them as the net.OpError of a
		// "remote error" or a "local error".
		errors.As(err, &opErr) && (opErr.Op == "remote error" || opErr.Op == "local error"):
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
