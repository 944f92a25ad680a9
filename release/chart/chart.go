// Package chart packages the Helm chart for a release and pushes it to an
// OCI registry with Helm's own registry client: version and appVersion
// set to the release version (so image.tag's default is the image just
// pushed), image.repository's default set to the repository the image was
// pushed to, and the archive made reproducible (every file time and the
// manifest's creation time are the commit's time).
package chart

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/registry"
)

// Package returns the chart at dir as a .tgz archive for the release
// version, with image.repository's default set to repository, and the
// loaded chart.
func Package(dir, version, repository string, created time.Time) ([]byte, *chart.Chart, error) {
	c, err := loader.LoadDir(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("loading the chart: %w", err)
	}
	c.Metadata.Version = version
	c.Metadata.AppVersion = version
	if err := setImageRepository(c, repository); err != nil {
		return nil, nil, err
	}
	tmp, err := os.MkdirTemp("", "kms-chart-")
	if err != nil {
		return nil, nil, fmt.Errorf("packaging the chart: %w", err)
	}
	defer os.RemoveAll(tmp)
	file, err := chartutil.Save(c, tmp)
	if err != nil {
		return nil, nil, fmt.Errorf("packaging the chart: %w", err)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, nil, fmt.Errorf("packaging the chart: %w", err)
	}
	data, err = fixTimes(data, created)
	if err != nil {
		return nil, nil, fmt.Errorf("packaging the chart: %w", err)
	}
	return data, c, nil
}

// setImageRepository sets the default of image.repository in the chart's
// values.yaml (its text, so that its comments stay) and in its values.
func setImageRepository(c *chart.Chart, repository string) error {
	img, ok := c.Values["image"].(map[string]any)
	if !ok {
		return errors.New("the chart's values have no image map")
	}
	old, ok := img["repository"].(string)
	if !ok || old == "" {
		return errors.New("the chart's values have no image.repository")
	}
	if old == repository {
		return nil
	}
	for _, f := range c.Raw {
		if f.Name != chartutil.ValuesfileName {
			continue
		}
		line := "\n  repository: " + old + "\n"
		if n := strings.Count(string(f.Data), line); n != 1 {
			return fmt.Errorf("values.yaml has %d lines %q, want 1 to set the image repository", n, strings.TrimSpace(line))
		}
		f.Data = []byte(strings.Replace(string(f.Data), line, "\n  repository: "+repository+"\n", 1))
		img["repository"] = repository
		return nil
	}
	return errors.New("the chart has no values.yaml")
}

// fixTimes rewrites the archive that chartutil.Save wrote (which stamps
// every entry with the clock) with every time set to created and the
// gzip header's time cleared; entries, order and contents are kept.
func fixTimes(tgz []byte, created time.Time) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(tgz))
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	zw.Extra = zr.Extra // Helm's mark
	zw.Comment = zr.Comment
	tr := tar.NewReader(zr)
	tw := tar.NewWriter(zw)
	mtime := created.UTC().Truncate(time.Second)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		h.ModTime, h.AccessTime, h.ChangeTime = mtime, time.Time{}, time.Time{}
		h.Format = tar.FormatUSTAR
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := io.Copy(tw, tr); err != nil { //nolint:gosec // the archive chartutil.Save just wrote
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// Push pushes the packaged chart to repo (oci://host/path): it is then at
// oci://host/path/<name>:<version>. It returns that reference (without
// oci://) and the manifest's digest. Credentials come from Helm's
// registry config or, failing that, Docker's (docker login).
func Push(data []byte, c *chart.Chart, repo string, created time.Time, plainHTTP bool) (ref, digest string, err error) {
	if !strings.HasPrefix(repo, "oci://") {
		return "", "", fmt.Errorf("chart repository %q: want oci://host/path", repo)
	}
	opts := []registry.ClientOption{registry.ClientOptWriter(io.Discard)}
	if plainHTTP {
		opts = append(opts, registry.ClientOptPlainHTTP())
	}
	client, err := registry.NewClient(opts...)
	if err != nil {
		return "", "", fmt.Errorf("making a registry client: %w", err)
	}
	// Helm writes + in a version as _ in the tag (a tag cannot hold +).
	ref = strings.TrimSuffix(strings.TrimPrefix(repo, "oci://"), "/") + "/" + c.Name() + ":" + c.Metadata.Version
	res, err := client.Push(data, ref, registry.PushOptCreationTime(created.UTC().Format(time.RFC3339)))
	if err != nil {
		return "", "", fmt.Errorf("pushing the chart to %s: %w", ref, err)
	}
	return res.Ref, res.Manifest.Digest, nil
}
