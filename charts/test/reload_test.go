package test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/inject"
)

// secretVolume lays out a Secret's keys as the kubelet does in a Secret
// volume: a timestamped directory, a ..data symlink to it, and one symlink
// per key through ..data. A later write swaps ..data atomically.
type secretVolume struct {
	dir string
	gen int
}

func (v *secretVolume) write(t *testing.T, s *corev1.Secret) {
	t.Helper()
	v.gen++
	data := fmt.Sprintf("..gen%d", v.gen)
	if err := os.Mkdir(filepath.Join(v.dir, data), 0o755); err != nil {
		t.Fatal(err)
	}
	for k, b := range s.Data {
		if err := os.WriteFile(filepath.Join(v.dir, data, k), b, 0o600); err != nil {
			t.Fatal(err)
		}
		if v.gen == 1 {
			if err := os.Symlink(filepath.Join("..data", k), filepath.Join(v.dir, k)); err != nil {
				t.Fatal(err)
			}
		}
	}
	tmp := filepath.Join(v.dir, "..data_tmp")
	if err := os.Symlink(data, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(v.dir, "..data")); err != nil {
		t.Fatal(err)
	}
}

// TestInjectorServesChartCertificate runs the injector's own certificate
// reloader on the chart's generated Secret, laid out as the kubelet mounts
// it, and dials it as the API server does (the Service's name, the
// webhook's caBundle). An upgrade that renews the serving certificate
// swaps the volume; the same reloader then serves the new certificate,
// still trusted by the unchanged caBundle, without a restart.
func TestInjectorServesChartCertificate(t *testing.T) {
	install := render(t, "", renderOptions{})
	first := selfSignedOf(t, install)
	in := injectorOf(t, install)
	serverName := serviceDNSNames(in.service)[0]

	vol := &secretVolume{dir: t.TempDir()}
	vol.write(t, first.tls)
	reloader, err := inject.NewCertReloader(inject.CertReloaderOptions{
		CertFile: filepath.Join(vol.dir, "tls.crt"),
		KeyFile:  filepath.Join(vol.dir, "tls.key"),
		Logger:   slog.New(slog.DiscardHandler),
		Metrics:  inject.NewMetrics(prometheus.NewRegistry()),
	})
	if err != nil {
		t.Fatalf("the injector does not load the chart's certificate: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- reloader.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})

	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{GetCertificate: reloader.GetCertificate, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				_ = c.(*tls.Conn).Handshake()
				_ = c.Close()
			}()
		}
	}()

	dial := func(caBundle []byte) (*x509.Certificate, error) {
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(caBundle) {
			t.Fatal("no certificate in the caBundle")
		}
		d := &tls.Dialer{Config: &tls.Config{RootCAs: roots, ServerName: serverName, MinVersion: tls.VersionTLS12}}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		c, err := d.DialContext(ctx, "tcp", ln.Addr().String())
		if err != nil {
			return nil, err
		}
		defer func() { _ = c.Close() }()
		return c.(*tls.Conn).ConnectionState().PeerCertificates[0], nil
	}

	served, err := dial(first.caBundle)
	if err != nil {
		t.Fatalf("a client trusting the webhook's caBundle cannot reach %s: %v", serverName, err)
	}
	if !served.Equal(parseCert(t, first.tls.Data["tls.crt"])) {
		t.Fatal("the injector does not serve the chart's certificate")
	}

	// The upgrade that renews the serving certificate.
	renewed := selfSignedOf(t, render(t, "", renderOptions{
		upgrade: true,
		cluster: clusterAfter(install, setNotAfter(first.tls.Name, time.Now().Add(renewBefore-24*time.Hour))),
	}))
	if !bytes.Equal(renewed.caBundle, first.caBundle) {
		t.Fatal("renewing the serving certificate changed the caBundle")
	}
	newLeaf := parseCert(t, renewed.tls.Data["tls.crt"])
	vol.write(t, renewed.tls)

	// Wait for the reloader to take the swap (file events; it polls as a
	// fallback). The deadline only turns a hang into a failure.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		c, err := reloader.GetCertificate(nil)
		if err != nil {
			t.Fatal(err)
		}
		if c.Leaf != nil && c.Leaf.Equal(newLeaf) || c.Leaf == nil && bytes.Equal(c.Certificate[0], newLeaf.Raw) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the injector never served the renewed certificate")
		}
		time.Sleep(20 * time.Millisecond)
	}
	served, err = dial(first.caBundle)
	if err != nil {
		t.Fatalf("after the renewal, a client trusting the same caBundle: %v", err)
	}
	if !served.Equal(newLeaf) {
		t.Error("the injector serves the old certificate after the renewal")
	}
	var unknown x509.UnknownAuthorityError
	if _, err := dial(otherInstallCA(t)); !errors.As(err, &unknown) {
		t.Errorf("a client trusting another CA: err = %v, want an unknown authority", err)
	}
}

// otherInstallCA is the CA of another install of the chart.
func otherInstallCA(t *testing.T) []byte {
	t.Helper()
	return selfSignedOf(t, render(t, "", renderOptions{})).ca.Data["tls.crt"]
}
