// Package image assembles the release image without a container daemon:
// for each platform, the base image's manifest for that platform plus one
// layer holding the three binaries, with the project's user, entrypoint and OCI
// labels; and an OCI index over the platforms. Every input that could vary
// between two builds of one commit is fixed (file times, owners, modes and
// order in the layer, the creation time), so the same binaries and base
// give the same digest.
package image

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// BinDir is where the binaries are in the image: the chart's injector
// command (/usr/local/bin/kong-metrics-injector) and the image's
// entrypoint (/usr/local/bin/kong-metrics-sidecar) name them there; the
// kubectl plugin (kubectl-kong_metrics) is there to be copied out.
const BinDir = "/usr/local/bin"

// Programs are the binaries the image holds, by file name.
var Programs = []string{"kong-metrics-injector", "kong-metrics-sidecar", "kubectl-kong_metrics"}

// User is the image's user: distroless's nonroot (uid and gid 65532).
const User = "65532:65532"

// Entrypoint is the image's entrypoint: the sidecar, as the injector runs
// it; the chart runs the injector with command.
var Entrypoint = []string{BinDir + "/kong-metrics-sidecar"}

// SidecarPort is the sidecar's listening port, exposed in the config.
const SidecarPort = "9542/tcp"

// Platforms are the platforms of every release, in index order.
var Platforms = []v1.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64"}}

// PlatformDir is the directory under a release's binary directory that
// holds the binaries of p (linux_amd64), as make release-bins writes them.
func PlatformDir(p v1.Platform) string { return p.OS + "_" + p.Architecture }

// Options are the inputs of one release image.
type Options struct {
	// Base is the base index (distroless static:nonroot), with a manifest
	// for every platform of Platforms.
	Base v1.ImageIndex
	// BaseName is the base's reference without the digest, for the
	// org.opencontainers.image.base.name annotation.
	BaseName string
	// BinDir holds a PlatformDir per platform, each with Programs.
	BinDir string
	// Created is the time in the config, history and every layer file (the
	// commit's time: SOURCE_DATE_EPOCH).
	Created time.Time
	// Labels are the OCI labels (org.opencontainers.image.*) of each
	// image's config; the index carries them as annotations.
	Labels map[string]string
}

// Build returns the release index: one image per platform of Platforms.
func Build(o Options) (v1.ImageIndex, error) {
	if o.Base == nil {
		return nil, errors.New("no base index")
	}
	created := v1.Time{Time: o.Created.UTC()}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, p := range Platforms {
		base, desc, err := platformImage(o.Base, p)
		if err != nil {
			return nil, err
		}
		img, err := platform(o, base, desc.Digest, p)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		// The base's own platform (with its variant, if any) describes ours.
		pl := *desc.Platform
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &pl}})
	}
	anns := map[string]string{"org.opencontainers.image.created": created.Format(time.RFC3339)}
	for k, v := range o.Labels {
		anns[k] = v
	}
	idx, ok := mutate.Annotations(idx, anns).(v1.ImageIndex)
	if !ok {
		return nil, errors.New("BUG: annotating an index gave no index")
	}
	return idx, nil
}

// platform returns the image for p: base plus the binaries' layer and the
// project's config.
func platform(o Options, base v1.Image, baseDigest v1.Hash, p v1.Platform) (v1.Image, error) {
	layer, err := BinariesLayer(filepath.Join(o.BinDir, PlatformDir(p)), o.Created)
	if err != nil {
		return nil, err
	}
	created := v1.Time{Time: o.Created.UTC()}
	img, err := mutate.Append(base, mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History: v1.History{
			Created:   created,
			CreatedBy: "kong-metrics-sidecar release: " + BinDir + "/{" + Programs[0] + "," + Programs[1] + "}",
			Comment:   "static Go binaries built with the Makefile's flags",
		},
	})
	if err != nil {
		return nil, fmt.Errorf("adding the binaries' layer: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("reading the config: %w", err)
	}
	cf = cf.DeepCopy()
	if cf.OS != p.OS || cf.Architecture != p.Architecture {
		return nil, fmt.Errorf("the base's image for %s says it is for %s/%s", p, cf.OS, cf.Architecture)
	}
	cf.Created = created
	cf.Config.User = User
	cf.Config.Entrypoint = Entrypoint
	cf.Config.Cmd = nil
	cf.Config.ExposedPorts = map[string]struct{}{SidecarPort: {}}
	labels := map[string]string{}
	for k, v := range cf.Config.Labels { // the base's, if any, then ours
		labels[k] = v
	}
	for k, v := range o.Labels {
		labels[k] = v
	}
	cf.Config.Labels = labels
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("setting the config: %w", err)
	}
	img = mutate.ConfigMediaType(mutate.MediaType(img, types.OCIManifestSchema1), types.OCIConfigJSON)
	anns := map[string]string{"org.opencontainers.image.base.digest": baseDigest.String()}
	if o.BaseName != "" {
		anns["org.opencontainers.image.base.name"] = o.BaseName
	}
	img, ok := mutate.Annotations(img, anns).(v1.Image)
	if !ok {
		return nil, errors.New("BUG: annotating an image gave no image")
	}
	return img, nil
}

// platformImage returns base's image for p and its descriptor.
func platformImage(base v1.ImageIndex, p v1.Platform) (v1.Image, v1.Descriptor, error) {
	m, err := base.IndexManifest()
	if err != nil {
		return nil, v1.Descriptor{}, fmt.Errorf("reading the base index: %w", err)
	}
	var found []v1.Descriptor
	for _, d := range m.Manifests {
		if d.Platform != nil && d.Platform.OS == p.OS && d.Platform.Architecture == p.Architecture && d.MediaType.IsImage() {
			found = append(found, d)
		}
	}
	if len(found) != 1 {
		return nil, v1.Descriptor{}, fmt.Errorf("the base index has %d images for %s, want 1", len(found), p)
	}
	img, err := base.Image(found[0].Digest)
	if err != nil {
		return nil, v1.Descriptor{}, fmt.Errorf("reading the base image for %s: %w", p, err)
	}
	return img, found[0], nil
}

// BinariesLayer returns the layer holding Programs from dir at BinDir:
// owned by root, mode 0755, every time set to created, directories first
// and entries sorted, so that the same files give the same digest.
func BinariesLayer(dir string, created time.Time) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mtime := created.UTC().Truncate(time.Second)
	header := func(name string, typ byte, mode, size int64) *tar.Header {
		return &tar.Header{
			Typeflag: typ, Name: name, Mode: mode, Size: size,
			ModTime: mtime, Uid: 0, Gid: 0, Format: tar.FormatUSTAR,
		}
	}
	rel := BinDir[1:] // usr/local/bin
	var dirs []string
	for d := rel; d != "."; d = path.Dir(d) {
		dirs = append([]string{d}, dirs...)
	}
	for _, d := range dirs {
		if err := tw.WriteHeader(header(d+"/", tar.TypeDir, 0o755, 0)); err != nil {
			return nil, fmt.Errorf("writing the layer: %w", err)
		}
	}
	names := append([]string(nil), Programs...)
	sort.Strings(names)
	for _, name := range names {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("reading the binary: %w", err)
		}
		if err := tw.WriteHeader(header(rel+"/"+name, tar.TypeReg, 0o755, int64(len(data)))); err != nil {
			return nil, fmt.Errorf("writing the layer: %w", err)
		}
		if _, err := tw.Write(data); err != nil {
			return nil, fmt.Errorf("writing the layer: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("writing the layer: %w", err)
	}
	data := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, fmt.Errorf("compressing the layer: %w", err)
	}
	return layer, nil
}
