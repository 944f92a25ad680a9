package inject

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/filewatch"
	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/lastgood"
)

// CertReloaderOptions configure a CertReloader.
type CertReloaderOptions struct {
	// CertFile and KeyFile are the PEM serving certificate (chain allowed)
	// and its private key.
	CertFile, KeyFile string
	// PollInterval is how often the files are re-read in case a file event
	// was missed; 0 means one minute.
	PollInterval time.Duration
	// Logger and Metrics are required.
	Logger  *slog.Logger
	Metrics *Metrics

	noWatch bool // tests set it to exercise polling alone
}

// certDebounce is how long the certificate files must stay quiet, and then
// unchanged, before they are loaded: the kubelet's swap, or a certificate
// and a key written one after the other, come in bursts.
const certDebounce = 100 * time.Millisecond

// CertReloader serves the certificate in a pair of files and reloads it
// when they change, for example when cert-manager renews it and the kubelet
// updates the Secret volume, so that no restart is needed. It follows the
// files with a filewatch.Watcher, so a pair is loaded only once it has
// settled. A pair that does not load (a key that does not match) is logged
// and counted, and the previous certificate stays in use.
type CertReloader struct {
	opts CertReloaderOptions
	cert lastgood.Keeper[*tls.Certificate] // an unchanged broken pair is reported once
	fw   *filewatch.Watcher
}

// NewCertReloader loads the pair, and fails if it does not load.
func NewCertReloader(opts CertReloaderOptions) (*CertReloader, error) {
	if opts.PollInterval <= 0 {
		opts.PollInterval = time.Minute
	}
	c := &CertReloader{opts: opts}
	c.fw = filewatch.New(filewatch.Options{
		Paths:        []string{opts.CertFile, opts.KeyFile},
		PollInterval: opts.PollInterval,
		Debounce:     certDebounce,
		What:         "serving certificate",
		Logger:       opts.Logger,
		NoEvents:     opts.noWatch,
	}, c.load)
	if err := c.reload(); err != nil {
		return nil, err
	}
	return c, nil
}

// GetCertificate returns the current certificate; it is meant for
// tls.Config.GetCertificate, so that each new connection gets the latest.
// It is safe for concurrent use.
func (c *CertReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	cert, _ := c.cert.Get() // NewCertReloader loaded one
	return cert, nil
}

// Run reloads the pair whenever it changes on disk, and re-reads it every
// PollInterval, until ctx is done; then it returns nil. Call it once.
func (c *CertReloader) Run(ctx context.Context) error {
	c.fw.Run(ctx)
	return nil
}

// reload reads the pair now and loads it if it differs from the last one
// tried.
func (c *CertReloader) reload() error {
	return c.load(filewatch.Read(c.opts.CertFile, c.opts.KeyFile))
}

// load loads the pair read in content unless it is the pair in use or
// the broken pair tried last, and returns why it did not load, once per
// broken pair.
func (c *CertReloader) load(content filewatch.Content) error {
	outcome, err := c.cert.Offer(content.Key(), func() (*tls.Certificate, error) {
		if err := content.Err(); err != nil {
			return nil, fmt.Errorf("reading the TLS pair: %w", err)
		}
		cert, err := tls.X509KeyPair(content.Files[0].Data, content.Files[1].Data)
		if err != nil {
			return nil, fmt.Errorf("loading the TLS pair %s and %s: %w", c.opts.CertFile, c.opts.KeyFile, err)
		}
		if cert.Leaf == nil {
			return nil, errors.New("BUG: tls.X509KeyPair left Leaf empty")
		}
		return &cert, nil
	})
	switch outcome {
	case lastgood.Loaded:
		cert, _ := c.cert.Get()
		c.opts.Metrics.observeTLSLoad(cert.Leaf.NotAfter, nil)
		c.opts.Logger.Info("loaded the serving certificate", "file", c.opts.CertFile, "serial", cert.Leaf.SerialNumber.String(),
			"dns_names", cert.Leaf.DNSNames, "not_after", cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
	case lastgood.Rejected:
		c.opts.Metrics.observeTLSLoad(time.Time{}, err)
		if c.cert.Has() {
			c.opts.Logger.Warn("keeping the previous serving certificate", "err", err)
		}
	case lastgood.Repeated:
		return nil // reported when it was new
	}
	return err
}
