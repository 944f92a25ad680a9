package inject

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
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

// CertReloader serves the certificate in a pair of files and reloads it
// when they change, for example when cert-manager renews it and the kubelet
// updates the Secret volume, so that no restart is needed. A pair that does
// not load (a half-written update, a key that does not match) is logged and
// counted, and the previous certificate stays in use.
type CertReloader struct {
	opts CertReloaderOptions
	cert atomic.Pointer[tls.Certificate]
	// lastAttempt is the hash of the pair last tried, so that an unchanged
	// broken pair is reported once, not on every poll. Only the goroutine
	// that calls NewCertReloader and then Run uses it.
	lastAttempt [sha256.Size]byte
}

// NewCertReloader loads the pair, and fails if it does not load.
func NewCertReloader(opts CertReloaderOptions) (*CertReloader, error) {
	if opts.PollInterval <= 0 {
		opts.PollInterval = time.Minute
	}
	c := &CertReloader{opts: opts}
	if err := c.reload(); err != nil {
		return nil, err
	}
	return c, nil
}

// GetCertificate returns the current certificate; it is meant for
// tls.Config.GetCertificate, so that each new connection gets the latest.
// It is safe for concurrent use.
func (c *CertReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return c.cert.Load(), nil
}

// Run reloads the pair whenever a file in their directories changes, and
// every PollInterval, until ctx is done; then it returns nil. Call it once.
//
// It watches the directories, not the files: the kubelet updates a Secret
// volume by swapping a "..data" symlink, which replaces the files without
// writing to them.
func (c *CertReloader) Run(ctx context.Context) error {
	var events <-chan fsnotify.Event
	var errs <-chan error
	if w := c.watch(); w != nil {
		defer w.Close()
		events, errs = w.Events, w.Errors
	}
	poll := time.NewTicker(c.opts.PollInterval)
	defer poll.Stop()
	// Writes come in bursts (the kubelet's swap, or a cert and a key
	// written one after the other): load once they settle.
	settle := time.NewTimer(time.Hour)
	settle.Stop()
	defer settle.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			c.opts.Logger.Debug("Certificate directory changed", "event", ev.String())
			settle.Reset(100 * time.Millisecond)
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			c.opts.Logger.Warn("Watching the certificate files; polling continues", "err", err)
		case <-settle.C:
			_ = c.reload() // reload logs and counts its errors
		case <-poll.C:
			_ = c.reload()
		}
	}
}

// watch starts watching the files' directories. Without a watcher (inotify
// limits reached, say) polling alone picks up changes.
func (c *CertReloader) watch() *fsnotify.Watcher {
	if c.opts.noWatch {
		return nil
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		c.opts.Logger.Warn("Cannot watch the certificate files; polling only", "interval", c.opts.PollInterval, "err", err)
		return nil
	}
	dirs := []string{filepath.Dir(c.opts.CertFile)}
	if d := filepath.Dir(c.opts.KeyFile); d != dirs[0] {
		dirs = append(dirs, d)
	}
	for _, d := range dirs {
		if err := w.Add(d); err != nil {
			c.opts.Logger.Warn("Cannot watch a certificate directory; polling only", "dir", d, "interval", c.opts.PollInterval, "err", err)
		}
	}
	return w
}

// reload loads the pair if it differs from the last one tried.
func (c *CertReloader) reload() error {
	certPEM, certErr := os.ReadFile(c.opts.CertFile)
	keyPEM, keyErr := os.ReadFile(c.opts.KeyFile)
	readErr := errors.Join(certErr, keyErr)
	sum := sha256.Sum256(bytes.Join([][]byte{certPEM, keyPEM}, []byte{0}))
	if readErr != nil {
		sum = sha256.Sum256([]byte(readErr.Error()))
	}
	if sum == c.lastAttempt && c.cert.Load() != nil {
		return nil
	}
	c.lastAttempt = sum
	if readErr != nil {
		return c.failed(fmt.Errorf("reading the TLS pair: %w", readErr))
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return c.failed(fmt.Errorf("loading the TLS pair %s and %s: %w", c.opts.CertFile, c.opts.KeyFile, err))
	}
	if cert.Leaf == nil {
		return c.failed(errors.New("BUG: tls.X509KeyPair left Leaf empty"))
	}
	c.cert.Store(&cert)
	c.opts.Metrics.observeTLSLoad(cert.Leaf.NotAfter, nil)
	c.opts.Logger.Info("Loaded the serving certificate", "file", c.opts.CertFile, "serial", cert.Leaf.SerialNumber.String(),
		"dnsNames", cert.Leaf.DNSNames, "notAfter", cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
	return nil
}

func (c *CertReloader) failed(err error) error {
	c.opts.Metrics.observeTLSLoad(time.Time{}, err)
	if c.cert.Load() != nil {
		c.opts.Logger.Warn("Keeping the previous serving certificate", "err", err)
	}
	return err
}
