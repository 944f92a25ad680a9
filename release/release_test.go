package release_test

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"debug/buildinfo"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	helmregistry "helm.sh/helm/v3/pkg/registry"
	"helm.sh/helm/v3/pkg/releaseutil"
	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/yaml"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/release/sbom"
	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/release/standin"
)

// The release the test makes: the make variables it sets.
const (
	version  = "v9.9.9-test"
	revision = "0123456789abcdef0123456789abcdef01234567"
	branch   = "test-branch"
	// 2023-11-14T22:13:20Z: every time in the image and chart.
	epoch = "1700000000"
)

var programs = []string{"kong-metrics-injector", "kong-metrics-sidecar", "kubectl-kong_metrics"}

// TestRelease runs make release into a registry on 127.0.0.1 on a stand-in
// base, pulls the index and the chart back, checks both, and runs make
// release again to check that it gives the same digests.
func TestRelease(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	base := pushStandin(t, host)
	repo := host + "/kms"
	image := repo + "/kong-metrics-sidecar:" + version

	dir := t.TempDir()
	makeRelease(t, dir, repo, base)
	idx, err := remote.Index(ref(t, image))
	if err != nil {
		t.Fatalf("pulling %s: %v", image, err)
	}
	digest, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	checkFile(t, filepath.Join(dir, "out", "image.txt"), image+"@"+digest.String()+"\n")
	files := checkIndex(t, idx, dir, repo+"/kong-metrics-sidecar", base)
	checkChart(t, host, image, files["linux/amd64"])

	// The same commit again, into another directory: the same digests.
	again := t.TempDir()
	makeRelease(t, again, repo, base)
	desc, err := remote.Head(ref(t, image))
	if err != nil {
		t.Fatal(err)
	}
	if desc.Digest != digest {
		t.Errorf("the second build's index is %s, the first's %s", desc.Digest, digest)
	}
	for _, f := range []string{"image.txt", "chart.txt", "sbom-linux-amd64.cdx.json", "sbom-linux-arm64.cdx.json", "kong-metrics-sidecar-" + version + ".tgz"} {
		first, err := os.ReadFile(filepath.Join(dir, "out", f))
		if err != nil {
			t.Fatal(err)
		}
		second, err := os.ReadFile(filepath.Join(again, "out", f))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(first, second) {
			t.Errorf("%s differs between two builds of one commit", f)
		}
	}
}

// pushStandin pushes the stand-in base to host and returns its reference
// pinned by digest.
func pushStandin(t *testing.T, host string) string {
	t.Helper()
	idx, err := standin.Index()
	if err != nil {
		t.Fatal(err)
	}
	tag := host + "/standin/static:nonroot"
	if err := remote.WriteIndex(ref(t, tag), idx); err != nil {
		t.Fatal(err)
	}
	d, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return tag + "@" + d.String()
}

// makeRelease runs make release with RELEASE_DIR dir.
func makeRelease(t *testing.T, dir, repo, base string) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), "make", "--no-print-directory", "release",
		"VERSION="+version, "REVISION="+revision, "BRANCH="+branch, "BUILD_USER=tester", "BUILD_DATE=20231114-22:13:20",
		"SOURCE_DATE_EPOCH="+epoch, "REGISTRY="+repo, "BASE_IMAGE="+base, "RELEASE_DIR="+dir)
	cmd.Dir = ".."
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make release: %v\n%s", err, out)
	}
}

// checkIndex checks the pulled index and each platform's image against the
// binaries make release built in dir (repo is the image's repository), and returns each platform's
// flattened file system by platform (linux/amd64).
func checkIndex(t *testing.T, idx v1.ImageIndex, dir, repo, base string) map[string]map[string]file {
	t.Helper()
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if m.MediaType != types.OCIImageIndex {
		t.Errorf("index media type %s, want %s", m.MediaType, types.OCIImageIndex)
	}
	for k, want := range map[string]string{
		"org.opencontainers.image.version": version, "org.opencontainers.image.revision": revision,
		"org.opencontainers.image.licenses": "Apache-2.0", "org.opencontainers.image.created": "2023-11-14T22:13:20Z",
	} {
		if got := m.Annotations[k]; got != want {
			t.Errorf("index annotation %s=%q, want %q", k, got, want)
		}
	}
	var platforms []string
	fss := map[string]map[string]file{}
	for _, d := range m.Manifests {
		if d.Platform == nil {
			t.Errorf("manifest %s has no platform", d.Digest)
			continue
		}
		p := d.Platform.OS + "/" + d.Platform.Architecture
		platforms = append(platforms, p)
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		fss[p] = checkImage(t, img, *d.Platform, dir, base)
		checkSBOM(t, filepath.Join(dir, "out", "sbom-"+d.Platform.OS+"-"+d.Platform.Architecture+".cdx.json"), d.Digest, filepath.Join(dir, d.Platform.OS+"_"+d.Platform.Architecture))
		checkFile(t, filepath.Join(dir, "out", "image-"+d.Platform.OS+"-"+d.Platform.Architecture+".txt"), repo+"@"+d.Digest.String()+"\n")
	}
	if want := []string{"linux/amd64", "linux/arm64"}; !slices.Equal(platforms, want) {
		t.Errorf("the index's platforms are %v, want %v", platforms, want)
	}
	return fss
}

// checkImage checks one platform's image: its config, its base, and its
// binaries against those built in dir.
func checkImage(t *testing.T, img v1.Image, p v1.Platform, dir, base string) map[string]file {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != p.OS || cf.Architecture != p.Architecture {
		t.Errorf("%s: config says %s/%s", p, cf.OS, cf.Architecture)
	}
	if cf.Config.User != "65532:65532" {
		t.Errorf("%s: user %q, want 65532:65532", p, cf.Config.User)
	}
	if want := []string{"/usr/local/bin/kong-metrics-sidecar"}; !slices.Equal(cf.Config.Entrypoint, want) || len(cf.Config.Cmd) != 0 {
		t.Errorf("%s: entrypoint %q cmd %q, want %q and none", p, cf.Config.Entrypoint, cf.Config.Cmd, want)
	}
	for k, want := range map[string]string{
		"org.opencontainers.image.source":   "https://github.com/kong-metrics-sidecar/kong-metrics-sidecar",
		"org.opencontainers.image.revision": revision,
		"org.opencontainers.image.version":  version,
		"org.opencontainers.image.licenses": "Apache-2.0",
	} {
		if got := cf.Config.Labels[k]; got != want {
			t.Errorf("%s: label %s=%q, want %q", p, k, got, want)
		}
	}
	if got := cf.Created.UTC().Format("2006-01-02T15:04:05Z"); got != "2023-11-14T22:13:20Z" {
		t.Errorf("%s: created %s, want the commit's time", p, got)
	}
	mf, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if name, _, _ := strings.Cut(base, "@"); mf.Annotations["org.opencontainers.image.base.name"] != name {
		t.Errorf("%s: base.name annotation %q, want %q", p, mf.Annotations["org.opencontainers.image.base.name"], name)
	}

	fs := flatten(t, img)
	if pw := fs["etc/passwd"]; !strings.Contains(string(pw.data), "nonroot:x:65532:65532:") {
		t.Errorf("%s: /etc/passwd from the base lacks nonroot 65532:\n%s", p, pw.data)
	}
	for _, prog := range programs {
		inImage := "usr/local/bin/" + prog
		got, ok := fs[inImage]
		if !ok {
			t.Errorf("%s: no /%s in the image", p, inImage)
			continue
		}
		if got.mode != 0o755 || got.uid != 0 || got.gid != 0 {
			t.Errorf("%s: /%s has mode %o, owner %d:%d; want 755, 0:0", p, inImage, got.mode, got.uid, got.gid)
		}
		built, err := os.ReadFile(filepath.Join(dir, p.OS+"_"+p.Architecture, prog))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.data, built) {
			t.Errorf("%s: /%s differs from the binary make release built", p, inImage)
			continue
		}
		out := filepath.Join(t.TempDir(), prog)
		if err := os.WriteFile(out, got.data, 0o755); err != nil { //nolint:gosec // the test runs it
			t.Fatal(err)
		}
		checkBinary(t, out, prog, p)
	}
	return fs
}

// checkBinary checks the binary at path, taken from p's image: an ELF
// executable for p's architecture, static, built with CGO_ENABLED=0 and
// -trimpath; on this machine's platform it runs and prints the stamp.
func checkBinary(t *testing.T, path, prog string, p v1.Platform) {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Errorf("%s %s: not ELF: %v", p, prog, err)
		return
	}
	defer func() { _ = f.Close() }() // read only
	machine := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[p.Architecture]
	if f.Machine != machine || f.Type != elf.ET_EXEC {
		t.Errorf("%s %s: ELF %v %v, want %v ET_EXEC", p, prog, f.Machine, f.Type, machine)
	}
	for _, ph := range f.Progs {
		if ph.Type == elf.PT_INTERP || ph.Type == elf.PT_DYNAMIC {
			t.Errorf("%s %s: has %v: dynamically linked", p, prog, ph.Type)
		}
	}
	bi, err := buildinfo.ReadFile(path)
	if err != nil {
		t.Errorf("%s %s: %v", p, prog, err)
		return
	}
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	if settings["CGO_ENABLED"] != "0" || settings["-trimpath"] != "true" || settings["GOARCH"] != p.Architecture {
		t.Errorf("%s %s: built with CGO_ENABLED=%q -trimpath=%q GOARCH=%q", p, prog, settings["CGO_ENABLED"], settings["-trimpath"], settings["GOARCH"])
	}
	if p.OS != runtime.GOOS || p.Architecture != runtime.GOARCH {
		return
	}
	out, err := exec.CommandContext(t.Context(), path, "-version").Output()
	if err != nil {
		t.Errorf("%s %s -version: %v", p, prog, err)
		return
	}
	if want := prog + ", version " + version + " (branch: " + branch + ", revision: " + revision + ")\n"; !strings.HasPrefix(string(out), want) {
		t.Errorf("%s %s -version printed\n%s\nwant it to start with\n%s", p, prog, out, want)
	}
}

// checkSBOM checks the SBOM of the image at digest: it names that image,
// each binary in bins with its SHA-256, and the Go modules linked in.
func checkSBOM(t *testing.T, file string, digest v1.Hash, bins string) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Error(err)
		return
	}
	var bom sbom.BOM
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&bom); err != nil {
		t.Errorf("%s: %v", file, err)
		return
	}
	if bom.BOMFormat != "CycloneDX" || bom.SpecVersion != "1.5" {
		t.Errorf("%s: %s %s, want CycloneDX 1.5", file, bom.BOMFormat, bom.SpecVersion)
	}
	if h := bom.Metadata.Component.Hashes; len(h) != 1 || "sha256:"+h[0].Content != digest.String() {
		t.Errorf("%s: the image's hash %v, want %s", file, h, digest)
	}
	components := map[string]sbom.Component{}
	for _, c := range bom.Components {
		components[c.Name] = c
	}
	for _, prog := range programs {
		data, err := os.ReadFile(filepath.Join(bins, prog))
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(data)
		if c := components[prog]; len(c.Hashes) != 1 || c.Hashes[0].Content != hex.EncodeToString(sum[:]) {
			t.Errorf("%s: %s's hashes %v, want SHA-256 %x", file, prog, c.Hashes, sum)
		}
	}
	for _, mod := range []string{"github.com/prometheus/client_golang", "github.com/kong-metrics-sidecar/kong-metrics-sidecar", "stdlib"} {
		if c, ok := components[mod]; !ok || c.Version == "" || !strings.HasPrefix(c.PURL, "pkg:golang/") {
			t.Errorf("%s: module %s: %+v", file, mod, c)
		}
	}
	if c := components["github.com/prometheus/client_golang"]; len(c.Properties) != 1 || !strings.HasPrefix(c.Properties[0].Value, "h1:") {
		t.Errorf("%s: client_golang has no go.sum hash: %+v", file, c)
	}
}

// checkChart pulls the chart back from the registry at host and renders it
// with its defaults: the injector runs the image just pushed, injects it
// as the sidecar, and its command is a binary in that image.
func checkChart(t *testing.T, host, image string, fs map[string]file) {
	t.Helper()
	client, err := helmregistry.NewClient(helmregistry.ClientOptPlainHTTP(), helmregistry.ClientOptWriter(io.Discard))
	if err != nil {
		t.Fatal(err)
	}
	chartRef := host + "/kms/charts/kong-metrics-sidecar:" + version
	res, err := client.Pull(chartRef)
	if err != nil {
		t.Fatalf("pulling oci://%s: %v", chartRef, err)
	}
	c, err := loader.LoadArchive(bytes.NewReader(res.Chart.Data))
	if err != nil {
		t.Fatal(err)
	}
	if c.Metadata.Version != version || c.Metadata.AppVersion != version {
		t.Errorf("chart version %q appVersion %q, want both %q", c.Metadata.Version, c.Metadata.AppVersion, version)
	}
	top, err := chartutil.ToRenderValues(c, map[string]any{}, chartutil.ReleaseOptions{Name: "kms", Namespace: "kms", Revision: 1, IsInstall: true}, chartutil.DefaultCapabilities)
	if err != nil {
		t.Fatal(err)
	}
	files, err := engine.Render(c, top)
	if err != nil {
		t.Fatal(err)
	}
	for name := range files {
		if strings.HasSuffix(name, "NOTES.txt") {
			delete(files, name)
		}
	}
	_, manifests, err := releaseutil.SortManifests(files, chartutil.DefaultCapabilities.APIVersions, releaseutil.InstallOrder)
	if err != nil {
		t.Fatal(err)
	}
	var deps []appsv1.Deployment
	for _, m := range manifests {
		if m.Head.Kind != "Deployment" {
			continue
		}
		var d appsv1.Deployment
		if err := yaml.UnmarshalStrict([]byte(m.Content), &d); err != nil {
			t.Fatalf("%s: %v", m.Name, err)
		}
		deps = append(deps, d)
	}
	if len(deps) != 1 || len(deps[0].Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("the chart renders %d Deployments, want 1 with one container", len(deps))
	}
	ct := deps[0].Spec.Template.Spec.Containers[0]
	if ct.Image != image {
		t.Errorf("the injector's image is %q, want the pushed %q", ct.Image, image)
	}
	var sidecar string
	for _, e := range ct.Env {
		if e.Name == "INJECTOR_SIDECAR_IMAGE" {
			sidecar = e.Value
		}
	}
	if sidecar != image {
		t.Errorf("the injected sidecar's image is %q, want the pushed %q", sidecar, image)
	}
	if len(ct.Command) == 0 {
		t.Fatal("the injector has no command")
	}
	if f, ok := fs[strings.TrimPrefix(path.Clean(ct.Command[0]), "/")]; !ok || f.typ != tar.TypeReg || f.mode&0o111 == 0 {
		t.Errorf("the injector's command %s is no executable file in the image", ct.Command[0])
	}
}

// file is a file of an image's flattened file system.
type file struct {
	typ      byte
	mode     int64
	uid, gid int
	data     []byte
}

// flatten returns img's file system, the layers applied, by path without
// the leading slash.
func flatten(t *testing.T, img v1.Image) map[string]file {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	fs := map[string]file{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return fs
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		fs[strings.TrimPrefix(path.Clean("/"+h.Name), "/")] = file{h.Typeflag, h.Mode, h.Uid, h.Gid, data}
	}
}

// checkFile fails the test unless the file holds want.
func checkFile(t *testing.T, path, want string) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Errorf("%s holds %q, want %q", filepath.Base(path), got, want)
	}
}

// ref parses a reference the test made.
func ref(t *testing.T, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
