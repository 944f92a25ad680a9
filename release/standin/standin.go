// Package standin builds a stand-in for the release's base image
// (gcr.io/distroless/static:nonroot), which cannot be pulled without the
// network: an OCI index with a linux/amd64 and a linux/arm64 image, each
// one layer with the /etc/passwd and /etc/group entries distroless has
// (root, nobody and nonroot, uid and gid 65532) and distroless's config
// (user 65532, PATH, SSL_CERT_FILE). It has none of distroless's other
// files (CA certificates, tzdata, licences): what it proves is how the
// release puts the binaries on a base, not what the base holds.
package standin

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Passwd and Group are the stand-in's /etc/passwd and /etc/group, the
// lines distroless's static images have.
const (
	Passwd = "root:x:0:0:root:/root:/sbin/nologin\n" +
		"nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n" +
		"nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
	Group = "root:x:0:\n" +
		"nobody:x:65534:\n" +
		"tty:x:5:\n" +
		"staff:x:50:\n" +
		"nonroot:x:65532:\n"
)

// Index returns the stand-in base index.
func Index() (v1.ImageIndex, error) {
	layer, err := etcLayer()
	if err != nil {
		return nil, err
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, arch := range []string{"amd64", "arm64"} {
		img, err := mutate.Append(mutate.MediaType(empty.Image, types.OCIManifestSchema1), mutate.Addendum{Layer: layer, MediaType: types.OCILayer})
		if err != nil {
			return nil, fmt.Errorf("building the stand-in base: %w", err)
		}
		img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
		cf, err := img.ConfigFile()
		if err != nil {
			return nil, fmt.Errorf("building the stand-in base: %w", err)
		}
		cf = cf.DeepCopy()
		cf.OS, cf.Architecture = "linux", arch
		cf.Config.User = "65532"
		cf.Config.WorkingDir = "/home/nonroot"
		cf.Config.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"}
		if img, err = mutate.ConfigFile(img, cf); err != nil {
			return nil, fmt.Errorf("building the stand-in base: %w", err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}}})
	}
	return idx, nil
}

// etcLayer returns the layer with /etc/passwd, /etc/group and the nonroot
// home directory.
func etcLayer() (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	epoch := time.Unix(0, 0).UTC()
	entries := []struct {
		name     string
		mode     int64
		uid, gid int
		body     string
	}{
		{"etc/", 0o755, 0, 0, ""},
		{"etc/group", 0o644, 0, 0, Group},
		{"etc/passwd", 0o644, 0, 0, Passwd},
		{"home/", 0o755, 0, 0, ""},
		{"home/nonroot/", 0o700, 65532, 65532, ""},
	}
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: e.mode, Uid: e.uid, Gid: e.gid, ModTime: epoch, Typeflag: tar.TypeReg, Size: int64(len(e.body))}
		if e.body == "" {
			h.Typeflag, h.Size = tar.TypeDir, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("building the stand-in layer: %w", err)
		}
		if _, err := io.WriteString(tw, e.body); err != nil {
			return nil, fmt.Errorf("building the stand-in layer: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("building the stand-in layer: %w", err)
	}
	data := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, fmt.Errorf("building the stand-in layer: %w", err)
	}
	return layer, nil
}
