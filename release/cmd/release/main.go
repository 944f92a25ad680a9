// Command release makes a release of kong-metrics-sidecar (package
// publish): the two-platform image on distroless, pinned by digest, pushed
// under the version's tag; an SBOM per platform image; and the chart,
// pushed as an OCI artifact. make release runs it after make release-bins
// has built the binaries; see docs/versioning.md.
//
// With -local DIR it releases into a registry of its own on 127.0.0.1, on a
// stand-in base (package standin), pulls the image back and writes this
// machine's platform's binaries from it into DIR: the end-to-end test runs
// those (make image-bins).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/release/publish"
	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/release/standin"
)

func main() {
	var (
		cfg   publish.Config
		epoch string
		local string
		notes string
	)
	flag.StringVar(&cfg.Version, "version", "", "release version, vMAJOR.MINOR.PATCH[-PRERELEASE] (required)")
	flag.StringVar(&cfg.Revision, "revision", "", "the commit (required)")
	flag.StringVar(&epoch, "source-date-epoch", os.Getenv("SOURCE_DATE_EPOCH"), "the commit's time in seconds since 1970: every time in the image and chart")
	flag.StringVar(&cfg.Source, "source", "https://github.com/kong-metrics-sidecar/kong-metrics-sidecar", "the repository's URL")
	flag.StringVar(&cfg.Base, "base", "", "base image pinned by digest, name@sha256:… (required unless -local)")
	flag.StringVar(&cfg.Image, "image", "", "repository to push the image to, such as ghcr.io/org/kong-metrics-sidecar (required unless -local)")
	flag.StringVar(&cfg.BinDir, "bin-dir", "", "directory with linux_amd64/ and linux_arm64/, each holding both binaries (required)")
	flag.StringVar(&cfg.ChartDir, "chart-dir", "", "the chart's directory (required)")
	flag.StringVar(&cfg.ChartRepo, "chart-repo", "", "where to push the chart, oci://host/path (required unless -local)")
	flag.StringVar(&cfg.OutDir, "out", "", "directory for the SBOMs, the chart archive, image.txt and chart.txt (required)")
	flag.StringVar(&local, "local", "", "release into a registry of its own on a stand-in base and write this platform's binaries from the pulled image into this directory")
	flag.StringVar(&notes, "notes-from", "", "write only the release notes: the section of this changelog (CHANGELOG.md) for -version, into -out/notes.md")
	flag.Parse()

	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if notes != "" {
		if err := writeNotes(notes, cfg.Version, cfg.OutDir); err != nil {
			logger.Error("release notes", "err", err)
			os.Exit(1)
		}
		return
	}
	secs, err := strconv.ParseInt(epoch, 10, 64)
	if err != nil {
		logger.Error("bad -source-date-epoch", "value", epoch, "err", err)
		os.Exit(2)
	}
	cfg.Created = time.Unix(secs, 0).UTC()
	if local != "" {
		err = releaseLocally(ctx, cfg, local, logger)
	} else {
		_, err = publish.Run(ctx, cfg, logger)
	}
	if err != nil {
		logger.Error("release failed", "err", err)
		os.Exit(1)
	}
}

// releaseLocally releases cfg into a registry on 127.0.0.1 on the stand-in
// base and writes this platform's binaries from the pulled image into dir.
func releaseLocally(ctx context.Context, cfg publish.Config, dir string, logger *slog.Logger) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("starting the local registry: %w", err)
	}
	srv := &http.Server{Handler: registry.New(registry.Logger(log.New(discard{}, "", 0))), ReadHeaderTimeout: time.Minute}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("local registry", "err", err)
		}
	}()
	defer srv.Close()
	host := ln.Addr().String()

	base, err := standin.Index()
	if err != nil {
		return err
	}
	baseTag, err := name.NewTag(host + "/standin/static:nonroot")
	if err != nil {
		return fmt.Errorf("the stand-in base: %w", err)
	}
	if err := remote.WriteIndex(baseTag, base, remote.WithContext(ctx)); err != nil {
		return fmt.Errorf("pushing the stand-in base: %w", err)
	}
	baseDigest, err := base.Digest()
	if err != nil {
		return fmt.Errorf("the stand-in base: %w", err)
	}
	cfg.Base = baseTag.String() + "@" + baseDigest.String()
	cfg.Image = host + "/kong-metrics-sidecar/kong-metrics-sidecar"
	cfg.ChartRepo = "oci://" + host + "/kong-metrics-sidecar/charts"
	res, err := publish.Run(ctx, cfg, logger)
	if err != nil {
		return err
	}
	bins, err := publish.Extract(ctx, res.Image, v1.Platform{OS: runtime.GOOS, Architecture: runtime.GOARCH}, dir)
	if err != nil {
		return err
	}
	for name, path := range bins {
		abs, _ := filepath.Abs(path)
		logger.Info("binary from the pulled image", "name", name, "path", abs)
	}
	return nil
}

// writeNotes writes the section of the changelog file for version into
// dir/notes.md.
func writeNotes(changelog, version, dir string) error {
	data, err := os.ReadFile(changelog)
	if err != nil {
		return fmt.Errorf("reading the changelog: %w", err)
	}
	text, err := publish.ReleaseNotes(data, version)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("making %s: %w", dir, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "notes.md"), []byte(text), 0o644); err != nil { //nolint:gosec // release notes are for everyone to read
		return fmt.Errorf("writing the release notes: %w", err)
	}
	return nil
}

// discard drops the registry's request log.
type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
