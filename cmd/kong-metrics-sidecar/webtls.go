package main

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"sync"

	"github.com/prometheus/exporter-toolkit/web"
	"go.yaml.in/yaml/v3"
	"golang.org/x/sys/unix"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/filewatch"
)

// webTLS serves TLS for the sidecar when SIDECAR_WEB_CONFIG_FILE asks for
// it, in place of exporter-toolkit, so that the last good certificate
// stays in use: exporter-toolkit reads the certificate for every new
// connection and fails the handshake when the file is torn (a rotation
// caught half way), and then the HTTPS liveness probe restarts the
// sidecar. As exporter-toolkit does, each handshake reads the web
// configuration file and the certificate anew, so rotations are picked up
// at once; what does not load is logged and the last good configuration
// serves.
//
// exporter-toolkit still does everything else the file says (basic auth,
// the rate limit): it reads a copy of the file without tls_server_config,
// held in memory (a memfd, since the root filesystem is read-only), which
// each handshake brings up to date.
type webTLS struct {
	path   string
	logger *slog.Logger
	fd     int // the memfd of the copy, at a fixed number

	mu     sync.Mutex
	sum    [sha256.Size]byte // of the file the copy was made from
	last   *tls.Config       // the last configuration that loaded, with its certificate
	failed string            // the last failure logged, so that it is logged once
}

// errNoTLS is newWebTLS's error when the file asks for no TLS.
var errNoTLS = errors.New("no tls_server_config")

// newWebTLS loads the web configuration file at path. It fails with
// errNoTLS when the file asks for no TLS, or when the file or its
// certificate does not load; exporter-toolkit then serves the file as
// before.
func newWebTLS(path string, logger *slog.Logger) (*webTLS, error) {
	fd, err := unix.MemfdCreate("kong-metrics-sidecar-web-config", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("web configuration copy: %w", err)
	}
	w := &webTLS{path: path, logger: logger, fd: fd}
	cfg, err := w.load(nil)
	if err != nil {
		_ = unix.Close(fd)
		return nil, err
	}
	w.last = cfg
	return w, nil
}

// copyPath is the path of the copy of the file that exporter-toolkit reads.
func (w *webTLS) copyPath() string { return fmt.Sprintf("/proc/self/fd/%d", w.fd) }

// listen returns ln with TLS on it.
func (w *webTLS) listen(ln net.Listener) net.Listener {
	return tls.NewListener(ln, &tls.Config{
		MinVersion:         tls.VersionTLS12,
		GetConfigForClient: w.configForClient,
	})
}

// configForClient is the configuration of one handshake: the file's as it
// is now, or the last good one when it does not load.
func (w *webTLS) configForClient(hello *tls.ClientHelloInfo) (*tls.Config, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	cfg, err := w.load(hello)
	if err != nil {
		if msg := err.Error(); msg != w.failed {
			w.failed = msg
			w.logger.Warn("the web configuration or its certificate does not load; serving the last good one", "path", w.path, "err", err)
		}
		return w.last, nil
	}
	w.failed = ""
	w.last = cfg
	return cfg, nil
}

// load reads the file, brings the copy up to date, and returns its TLS
// configuration with the certificate it names loaded once.
func (w *webTLS) load(hello *tls.ClientHelloInfo) (*tls.Config, error) {
	data, err := filewatch.ReadFile(w.path)
	if err != nil {
		return nil, err
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("%s: %w", w.path, err)
	}
	var tlsNode *yaml.Node
	rest := &yaml.Node{Kind: yaml.MappingNode}
	if len(root.Content) == 1 && root.Content[0].Kind == yaml.MappingNode {
		m := root.Content[0]
		for i := 0; i+1 < len(m.Content); i += 2 {
			if m.Content[i].Value == "tls_server_config" {
				tlsNode = m.Content[i+1]
				continue
			}
			rest.Content = append(rest.Content, m.Content[i], m.Content[i+1])
		}
	}
	if tlsNode == nil || tlsNode.Kind != yaml.MappingNode || len(tlsNode.Content) == 0 {
		return nil, errNoTLS
	}
	var tc web.TLSConfig
	if err := tlsNode.Decode(&tc); err != nil {
		return nil, fmt.Errorf("%s: tls_server_config: %w", w.path, err)
	}
	tc.SetDirectory(filepath.Dir(w.path))
	cfg, err := web.ConfigToTLSConfig(&tc)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", w.path, err)
	}
	cert, err := cfg.GetCertificate(hello)
	if err != nil {
		return nil, err
	}
	cfg.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return cert, nil }
	cfg.NextProtos = []string{"http/1.1"}
	if sum := sha256.Sum256(data); sum != w.sum {
		if err := w.writeCopy(rest); err != nil {
			return nil, err
		}
		w.sum = sum
	}
	return cfg, nil
}

// writeCopy replaces the copy's content with rest, at once: a new memfd
// takes the copy's fd number.
func (w *webTLS) writeCopy(rest *yaml.Node) error {
	var buf bytes.Buffer
	if len(rest.Content) > 0 {
		if err := yaml.NewEncoder(&buf).Encode(rest); err != nil {
			return fmt.Errorf("web configuration copy: %w", err)
		}
	}
	fd, err := unix.MemfdCreate("kong-metrics-sidecar-web-config", unix.MFD_CLOEXEC)
	if err != nil {
		return fmt.Errorf("web configuration copy: %w", err)
	}
	defer func() { _ = unix.Close(fd) }() // Dup3 made its own reference
	for b := buf.Bytes(); len(b) > 0; {
		n, err := unix.Write(fd, b)
		if err != nil {
			return fmt.Errorf("web configuration copy: %w", err)
		}
		b = b[n:]
	}
	if err := unix.Dup3(fd, w.fd, unix.O_CLOEXEC); err != nil {
		return fmt.Errorf("web configuration copy: %w", err)
	}
	return nil
}
