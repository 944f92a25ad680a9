// Package config reads the sidecar's settings from the environment and its
// extension file (DataPlaneMetricsExtension and KongServiceMapping
// documents), validates them fully and turns them into the selection the
// rewriter uses.
package config

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/filewatch"
	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/relabel"
)

// The kinds an extension file may hold.
const (
	ExtensionAPIVersion = "gateway-operator.konghq.com/v1alpha1"
	ExtensionKind       = "DataPlaneMetricsExtension"
	MappingAPIVersion   = "kong-metrics-sidecar.io/v1alpha1"
	MappingKind         = "KongServiceMapping"
)

// Extension is a validated extension file.
type Extension struct {
	// Selection is what the rewriter keeps and how it maps Kong services.
	Selection relabel.Selection
	// Documents is the number of non-empty YAML documents.
	Documents int
	// Hash is the hex SHA-256 of the file's content.
	Hash string
}

// ExtensionError lists the problems found in an extension file: the first
// MaxProblems, and how many more there were.
type ExtensionError struct {
	Problems []string
	More     int // problems found but not listed
}

func (e *ExtensionError) Error() string {
	if len(e.Problems) == 1 && e.More == 0 {
		return e.Problems[0]
	}
	msg := fmt.Sprintf("%d problems:\n  %s", len(e.Problems)+e.More, strings.Join(e.Problems, "\n  "))
	if e.More > 0 {
		msg += fmt.Sprintf("\n  and %d more", e.More)
	}
	return msg
}

// MaxProblems caps the problems an ExtensionError lists, and maxQuoted the
// bytes of a value a problem quotes, so that a hostile file cannot make
// megabytes of error text out of kilobytes.
const (
	MaxProblems = 20
	maxQuoted   = 64
)

// quote quotes s, shortened to maxQuoted bytes.
func quote(s string) string {
	if len(s) > maxQuoted {
		return fmt.Sprintf("%q…", s[:maxQuoted])
	}
	return fmt.Sprintf("%q", s)
}

// clipped is s shortened to maxQuoted bytes, for a field name in a path.
func clipped(s string) string {
	if len(s) > maxQuoted {
		return s[:maxQuoted] + "…"
	}
	return s
}

// LoadExtension reads and validates the extension file at path.
func LoadExtension(path string) (*Extension, error) {
	data, err := filewatch.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading extension file: %w", err)
	}
	ext, err := ParseExtension(data)
	if err != nil {
		return nil, fmt.Errorf("extension file %s: %w", path, err)
	}
	return ext, nil
}

// ParseExtension validates an extension file's content. Its error is an
// *ExtensionError listing every problem, each naming the document (index
// from 1 and metadata.name), its line and the field path.
func ParseExtension(data []byte) (*Extension, error) {
	sum := sha256.Sum256(data)
	p := &parser{
		ext: &Extension{
			Selection: relabel.Selection{Services: map[relabel.Service]relabel.Metrics{}, Mappings: map[string]relabel.Service{}},
			Hash:      hex.EncodeToString(sum[:]),
		},
		selectedBy: map[relabel.Service]string{},
		mappedBy:   map[string]string{},
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for index := 1; ; index++ {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			p.add(fmt.Sprintf("document %d: %v", index, err))
			break // the decoder cannot go on after a syntax error
		}
		if len(doc.Content) == 0 || doc.Content[0].Tag == "!!null" {
			continue // an empty document, such as a trailing ---
		}
		p.ext.Documents++
		p.document(index, doc.Content[0])
	}
	if len(p.problems) > 0 {
		return nil, &ExtensionError{Problems: p.problems, More: p.more}
	}
	return p.ext, nil
}

// configFields are spec.config's fields: relabel's flags by name, in the
// order of Kong's CRD.
var configFields = func() []string {
	names := make([]string, len(relabel.Flags))
	for i, f := range relabel.Flags {
		names[i] = f.String()
	}
	return names
}()

type parser struct {
	ext        *Extension
	problems   []string
	more       int                        // problems past MaxProblems
	doc        string                     // "document 2 (kong)" for messages
	selectedBy map[relabel.Service]string // Service → the document that selected it
	mappedBy   map[string]string          // Kong service → the document that mapped it
}

func (p *parser) fail(n *yaml.Node, path, format string, args ...any) {
	if len(p.problems) >= MaxProblems {
		p.more++
		return
	}
	p.add(fmt.Sprintf("%s, line %d: %s: %s", p.doc, n.Line, path, fmt.Sprintf(format, args...)))
}

// add lists a problem, or counts it past MaxProblems.
func (p *parser) add(problem string) {
	if len(p.problems) >= MaxProblems {
		p.more++
		return
	}
	p.problems = append(p.problems, problem)
}

func (p *parser) document(index int, n *yaml.Node) {
	p.doc = fmt.Sprintf("document %d", index)
	if n.Kind != yaml.MappingNode {
		p.fail(n, "(root)", "want a mapping with apiVersion, kind, metadata and spec, got %s", describe(n))
		return
	}
	// Name the document by metadata.name in every message, when it has one.
	if md := lookup(n, "metadata"); md != nil {
		if name := lookup(md, "name"); name != nil && name.Kind == yaml.ScalarNode && name.Value != "" {
			p.doc = fmt.Sprintf("document %d (metadata.name %s)", index, quote(name.Value))
		}
	}
	f := p.fields(n, "", "apiVersion", "kind", "metadata", "spec")
	apiVersion := p.str(p.required(f["apiVersion"], "apiVersion", n), "apiVersion")
	kind := p.str(p.required(f["kind"], "kind", n), "kind")
	switch {
	case kind == ExtensionKind && apiVersion == ExtensionAPIVersion:
		p.extension(n, f)
	case kind == MappingKind && apiVersion == MappingAPIVersion:
		p.mapping(n, f)
	case kind == ExtensionKind || kind == MappingKind:
		if apiVersion == "" {
			break // reported as missing
		}
		want := map[string]string{ExtensionKind: ExtensionAPIVersion, MappingKind: MappingAPIVersion}[kind]
		p.fail(f["apiVersion"], "apiVersion", "%s is not supported for kind %s; want %q", quote(apiVersion), kind, want)
	case kind != "":
		p.fail(f["kind"], "kind", "unknown kind %s; want %s or %s", quote(kind), ExtensionKind, MappingKind)
	}
}

func (p *parser) extension(doc *yaml.Node, f map[string]*yaml.Node) {
	md := p.fields(p.required(f["metadata"], "metadata", doc), "metadata", "name", "namespace", "labels", "annotations")
	namespace := p.str(p.required(md["namespace"], "metadata.namespace", f["metadata"]), "metadata.namespace")
	if namespace != "" && !relabel.IsNamespaceName(namespace) {
		p.fail(md["namespace"], "metadata.namespace", "%s is not a valid namespace name (a DNS-1123 label)", quote(namespace))
	}
	p.stringMap(md["labels"], "metadata.labels")
	p.stringMap(md["annotations"], "metadata.annotations")

	spec := p.fields(p.required(f["spec"], "spec", doc), "spec", "serviceSelector", "config")
	var flags relabel.Metrics
	cfg := p.fields(spec["config"], "spec.config", configFields...)
	for _, flag := range relabel.Flags {
		if p.boolean(cfg[flag.String()], "spec.config."+flag.String()) {
			flags |= flag
		}
	}
	sel := p.fields(p.required(spec["serviceSelector"], "spec.serviceSelector", f["spec"]), "spec.serviceSelector", "matchNames")
	names := p.list(p.required(sel["matchNames"], "spec.serviceSelector.matchNames", spec["serviceSelector"]), "spec.serviceSelector.matchNames")
	if sel["matchNames"] != nil && sel["matchNames"].Kind == yaml.SequenceNode && len(names) == 0 {
		p.fail(sel["matchNames"], "spec.serviceSelector.matchNames", "must list at least one Service")
	}
	for i, item := range names {
		path := fmt.Sprintf("spec.serviceSelector.matchNames[%d]", i)
		entry := p.fields(item, path, "name")
		name := p.str(p.required(entry["name"], path+".name", item), path+".name")
		if entry["name"] == nil || namespace == "" {
			continue
		}
		if !relabel.IsServiceName(name) {
			p.fail(entry["name"], path+".name", "%s is not a valid Service name (a DNS-1035 label)", quote(name))
			continue
		}
		svc := relabel.Service{Namespace: namespace, Name: name}
		if prev, dup := p.selectedBy[svc]; dup {
			p.fail(entry["name"], path+".name", "Service %s is already selected by %s", svc, prev)
			continue
		}
		p.selectedBy[svc] = p.doc
		p.ext.Selection.Services[svc] = flags
	}
}

func (p *parser) mapping(doc *yaml.Node, f map[string]*yaml.Node) {
	md := p.fields(f["metadata"], "metadata", "name", "namespace", "labels", "annotations")
	p.str(md["namespace"], "metadata.namespace")
	p.stringMap(md["labels"], "metadata.labels")
	p.stringMap(md["annotations"], "metadata.annotations")
	spec := p.fields(p.required(f["spec"], "spec", doc), "spec", "services", "multiBackend")
	for i, item := range p.list(spec["multiBackend"], "spec.multiBackend") {
		path := fmt.Sprintf("spec.multiBackend[%d]", i)
		kong := p.str(item, path)
		if item.Kind == yaml.ScalarNode && item.Tag == "!!str" && kong == "" {
			p.fail(item, path, "must not be empty")
			continue
		}
		if kong == "" {
			continue
		}
		if p.ext.Selection.MultiBackend == nil {
			p.ext.Selection.MultiBackend = map[string]struct{}{}
		}
		p.ext.Selection.MultiBackend[kong] = struct{}{}
	}
	for i, item := range p.list(p.required(spec["services"], "spec.services", f["spec"]), "spec.services") {
		path := fmt.Sprintf("spec.services[%d]", i)
		entry := p.fields(item, path, "kongService", "namespace", "name")
		kong := p.str(p.required(entry["kongService"], path+".kongService", item), path+".kongService")
		namespace := p.str(p.required(entry["namespace"], path+".namespace", item), path+".namespace")
		name := p.str(p.required(entry["name"], path+".name", item), path+".name")
		ok := true
		if entry["kongService"] != nil && kong == "" {
			p.fail(entry["kongService"], path+".kongService", "must not be empty")
			ok = false
		}
		if entry["namespace"] != nil && !relabel.IsNamespaceName(namespace) {
			p.fail(entry["namespace"], path+".namespace", "%s is not a valid namespace name (a DNS-1123 label)", quote(namespace))
			ok = false
		}
		if entry["name"] != nil && !relabel.IsServiceName(name) {
			p.fail(entry["name"], path+".name", "%s is not a valid Service name (a DNS-1035 label)", quote(name))
			ok = false
		}
		if !ok || kong == "" || namespace == "" || name == "" {
			continue
		}
		if prev, dup := p.mappedBy[kong]; dup {
			p.fail(entry["kongService"], path+".kongService", "Kong service %s is already mapped by %s", quote(kong), prev)
			continue
		}
		p.mappedBy[kong] = p.doc
		p.ext.Selection.Mappings[kong] = relabel.Service{Namespace: namespace, Name: name}
	}
}

// fields checks that n (when present) is a mapping whose keys are all in
// allowed, each once, and returns the values by key.
func (p *parser) fields(n *yaml.Node, path string, allowed ...string) map[string]*yaml.Node {
	out := map[string]*yaml.Node{}
	if n == nil {
		return out
	}
	if n.Kind != yaml.MappingNode {
		p.fail(n, orRoot(path), "want a mapping, got %s", describe(n))
		return out
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		field := join(path, clipped(k.Value))
		switch {
		case !slices.Contains(allowed, k.Value):
			p.fail(k, field, "unknown field (allowed: %s)", strings.Join(allowed, ", "))
		case out[k.Value] != nil:
			p.fail(k, field, "field given twice")
		default:
			out[k.Value] = v
		}
	}
	return out
}

func (p *parser) required(n *yaml.Node, path string, parent *yaml.Node) *yaml.Node {
	if n == nil && parent != nil {
		p.fail(parent, path, "required field is missing")
	}
	return n
}

func (p *parser) str(n *yaml.Node, path string) string {
	if n == nil {
		return ""
	}
	if n.Kind != yaml.ScalarNode || n.Tag != "!!str" {
		p.fail(n, path, "want a string, got %s", describe(n))
		return ""
	}
	return n.Value
}

func (p *parser) boolean(n *yaml.Node, path string) bool {
	if n == nil {
		return false
	}
	if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
		p.fail(n, path, "want true or false, got %s", describe(n))
		return false
	}
	var b bool
	if err := n.Decode(&b); err != nil {
		p.fail(n, path, "%v", err)
	}
	return b
}

func (p *parser) list(n *yaml.Node, path string) []*yaml.Node {
	if n == nil {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		p.fail(n, path, "want a list, got %s", describe(n))
		return nil
	}
	return n.Content
}

func (p *parser) stringMap(n *yaml.Node, path string) {
	if n == nil {
		return
	}
	if n.Kind != yaml.MappingNode {
		p.fail(n, path, "want a mapping of strings, got %s", describe(n))
		return
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		p.str(n.Content[i+1], join(path, n.Content[i].Value))
	}
}

func lookup(n *yaml.Node, key string) *yaml.Node {
	if n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	}
	switch n.Tag {
	case "!!str":
		return "the string " + quote(n.Value)
	case "!!null":
		return "null"
	}
	return fmt.Sprintf("%s %s", clipped(strings.TrimPrefix(n.Tag, "!!")), clipped(n.Value))
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func orRoot(path string) string {
	if path == "" {
		return "(root)"
	}
	return path
}
