package relabel

import (
	"bytes"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
)

// AddedLabels are the labels every kept series gains, in output order.
var AddedLabels = [...]string{"kubernetes_namespace", "kubernetes_name", "kubernetes_kind", "exported_namespace", "exported_service"}

// RenamedServiceLabel is the name Kong's `service` label gets, so that it can
// never clash with a Prometheus target label.
const RenamedServiceLabel = "kong_service"

// family describes one Kong metric family the rewriter can keep.
type family struct {
	name      string // family name as in # HELP and # TYPE
	flag      Family
	keyLabel  string // the label naming the Kong service or upstream
	histogram bool
}

// families are the Kong families a selection can keep, by index.
var families = [...]family{
	{"kong_bandwidth_bytes", Bandwidth, "service", false},
	{"kong_http_requests_total", StatusCode, "service", false},
	{"kong_kong_latency_ms", Latency, "service", true},
	{"kong_request_latency_ms", Latency, "service", true},
	{"kong_upstream_latency_ms", Latency, "service", true},
	{"kong_upstream_target_health", UpstreamHealth, "upstream", false},
}

// FamilyNames lists the Kong family names a flag keeps.
func FamilyNames(f Family) []string {
	var names []string
	for _, fam := range families {
		if f&fam.flag != 0 {
			names = append(names, fam.name)
		}
	}
	return names
}

var (
	familyByName   = map[string]int{} // family name → index into families
	familyBySeries = map[string]int{} // series name (with _bucket, _sum, _count) → index
)

func init() {
	for i, f := range families {
		familyByName[f.name] = i
		if !f.histogram {
			familyBySeries[f.name] = i
			continue
		}
		for _, suffix := range []string{"_bucket", "_count", "_sum"} {
			familyBySeries[f.name+suffix] = i
		}
	}
}

// DropReason says why a line was not kept.
type DropReason int

// The reasons for dropping a series line.
const (
	// DropFamily: the line belongs to a family no flag keeps.
	DropFamily DropReason = iota
	// DropUnselected: the series' Service is not selected for its family.
	DropUnselected
	// DropUnresolved: the series' Kong service maps to no Kubernetes Service.
	DropUnresolved
	// DropMalformed: the line is not valid text exposition format.
	DropMalformed
	numDropReasons
)

// DropReasons lists every DropReason.
var DropReasons = [...]DropReason{DropFamily, DropUnselected, DropUnresolved, DropMalformed}

func (r DropReason) String() string {
	return [...]string{"family", "unselected", "unresolved", "malformed"}[r]
}

// Stats counts the series lines of one page.
type Stats struct {
	Kept    int
	Dropped [numDropReasons]int
}

// maxCachedTargets bounds the resolution cache, so a page full of distinct
// hostile names cannot grow it without limit.
const maxCachedTargets = 1 << 16

// Rewriter rewrites pages for one Selection. It is safe for concurrent use;
// it caches what each Kong service name resolves to.
type Rewriter struct {
	sel Selection

	mu    sync.RWMutex          // Protects cache.
	cache [2]map[string]*target // by key kind (service, upstream), then the raw label value
}

// target is what one Kong service or upstream name resolves to.
type target struct {
	resolved bool
	families Family // kept for the resolved Service
	labels   []byte // ,kubernetes_namespace="…",…,exported_service="…"
}

const (
	keyService = iota
	keyUpstream
)

// New returns a Rewriter for sel. sel must not be modified afterwards.
func New(sel Selection) *Rewriter {
	return &Rewriter{sel: sel, cache: [2]map[string]*target{{}, {}}}
}

// Selection returns the selection the Rewriter was made for.
func (rw *Rewriter) Selection() Selection { return rw.sel }

func (rw *Rewriter) target(kind int, raw []byte) *target {
	rw.mu.RLock()
	t := rw.cache[kind][string(raw)]
	rw.mu.RUnlock()
	if t != nil {
		return t
	}
	t = rw.resolve(kind, unescapeLabelValue(raw))
	rw.mu.Lock()
	if len(rw.cache[kind]) < maxCachedTargets {
		rw.cache[kind][string(raw)] = t
	}
	rw.mu.Unlock()
	return t
}

func (rw *Rewriter) resolve(kind int, name string) *target {
	svc, ok := rw.sel.Mappings[name]
	if !ok {
		if kind == keyUpstream {
			svc, ok = ResolveUpstreamName(name)
		} else {
			svc, ok = ResolveServiceName(name)
		}
	}
	if !ok {
		return &target{}
	}
	// Service names are DNS labels (validated by the resolver and the
	// config), so they need no escaping.
	labels := make([]byte, 0, 128)
	for i, v := range [...]string{svc.Namespace, svc.Name, "Service", svc.Namespace, svc.Name} {
		labels = append(labels, ',')
		labels = append(labels, AddedLabels[i]...)
		labels = append(labels, '=', '"')
		labels = append(labels, v...)
		labels = append(labels, '"')
	}
	return &target{resolved: true, families: rw.sel.Services[svc], labels: labels}
}

// Page rewrites one page, line by line. A Page is not safe for concurrent
// use; make one per page with NewPage.
type Page struct {
	rw *Rewriter

	// The last resolved key, since consecutive lines mostly share it.
	lastKind   int
	lastKey    []byte
	lastTarget *target

	help, typ [len(families)][]byte // # HELP / # TYPE lines waiting for the family's first kept series
	emitted   [len(families)]bool   // HELP/TYPE written for the family

	labels []labelPair // scratch for the line being rewritten
	stats  Stats
}

type labelPair struct {
	name, value []byte // value as on the wire, without quotes
	clean       bool   // value is printable ASCII without backslashes: copy it as it is
}

// NewPage starts a page.
func (rw *Rewriter) NewPage() *Page {
	return &Page{rw: rw, lastKind: -1, labels: make([]labelPair, 0, 16)}
}

// SkipLine counts a line the caller could not hand over (one too long to
// hold) as malformed.
func (p *Page) SkipLine() { p.stats.Dropped[DropMalformed]++ }

// Stats returns the counts so far.
func (p *Page) Stats() Stats { return p.stats }

// AppendLine appends the rewrite of line (one line of Kong's page, without
// its '\n') to dst and returns the extended slice. Nothing is appended for
// a dropped line.
func (p *Page) AppendLine(dst, line []byte) []byte {
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	if len(line) == 0 {
		return dst
	}
	if line[0] == '#' {
		p.comment(line)
		return dst
	}
	nameEnd := bytes.IndexAny(line, "{ \t")
	if nameEnd < 0 {
		p.stats.Dropped[DropMalformed]++
		return dst
	}
	fi, ok := familyBySeries[string(line[:nameEnd])]
	if !ok {
		// Fast path - most of Kong's lines belong to families nobody keeps.
		p.stats.Dropped[DropFamily]++
		return dst
	}
	fam := &families[fi]
	if line[nameEnd] != '{' {
		p.stats.Dropped[DropUnresolved]++
		return dst
	}
	labels, rest, ok := p.parseLabels(line[nameEnd+1:])
	if !ok || !validSampleValue(rest) {
		p.stats.Dropped[DropMalformed]++
		return dst
	}
	key, le := -1, -1
	for i, l := range labels {
		switch string(l.name) {
		case fam.keyLabel:
			key = i
		case "le":
			le = i
		case RenamedServiceLabel, AddedLabels[0], AddedLabels[1], AddedLabels[2], AddedLabels[3], AddedLabels[4]:
			// Kong never sends these; a line that does would end with a label twice.
			p.stats.Dropped[DropMalformed]++
			return dst
		}
	}
	if key < 0 {
		p.stats.Dropped[DropUnresolved]++
		return dst
	}
	t := p.lookup(fam.keyLabel, labels[key].value)
	switch {
	case !t.resolved:
		p.stats.Dropped[DropUnresolved]++
		return dst
	case t.families&fam.flag == 0:
		p.stats.Dropped[DropUnselected]++
		return dst
	}
	p.stats.Kept++
	if !p.emitted[fi] {
		p.emitted[fi] = true
		dst = appendLines(dst, p.help[fi], p.typ[fi])
	}
	dst = append(dst, line[:nameEnd+1]...)
	sep := false
	for i, l := range labels {
		if i == le {
			continue
		}
		if sep {
			dst = append(dst, ',')
		}
		sep = true
		dst = appendLabel(dst, l)
	}
	added := t.labels
	if !sep {
		added = added[1:]
	}
	dst = append(dst, added...)
	if le >= 0 {
		dst = append(dst, ',')
		dst = appendLabel(dst, labels[le])
	}
	dst = append(dst, '}')
	dst = append(dst, rest...)
	return append(dst, '\n')
}

func appendLines(dst []byte, lines ...[]byte) []byte {
	for _, l := range lines {
		if len(l) > 0 {
			dst = append(dst, l...)
			dst = append(dst, '\n')
		}
	}
	return dst
}

func appendLabel(dst []byte, l labelPair) []byte {
	if string(l.name) == "service" {
		dst = append(dst, RenamedServiceLabel...)
	} else {
		dst = append(dst, l.name...)
	}
	dst = append(dst, '=', '"')
	if l.clean {
		dst = append(dst, l.value...)
	} else {
		// Slow path - re-escape whatever the upstream sent.
		dst = appendEscaped(dst, unescapeLabelValue(l.value))
	}
	return append(dst, '"')
}

func (p *Page) lookup(keyLabel string, raw []byte) *target {
	kind := keyService
	if keyLabel == "upstream" {
		kind = keyUpstream
	}
	if p.lastTarget != nil && p.lastKind == kind && bytes.Equal(p.lastKey, raw) {
		return p.lastTarget
	}
	t := p.rw.target(kind, raw)
	p.lastKind, p.lastKey, p.lastTarget = kind, append(p.lastKey[:0], raw...), t
	return t
}

// comment handles # HELP and # TYPE lines: those of kept families wait until
// the family's first kept series, and are written once per page even when
// Kong repeats the family (as it does with a stream listener).
func (p *Page) comment(line []byte) {
	var isHelp bool
	var rest []byte
	switch {
	case bytes.HasPrefix(line, []byte("# HELP ")):
		isHelp, rest = true, line[len("# HELP "):]
	case bytes.HasPrefix(line, []byte("# TYPE ")):
		rest = line[len("# TYPE "):]
	default:
		return
	}
	name, text, _ := bytes.Cut(rest, []byte(" "))
	fi, ok := familyByName[string(name)]
	if !ok || p.emitted[fi] || !validComment(isHelp, families[fi].histogram, text) {
		return
	}
	if isHelp {
		p.help[fi] = append(p.help[fi][:0], line...)
	} else {
		p.typ[fi] = append(p.typ[fi][:0], line...)
	}
}

// validComment checks a HELP text or TYPE for what a strict parser takes: a
// HELP text with only \\ and \n escapes in valid UTF-8, and the type Kong
// gives the family. A line that fails is dropped; the family is then
// written without it.
func validComment(isHelp, histogram bool, text []byte) bool {
	if isHelp {
		for i := 0; i < len(text); i++ {
			if text[i] == '\\' {
				if i+1 == len(text) || (text[i+1] != '\\' && text[i+1] != 'n') {
					return false
				}
				i++
			}
		}
		return utf8.Valid(text)
	}
	switch string(text) {
	case "histogram":
		return histogram
	case "counter", "gauge", "untyped":
		return !histogram
	}
	return false
}

// parseLabels splits `name="value",…}` into p.labels and returns what follows
// the closing brace.
func (p *Page) parseLabels(s []byte) (labels []labelPair, rest []byte, ok bool) {
	labels = p.labels[:0]
	defer func() { p.labels = labels[:0] }()
	for {
		if len(s) > 0 && s[0] == '}' {
			return labels, s[1:], true
		}
		eq := bytes.IndexByte(s, '=')
		if eq <= 0 || !validLabelName(s[:eq]) || eq+1 >= len(s) || s[eq+1] != '"' {
			return nil, nil, false
		}
		l := labelPair{name: s[:eq], clean: true}
		s = s[eq+2:]
		end := -1
		for i := 0; i < len(s); i++ {
			c := s[i]
			if c == '"' {
				end = i
				break
			}
			if c == '\\' {
				l.clean = false
				i++ // skip the escaped byte
			} else if c >= utf8.RuneSelf {
				l.clean = false
			}
		}
		if end < 0 {
			return nil, nil, false
		}
		l.value, s = s[:end], s[end+1:]
		labels = append(labels, l)
		switch {
		case len(s) > 0 && s[0] == ',':
			s = s[1:]
		case len(s) > 0 && s[0] == '}':
		default:
			return nil, nil, false
		}
	}
}

func validLabelName(b []byte) bool {
	for i, c := range b {
		switch {
		case c == '_', c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return len(b) > 0
}

// validSampleValue checks what follows the labels: " <value>" and an
// optional " <timestamp>".
func validSampleValue(rest []byte) bool {
	if len(rest) == 0 || (rest[0] != ' ' && rest[0] != '\t') {
		return false
	}
	value, rest := nextField(rest)
	if value == nil {
		return false
	}
	timestamp, rest := nextField(rest)
	if extra, _ := nextField(rest); extra != nil {
		return false
	}
	if !isPlainInteger(value) {
		// Slow path - Kong's %.14g also prints fractions and exponents.
		if bytes.ContainsAny(value, "pP_") {
			return false
		}
		if _, err := strconv.ParseFloat(string(value), 64); err != nil {
			return false
		}
	}
	if timestamp != nil {
		if _, err := strconv.ParseInt(string(timestamp), 10, 64); err != nil {
			return false
		}
	}
	return true
}

// nextField skips blanks and returns the next blank-separated field, or nil.
func nextField(s []byte) (field, rest []byte) {
	i := 0
	for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
		i++
	}
	j := i
	for j < len(s) && s[j] != ' ' && s[j] != '\t' {
		j++
	}
	if i == j {
		return nil, nil
	}
	return s[i:j], s[j:]
}

func isPlainInteger(s []byte) bool {
	if len(s) > 0 && s[0] == '-' {
		s = s[1:]
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return len(s) > 0
}

// unescapeLabelValue decodes a label value as Prometheus' text format
// escapes it (\\, \", \n). A backslash before any other byte stands for
// itself, and invalid UTF-8 becomes U+FFFD.
func unescapeLabelValue(raw []byte) string {
	if bytes.IndexByte(raw, '\\') < 0 {
		return strings.ToValidUTF8(string(raw), "\uFFFD")
	}
	var b strings.Builder
	b.Grow(len(raw))
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c == '\\' && i+1 < len(raw) {
			switch raw[i+1] {
			case '\\', '"':
				c = raw[i+1]
				i++
			case 'n':
				c = '\n'
				i++
			}
		}
		b.WriteByte(c)
	}
	return strings.ToValidUTF8(b.String(), "\uFFFD")
}

// appendEscaped appends v escaped for a label value.
func appendEscaped(dst []byte, v string) []byte {
	for i := 0; i < len(v); i++ {
		switch c := v[i]; c {
		case '\\':
			dst = append(dst, '\\', '\\')
		case '"':
			dst = append(dst, '\\', '"')
		case '\n':
			dst = append(dst, '\\', 'n')
		default:
			dst = append(dst, c)
		}
	}
	return dst
}
