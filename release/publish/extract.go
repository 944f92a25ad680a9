package publish

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/release/image"
)

// Extract pulls the index at ref, takes its image for p and writes the
// binaries (image.Programs) from its flattened file system into dir, mode
// 0755. It returns their paths by name.
func Extract(ctx context.Context, ref string, p v1.Platform, dir string) (map[string]string, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return nil, fmt.Errorf("image %q: %w", ref, err)
	}
	idx, err := remote.Index(r, remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain))
	if err != nil {
		return nil, fmt.Errorf("pulling %s: %w", ref, err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("pulling %s: %w", ref, err)
	}
	var img v1.Image
	for _, d := range m.Manifests {
		if d.Platform != nil && d.Platform.OS == p.OS && d.Platform.Architecture == p.Architecture {
			if img, err = idx.Image(d.Digest); err != nil {
				return nil, fmt.Errorf("pulling the %s image of %s: %w", p, ref, err)
			}
		}
	}
	if img == nil {
		return nil, fmt.Errorf("%s has no image for %s", ref, p)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("making %s: %w", dir, err)
	}
	fs := mutate.Extract(img)
	defer fs.Close()
	tr := tar.NewReader(fs)
	got := map[string]string{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading the %s image of %s: %w", p, ref, err)
		}
		dirName, base := path.Split("/" + path.Clean(h.Name))
		if path.Clean(dirName) != image.BinDir || !slices.Contains(image.Programs, base) || h.Typeflag != tar.TypeReg {
			continue
		}
		out := filepath.Join(dir, base)
		if err := writeFile(out, tr); err != nil {
			return nil, err
		}
		got[base] = out
	}
	for _, prog := range image.Programs {
		if got[prog] == "" {
			return nil, fmt.Errorf("the %s image of %s has no %s", p, ref, path.Join(image.BinDir, prog))
		}
	}
	return got, nil
}

// writeFile writes r to a new executable file at path, through a
// temporary file renamed into place, so that the path always holds a
// whole binary.
func writeFile(path string, r io.Reader) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".extract-")
	if err != nil {
		return fmt.Errorf("extracting %s: %w", path, err)
	}
	defer os.Remove(f.Name())
	if _, err := io.Copy(f, r); err != nil { //nolint:gosec // a binary of the project's own image
		_ = f.Close()
		return fmt.Errorf("extracting %s: %w", path, err)
	}
	if err := f.Chmod(0o755); err != nil {
		_ = f.Close()
		return fmt.Errorf("extracting %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("extracting %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("extracting %s: %w", path, err)
	}
	return nil
}
