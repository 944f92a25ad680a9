// Package publish is the release: it pulls the base image by digest,
// assembles the two-platform image from the binaries make release-bins
// built (package image), writes an SBOM per platform image (package sbom),
// pushes the index under the version's tag, checks the registry holds
// that digest, and packages and pushes the chart (package chart). make
// release, the release workflow and the test all run this code.
package publish

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/release/chart"
	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/release/image"
	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/release/sbom"
)

// Config is one release's inputs.
type Config struct {
	// Version is the release version, vMAJOR.MINOR.PATCH[-pre][+build]:
	// the image's tag and the chart's version and appVersion.
	Version string
	// Revision is the commit (org.opencontainers.image.revision).
	Revision string
	// Created is the commit's time (SOURCE_DATE_EPOCH).
	Created time.Time
	// Source is the repository's URL (org.opencontainers.image.source).
	Source string
	// Base is the base image's reference, pinned by digest.
	Base string
	// Image is the repository to push the image to
	// (ghcr.io/kong-metrics-sidecar/kong-metrics-sidecar).
	Image string
	// BinDir holds the binaries per platform (image.PlatformDir).
	BinDir string
	// ChartDir is the chart's directory.
	ChartDir string
	// ChartRepo is where the chart goes (oci://ghcr.io/kong-metrics-sidecar/charts).
	ChartRepo string
	// OutDir receives the SBOMs (sbom-<os>-<arch>.cdx.json), the chart
	// archive and the pushed references: image.txt (the index),
	// image-<os>-<arch>.txt (each platform's image) and chart.txt.
	OutDir string
}

// Result is what a release pushed.
type Result struct {
	// Image is the index's reference, repository:tag@digest.
	Image string
	// Chart is the chart's reference, host/path/name:version@digest.
	Chart string
}

// Licence is the SPDX identifier of the project's licence (LICENSE).
const Licence = "Apache-2.0"

// semver is a release version: v, then SemVer 2.0.0.
var semver = regexp.MustCompile(`^v(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$`)

// Run makes the release cfg describes.
func Run(ctx context.Context, cfg Config, log *slog.Logger) (Result, error) {
	if !semver.MatchString(cfg.Version) {
		return Result{}, fmt.Errorf("version %q: want vMAJOR.MINOR.PATCH[-PRERELEASE][+BUILD] (SemVer with a v)", cfg.Version)
	}
	if strings.Contains(cfg.Version, "+") {
		return Result{}, fmt.Errorf("version %q: build metadata (+…) cannot be an image tag", cfg.Version)
	}
	if cfg.Revision == "" || cfg.Image == "" || cfg.BinDir == "" || cfg.ChartDir == "" || cfg.ChartRepo == "" || cfg.OutDir == "" {
		return Result{}, errors.New("revision, image, binary directory, chart directory, chart repository and output directory are all required")
	}
	baseRef, err := name.NewDigest(cfg.Base)
	if err != nil {
		return Result{}, fmt.Errorf("base image %q: want a reference pinned by digest (name@sha256:…): %w", cfg.Base, err)
	}
	tag, err := name.NewTag(cfg.Image + ":" + cfg.Version)
	if err != nil {
		return Result{}, fmt.Errorf("image %q: %w", cfg.Image, err)
	}
	if err := os.MkdirAll(cfg.OutDir, 0o755); err != nil {
		return Result{}, fmt.Errorf("making the output directory: %w", err)
	}
	opts := []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)}

	log.Info("pulling the base image", "base", baseRef.String())
	base, err := remote.Index(baseRef, opts...)
	if err != nil {
		return Result{}, fmt.Errorf("pulling the base index %s: %w", baseRef, err)
	}
	baseName, _, _ := strings.Cut(cfg.Base, "@")
	labels := map[string]string{
		"org.opencontainers.image.title":       "kong-metrics-sidecar",
		"org.opencontainers.image.description": "Kong metrics sidecar and its injector: Kong's latency per Kubernetes Service, for autoscaling",
		"org.opencontainers.image.source":      cfg.Source,
		"org.opencontainers.image.url":         cfg.Source,
		"org.opencontainers.image.version":     cfg.Version,
		"org.opencontainers.image.revision":    cfg.Revision,
		"org.opencontainers.image.licenses":    Licence,
		"org.opencontainers.image.created":     cfg.Created.UTC().Format(time.RFC3339),
	}
	idx, err := image.Build(image.Options{Base: base, BaseName: baseName, BinDir: cfg.BinDir, Created: cfg.Created, Labels: labels})
	if err != nil {
		return Result{}, fmt.Errorf("assembling the image: %w", err)
	}
	digest, err := idx.Digest()
	if err != nil {
		return Result{}, fmt.Errorf("assembling the image: %w", err)
	}
	if err := writeSBOMs(idx, cfg, baseName); err != nil {
		return Result{}, err
	}

	log.Info("pushing the image", "image", tag.String(), "digest", digest.String())
	if err := remote.WriteIndex(tag, idx, opts...); err != nil {
		return Result{}, fmt.Errorf("pushing %s: %w", tag, err)
	}
	desc, err := remote.Head(tag, opts...)
	if err != nil {
		return Result{}, fmt.Errorf("reading back %s: %w", tag, err)
	}
	if desc.Digest != digest {
		return Result{}, fmt.Errorf("the registry holds %s at %s, want the pushed %s", desc.Digest, tag, digest)
	}
	res := Result{Image: tag.String() + "@" + digest.String()}

	data, c, err := chart.Package(cfg.ChartDir, cfg.Version, tag.Context().Name(), cfg.Created)
	if err != nil {
		return Result{}, err
	}
	archive := filepath.Join(cfg.OutDir, c.Name()+"-"+cfg.Version+".tgz")
	if err := os.WriteFile(archive, data, 0o644); err != nil { //nolint:gosec // a chart archive is for everyone to read
		return Result{}, fmt.Errorf("writing the chart archive: %w", err)
	}
	log.Info("pushing the chart", "repository", cfg.ChartRepo, "version", cfg.Version)
	chartRef, chartDigest, err := chart.Push(data, c, cfg.ChartRepo, cfg.Created, tag.Context().Scheme() == "http")
	if err != nil {
		return Result{}, err
	}
	res.Chart = chartRef + "@" + chartDigest
	for file, ref := range map[string]string{"image.txt": res.Image, "chart.txt": res.Chart} {
		if err := os.WriteFile(filepath.Join(cfg.OutDir, file), []byte(ref+"\n"), 0o644); err != nil { //nolint:gosec // a reference is for everyone to read
			return Result{}, fmt.Errorf("writing %s: %w", file, err)
		}
	}
	log.Info("released", "image", res.Image, "chart", res.Chart)
	return res, nil
}

// SBOMName is the file name of the SBOM of p's image in the output directory.
func SBOMName(p v1.Platform) string {
	return "sbom-" + p.OS + "-" + p.Architecture + ".cdx.json"
}

// writeSBOMs writes the SBOM of each platform image of idx into cfg.OutDir.
func writeSBOMs(idx v1.ImageIndex, cfg Config, baseName string) error {
	m, err := idx.IndexManifest()
	if err != nil {
		return fmt.Errorf("reading the index: %w", err)
	}
	for _, d := range m.Manifests {
		p := *d.Platform
		img, err := idx.Image(d.Digest)
		if err != nil {
			return fmt.Errorf("reading the %s image: %w", p, err)
		}
		im, err := img.Manifest()
		if err != nil {
			return fmt.Errorf("reading the %s image: %w", p, err)
		}
		bins := map[string]string{}
		for _, prog := range image.Programs {
			bins[path.Join(image.BinDir, prog)] = filepath.Join(cfg.BinDir, image.PlatformDir(p), prog)
		}
		bom, err := sbom.Build(sbom.Image{
			Repository: cfg.Image, Version: cfg.Version, Digest: d.Digest.String(),
			OS: p.OS, Architecture: p.Architecture,
			BaseName: baseName, BaseDigest: im.Annotations["org.opencontainers.image.base.digest"],
			Created: cfg.Created, Binaries: bins,
		})
		if err != nil {
			return fmt.Errorf("the %s SBOM: %w", p, err)
		}
		data, err := bom.JSON()
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(cfg.OutDir, SBOMName(p)), data, 0o644); err != nil { //nolint:gosec // an SBOM is for everyone to read
			return fmt.Errorf("writing the %s SBOM: %w", p, err)
		}
		// The platform image's own reference, for cosign attest of its SBOM.
		ref := []byte(cfg.Image + "@" + d.Digest.String() + "\n")
		if err := os.WriteFile(filepath.Join(cfg.OutDir, "image-"+p.OS+"-"+p.Architecture+".txt"), ref, 0o644); err != nil { //nolint:gosec // a reference is for everyone to read
			return fmt.Errorf("writing the %s image's reference: %w", p, err)
		}
	}
	return nil
}
