// Package sbom writes a CycloneDX 1.5 software bill of materials for one
// platform's release image from what the Go toolchain records in each
// binary (debug/buildinfo: the modules linked in, with versions and go.sum
// hashes, the Go version and the build settings), so it needs no network
// and no scanner. It lists the binaries and the Go modules in them, and the
// base image by digest; it does not list the base image's own files
// (distroless's packages): a scan of the pushed image (syft, in the release
// workflow) covers those.
package sbom

import (
	"bytes"
	"crypto/sha256"
	"debug/buildinfo"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strings"
	"time"
)

// Image describes the image the SBOM is for.
type Image struct {
	// Repository is the image's repository (ghcr.io/org/kong-metrics-sidecar).
	Repository string
	// Version is the release version (the image's tag).
	Version string
	// Digest is the platform image's manifest digest (sha256:…).
	Digest string
	// OS and Architecture are its platform.
	OS, Architecture string
	// BaseName and BaseDigest name the base image.
	BaseName, BaseDigest string
	// Created is the SBOM's timestamp (the commit's time, for a
	// reproducible document).
	Created time.Time
	// Binaries are the binaries' paths on disk, by their path in the image.
	Binaries map[string]string
}

// BOM is the part of the CycloneDX 1.5 JSON document this package writes.
type BOM struct {
	BOMFormat    string       `json:"bomFormat"`
	SpecVersion  string       `json:"specVersion"`
	Version      int          `json:"version"`
	Metadata     Metadata     `json:"metadata"`
	Components   []Component  `json:"components"`
	Dependencies []Dependency `json:"dependencies"`
}

// Metadata is the document's metadata: its time, the tool and the image.
type Metadata struct {
	Timestamp string    `json:"timestamp"`
	Tools     Tools     `json:"tools"`
	Component Component `json:"component"`
}

// Tools names the tool that wrote the document.
type Tools struct {
	Components []Component `json:"components"`
}

// Component is a CycloneDX component: the image, the base, a binary or a
// Go module.
type Component struct {
	BOMRef     string     `json:"bom-ref,omitempty"`
	Type       string     `json:"type"`
	Name       string     `json:"name"`
	Version    string     `json:"version,omitempty"`
	PURL       string     `json:"purl,omitempty"`
	Hashes     []Hash     `json:"hashes,omitempty"`
	Properties []Property `json:"properties,omitempty"`
}

// Hash is a component's hash.
type Hash struct {
	Alg     string `json:"alg"`
	Content string `json:"content"`
}

// Property is a name-value pair.
type Property struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Dependency says which components a component links in.
type Dependency struct {
	Ref       string   `json:"ref"`
	DependsOn []string `json:"dependsOn"`
}

// Build returns the SBOM of im.
func Build(im Image) (*BOM, error) {
	imageRef := ociPURL(im.Repository, im.Digest, im.Architecture)
	bom := &BOM{
		BOMFormat: "CycloneDX", SpecVersion: "1.5", Version: 1,
		Metadata: Metadata{
			Timestamp: im.Created.UTC().Format(time.RFC3339),
			Tools:     Tools{Components: []Component{{Type: "application", Name: "kong-metrics-sidecar release (release/cmd/release)", Version: im.Version}}},
			Component: Component{
				BOMRef: imageRef, Type: "container", Name: im.Repository, Version: im.Version, PURL: imageRef,
				Hashes:     []Hash{{Alg: "SHA-256", Content: strings.TrimPrefix(im.Digest, "sha256:")}},
				Properties: []Property{{"platform", im.OS + "/" + im.Architecture}},
			},
		},
	}
	top := Dependency{Ref: imageRef}
	if im.BaseDigest != "" {
		base := ociPURL(im.BaseName, im.BaseDigest, im.Architecture)
		bom.Components = append(bom.Components, Component{
			BOMRef: base, Type: "container", Name: im.BaseName, PURL: base,
			Hashes:     []Hash{{Alg: "SHA-256", Content: strings.TrimPrefix(im.BaseDigest, "sha256:")}},
			Properties: []Property{{"role", "base image; its own files are not listed here"}},
		})
		top.DependsOn = append(top.DependsOn, base)
	}
	modules := map[string]Component{}
	var deps []Dependency
	paths := make([]string, 0, len(im.Binaries))
	for p := range im.Binaries {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, inImage := range paths {
		file := im.Binaries[inImage]
		c, dep, mods, err := binary(inImage, file, im.Version)
		if err != nil {
			return nil, err
		}
		bom.Components = append(bom.Components, c)
		top.DependsOn = append(top.DependsOn, c.BOMRef)
		deps = append(deps, dep)
		for _, m := range mods {
			modules[m.BOMRef] = m
		}
	}
	refs := make([]string, 0, len(modules))
	for r := range modules {
		refs = append(refs, r)
	}
	sort.Strings(refs)
	for _, r := range refs {
		bom.Components = append(bom.Components, modules[r])
	}
	bom.Dependencies = append([]Dependency{top}, deps...)
	return bom, nil
}

// binary returns the component of the binary at file (at inImage in the
// image), its dependency entry and the modules it links in.
func binary(inImage, file, version string) (Component, Dependency, []Component, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return Component{}, Dependency{}, nil, fmt.Errorf("reading %s: %w", inImage, err)
	}
	bi, err := buildinfo.ReadFile(file)
	if err != nil {
		return Component{}, Dependency{}, nil, fmt.Errorf("reading the build information of %s: %w", inImage, err)
	}
	sum := sha256.Sum256(data)
	name := filepath.Base(inImage)
	c := Component{
		BOMRef: "file:" + inImage, Type: "application", Name: name, Version: version,
		Hashes: []Hash{{Alg: "SHA-256", Content: hex.EncodeToString(sum[:])}},
		Properties: []Property{
			{"path", inImage},
			{"go:main_package", bi.Path},
			{"go:version", bi.GoVersion},
		},
	}
	for _, s := range bi.Settings {
		c.Properties = append(c.Properties, Property{"go:build:" + s.Key, s.Value})
	}
	goVersion := strings.TrimPrefix(bi.GoVersion, "go")
	std := Component{BOMRef: "pkg:golang/stdlib@" + goVersion, Type: "library", Name: "stdlib", Version: goVersion, PURL: "pkg:golang/stdlib@" + goVersion}
	mods := []Component{std}
	dep := Dependency{Ref: c.BOMRef, DependsOn: []string{std.BOMRef}}
	main := module(&bi.Main)
	if main.Version == "" || main.Version == "(devel)" {
		main.Version = version
		main.PURL = golangPURL(bi.Main.Path, version)
		main.BOMRef = main.PURL
	}
	mods = append(mods, main)
	dep.DependsOn = append(dep.DependsOn, main.BOMRef)
	for _, d := range bi.Deps {
		m := module(d)
		mods = append(mods, m)
		dep.DependsOn = append(dep.DependsOn, m.BOMRef)
	}
	sort.Strings(dep.DependsOn)
	return c, dep, mods, nil
}

// module returns the component of a Go module (its replacement, if any).
func module(m *debug.Module) Component {
	if m.Replace != nil {
		r := module(m.Replace)
		r.Properties = append(r.Properties, Property{"go:replaces", m.Path + "@" + m.Version})
		return r
	}
	p := golangPURL(m.Path, m.Version)
	c := Component{BOMRef: p, Type: "library", Name: m.Path, Version: m.Version, PURL: p}
	if m.Sum != "" {
		// The go.sum hash (h1: base64 SHA-256 of the module's file list);
		// not a hash of one file, so a property rather than a CycloneDX hash.
		c.Properties = []Property{{"go:sum", m.Sum}}
	}
	return c
}

// golangPURL is the package URL of a Go module version.
func golangPURL(path, version string) string {
	return "pkg:golang/" + path + "@" + url.PathEscape(version)
}

// ociPURL is the package URL of an image, given as repository[:tag]:
// pkg:oci/<name>@sha256%3A<hex>?arch=…&repository_url=…[&tag=…].
func ociPURL(image, digest, arch string) string {
	repository, tag := image, ""
	if i := strings.LastIndexByte(image, ':'); i > strings.LastIndexByte(image, '/') {
		repository, tag = image[:i], image[i+1:]
	}
	name := repository[strings.LastIndexByte(repository, '/')+1:]
	q := url.Values{"arch": {arch}, "repository_url": {repository}}
	if tag != "" {
		q.Set("tag", tag)
	}
	return "pkg:oci/" + name + "@" + strings.ReplaceAll(digest, ":", "%3A") + "?" + q.Encode()
}

// JSON returns the document, indented, with a final newline.
func (b *BOM) JSON() ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // package URLs hold & as is
	enc.SetIndent("", "  ")
	if err := enc.Encode(b); err != nil {
		return nil, fmt.Errorf("encoding the SBOM: %w", err)
	}
	return buf.Bytes(), nil
}
