package relabel

import (
	"bytes"
	"encoding/binary"
	"math/bits"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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

// upstreamFamily is the family whose key is upstream, not service.
const upstreamFamily = 5

var (
	familyByName   = map[string]int{} // family name → index into families
	familyBySeries = map[string]int{} // series name (with _bucket, _sum, _count) → index

	keyPrefix [len(families)]string // `service="` or `upstream="`, by family
	keyKind   [len(families)]int    // keyService or keyUpstream, by family
)

func init() {
	for i, f := range families {
		familyByName[f.name] = i
		keyPrefix[i] = f.keyLabel + `="`
		if f.keyLabel == "upstream" {
			keyKind[i] = keyUpstream
		}
		if (f.keyLabel == "upstream") != (i == upstreamFamily) {
			panic("BUG: upstreamFamily is not the family keyed by upstream")
		}
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
	// DropMalformed: the line is not valid text exposition format. A line
	// is only checked in full once its family and key say it is kept, so
	// a malformed line of a dropped Service counts under the reason its
	// key gives (see reference_test.go for the exact rules).
	DropMalformed
	// DropMultiBackend: the series' Kong service is tagged with a kind
	// other than Service (KIC tags a rule with several backends with its
	// HTTPRoute), so it stands for no single Kubernetes Service.
	DropMultiBackend
	numDropReasons
)

// DropReasons lists every DropReason.
var DropReasons = [...]DropReason{DropFamily, DropUnselected, DropUnresolved, DropMalformed, DropMultiBackend}

func (r DropReason) String() string {
	return [...]string{"family", "unselected", "unresolved", "malformed", "multi_backend"}[r]
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

	tailBytes atomic.Int64 // bytes held in the targets' tails
}

// target is what one Kong service or upstream name resolves to.
type target struct {
	key      string // the raw label value
	resolved bool
	multi    bool   // tagged with a kind other than Service: drop as DropMultiBackend
	families Family // kept for the resolved Service
	labels   []byte // ,kubernetes_namespace="…",…,exported_service="…"

	// next is the target looked up after this one the last time: Kong
	// writes every family in the same order of services, so it is the
	// right guess for all but the first run of a page, and spares the map.
	next atomic.Pointer[target]

	// tails are label tails of this key already found in Kong's plain
	// shape: see Page.appendKnownTail. The set is never changed once
	// published; a new tail publishes a new set.
	tails atomic.Pointer[tailSet]
}

// tailSet is what a target's tails point to.
type tailSet struct{ tails [][]byte }

// Bounds of the tails a Rewriter remembers: a few routes per Kong service,
// and a total that a hostile page cannot grow without limit.
const (
	maxTailsPerTarget = 4
	maxTailLen        = 256
	maxTailBytes      = 4 << 20
)

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
	t.key = string(raw)
	rw.mu.Lock()
	if len(rw.cache[kind]) < maxCachedTargets {
		rw.cache[kind][t.key] = t
	}
	rw.mu.Unlock()
	return t
}

func (rw *Rewriter) resolve(kind int, name string) *target {
	svc, ok := rw.sel.Mappings[name]
	if !ok && kind == keyService && rw.sel.Tags != nil {
		tag, seen := rw.sel.Tags[name]
		switch {
		case !seen:
			if rw.sel.OnUnseen != nil {
				rw.sel.OnUnseen(name)
			}
		case tag.Kind == "Service":
			svc, ok = tag.Service, true
		case tag.Kind != "":
			return &target{multi: true}
		}
	}
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

// drop reports whether t drops a series of fam, and why.
func (t *target) drop(fam *family) (DropReason, bool) {
	switch {
	case t.multi:
		return DropMultiBackend, true
	case !t.resolved:
		return DropUnresolved, true
	case t.families&fam.flag == 0:
		return DropUnselected, true
	}
	return 0, false
}

// Page rewrites one page, line by line. A Page is not safe for concurrent
// use; make one per page with NewPage.
//
// Kong writes each family's series in one run, sorted, with the service
// label first, and a histogram's buckets one after another. The Page
// remembers the last series name, the last key and the last kept line, so
// that a line like the one before costs a comparison, not a parse.
type Page struct {
	rw *Rewriter

	// The last series name and its family (-1: none kept).
	lastName   []byte
	lastFamily int

	// The last resolved key, since consecutive lines mostly share it.
	lastKind   int
	lastTarget *target

	// The run of kept lines under way: the last kept line up to the start
	// of its last label (the next bucket of a histogram differs only from
	// there on), and what is known of that part.
	run       []byte
	runName   int // where the name ends in run
	runFamily int
	runTarget *target
	runShape  plainShape
	runOut    []byte // the rewrite of the run's head with the added labels, when the last label is le

	help, typ [len(families)][]byte // # HELP / # TYPE lines waiting for the family's first kept series
	emitted   [len(families)]bool   // HELP/TYPE written for the family

	labels []labelPair // scratch for the line being rewritten on the slow path
	stats  Stats
}

type labelPair struct {
	name, value []byte // value as on the wire, without quotes
	clean       bool   // value is printable ASCII without backslashes: copy it as it is
}

// NewPage starts a page.
func (rw *Rewriter) NewPage() *Page {
	return &Page{rw: rw, lastFamily: -1, lastKind: -1, labels: make([]labelPair, 0, 16)}
}

// SkipLine counts a line the caller could not hand over (one too long to
// hold) as malformed.
func (p *Page) SkipLine() { p.stats.Dropped[DropMalformed]++ }

// Stats returns the counts so far.
func (p *Page) Stats() Stats { return p.stats }

// AppendLine appends the rewrite of line (one line of Kong's page, without
// its '\n') to dst and returns the extended slice. Nothing is appended for
// a dropped line. AppendLine keeps no reference to line.
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
	if len(p.run) > 0 {
		// Fast path - the next line of the run: the name, key and all the
		// labels but the last are those of a line already checked.
		if len(line) > len(p.run) && string(line[:len(p.run)]) == string(p.run) {
			if out, ok := p.appendRun(dst, line); ok {
				return out
			}
		}
		p.run = p.run[:0]
	}
	fi, nameEnd := p.family(line)
	switch {
	case nameEnd < 0:
		p.stats.Dropped[DropMalformed]++
		return dst
	case fi < 0:
		// Fast path - most of Kong's lines belong to families nobody keeps.
		p.stats.Dropped[DropFamily]++
		return dst
	case line[nameEnd] != '{':
		p.stats.Dropped[DropUnresolved]++
		return dst
	}
	fam := &families[fi]
	body := line[nameEnd+1:]
	// Fast path - Kong writes the key label first, and its value is a plain
	// name: it decides a drop without the rest of the line being read, and
	// a kept line in Kong's shape is copied in a few pieces.
	if key, ascii, ok := leadingKey(body, keyPrefix[fi]); ok {
		t := p.lookup(keyKind[fi], key)
		if reason, drop := t.drop(fam); drop {
			p.stats.Dropped[reason]++
			return dst
		}
		keyEnd := len(keyPrefix[fi]) + len(key) + 1
		if !ascii {
			return p.appendParsed(dst, line, nameEnd, fi)
		}
		if fam.histogram {
			if out, ok := p.appendKnownTail(dst, line, nameEnd, fi, t, keyEnd); ok {
				return out
			}
		}
		sh := plainShape{last: -1}
		if fi != upstreamFamily {
			sh.renames[0], sh.nRenames = 0, 1 // the key label is service
		}
		if sh.parse(body, keyEnd) {
			if fam.histogram && sh.nRenames == 1 {
				p.rw.rememberTail(t, body[keyEnd:sh.split])
			}
			dst = p.keep(dst, fi)
			at := len(dst)
			dst = sh.appendTo(dst, line[:nameEnd+1], body, t.labels)
			// The rewrite up to the split: all of it but body[split:] and '\n'.
			p.startRun(line[:nameEnd+1+sh.last], fi, t, sh, dst[at:len(dst)-(len(body)-sh.split)-1])
			return dst
		}
	}
	// Slow path - anything else: parse the labels in full.
	return p.appendParsed(dst, line, nameEnd, fi)
}

// startRun remembers a kept line, up to the start of its last label, as
// the head of a run; out is its rewrite up to the split.
func (p *Page) startRun(head []byte, fi int, t *target, sh plainShape, out []byte) {
	if sh.last <= 0 {
		return // no label after the key
	}
	p.run = append(p.run[:0], head...)
	p.runName, p.runFamily, p.runTarget = bytes.IndexByte(head, '{'), fi, t
	// Keep what lies in the head.
	p.runShape = plainShape{last: -1}
	for _, at := range sh.renames[:sh.nRenames] {
		if at < sh.last {
			p.runShape.renames[p.runShape.nRenames] = at
			p.runShape.nRenames++
		}
	}
	// When the last label is le, the added labels go just before it, and
	// every line of the run starts as this one did up to there.
	p.runOut = p.runOut[:0]
	if sh.split == sh.last-1 {
		p.runOut = append(p.runOut, out...)
	}
}

// appendRun writes a line that starts with the run's head, when the rest
// of it has Kong's shape too.
func (p *Page) appendRun(dst, line []byte) ([]byte, bool) {
	nameEnd := p.runName
	body := line[nameEnd+1:]
	headEnd := len(p.run) - nameEnd - 1 // the head ends with the comma before the last label
	if len(p.runOut) > 0 && bytes.HasPrefix(body[headEnd:], []byte(`le="`)) {
		// Fast path - the next bucket: the run's rewritten head and added
		// labels, then this line's le and sample.
		if v := body[headEnd+len(`le="`):]; isKongBucketTail(v) || validBucketTail(v) {
			dst = p.keep(dst, p.runFamily)
			dst = append(dst, p.runOut...)
			dst = append(dst, body[headEnd-1:]...)
			return append(dst, '\n'), true
		}
	}
	sh := p.runShape
	if !sh.parse(body, headEnd-1) {
		return dst, false
	}
	dst = p.keep(dst, p.runFamily)
	return sh.appendTo(dst, line[:nameEnd+1], body, p.runTarget.labels), true
}

// appendKnownTail writes a histogram line whose labels after the key
// (keyEnd on in body) are a tail this key had before, when what follows the
// tail is the closing brace and a valid sample, or a valid last le label.
//
// Kong writes a histogram's buckets, then its counts, then its sums, each
// in the order of the series: a _count or _sum line and the first bucket
// of a series never follow a line like them, so the run cannot spare their
// parse, but the series' first bucket of the page before (or of the family
// before) has already checked their labels.
func (p *Page) appendKnownTail(dst, line []byte, nameEnd, fi int, t *target, keyEnd int) ([]byte, bool) {
	ts := t.tails.Load()
	if ts == nil {
		return dst, false
	}
	body := line[nameEnd+1:]
	rest := body[keyEnd:]
	for _, tail := range ts.tails {
		if len(rest) <= len(tail) || string(rest[:len(tail)]) != string(tail) {
			continue
		}
		split := keyEnd + len(tail)
		sh := plainShape{split: split, last: -1, nRenames: 1} // renames[0] = 0: the key
		switch after := body[split:]; {
		case after[0] == '}':
			if !validSampleValue(after[1:]) {
				return dst, false
			}
		case len(after) > len(`,le="`) && string(after[:len(`,le="`)]) == `,le="`:
			if v := after[len(`,le="`):]; !isKongBucketTail(v) && !validBucketTail(v) {
				return dst, false
			}
			sh.last = split + 1
		default:
			continue
		}
		dst = p.keep(dst, fi)
		at := len(dst)
		dst = sh.appendTo(dst, line[:nameEnd+1], body, t.labels)
		if sh.last > 0 {
			p.startRun(line[:nameEnd+1+sh.last], fi, t, sh, dst[at:len(dst)-(len(body)-split)-1])
		}
		return dst, true
	}
	return dst, false
}

// rememberTail adds tail, labels after t's key that plainShape.parse has
// found in Kong's shape with no service label among them, to t's tails.
func (rw *Rewriter) rememberTail(t *target, tail []byte) {
	old := t.tails.Load()
	var tails [][]byte
	if old != nil {
		tails = old.tails
	}
	if len(tails) >= maxTailsPerTarget || len(tail) > maxTailLen {
		return
	}
	for _, known := range tails {
		if string(known) == string(tail) {
			return
		}
	}
	if rw.tailBytes.Add(int64(len(tail))) > maxTailBytes {
		rw.tailBytes.Add(-int64(len(tail)))
		return
	}
	next := &tailSet{tails: append(append(make([][]byte, 0, len(tails)+1), tails...), bytes.Clone(tail))}
	t.tails.CompareAndSwap(old, next) // losing a race loses nothing but speed
}

// isKongBucketTail reports whether v, what follows `le="` on a bucket line,
// is as Kong writes it: a bound of digits or +Inf, `"} ` and a count of
// digits. It is validBucketTail for Kong's own shape, in one pass over a
// dozen bytes, since nine lines in ten of a page with everything selected
// end this way.
func isKongBucketTail(v []byte) bool {
	i := 0
	if len(v) >= 4 && string(v[:4]) == "+Inf" {
		i = 4
	} else {
		for i < len(v) && v[i]-'0' <= 9 {
			i++
		}
		if i == 0 {
			return false
		}
	}
	if len(v) < i+4 || v[i] != '"' || v[i+1] != '}' || v[i+2] != ' ' {
		return false
	}
	return allDigits(v[i+3:])
}

// allDigits reports whether every byte of s is a decimal digit. It has no
// branch per byte: c-'0' and '9'-c both stay below 0x80 only for a digit.
func allDigits(s []byte) bool {
	var bad byte
	for _, c := range s {
		bad |= (c - '0') | ('9' - c)
	}
	return bad < 0x80
}

// validBucketTail reports whether v, what follows `le="` on a bucket line,
// is a plain float bound closing the labels and a valid sample value.
func validBucketTail(v []byte) bool {
	end, flags := scanValue(v)
	return end >= 0 && flags == 0 && end+1 < len(v) && v[end+1] == '}' && validFloat(v[:end]) && validSampleValue(v[end+2:])
}

// family returns the index of the family of line's series name (-1 when no
// flag keeps it) and where the name ends (-1 when nothing does).
func (p *Page) family(line []byte) (fi, nameEnd int) {
	// Fast path - the same name as the line before.
	if n := len(p.lastName); n < len(line) && isNameEnd(line[n]) && string(line[:n]) == string(p.lastName) {
		return p.lastFamily, n
	}
	nameEnd = bytes.IndexAny(line, "{ \t")
	if nameEnd < 0 {
		return -1, -1
	}
	fi, ok := familyBySeries[string(line[:nameEnd])]
	if !ok {
		fi = -1
	}
	p.lastName, p.lastFamily = append(p.lastName[:0], line[:nameEnd]...), fi
	return fi, nameEnd
}

func isNameEnd(c byte) bool { return c == '{' || c == ' ' || c == '\t' }

// leadingKey returns the value of the label that prefix (`service="`)
// starts body with, when that value holds no backslash, and whether the
// value is printable ASCII.
func leadingKey(body []byte, prefix string) (key []byte, ascii, ok bool) {
	if len(body) < len(prefix) || string(body[:len(prefix)]) != prefix {
		return nil, false, false
	}
	v := body[len(prefix):]
	end, flags := scanValue(v)
	if end < 0 || flags&seenBackslash != 0 {
		return nil, false, false
	}
	return v[:end], flags == 0, true
}

// What scanValue saw before the closing quote.
const (
	seenBackslash = 1 << iota
	seenHigh      // a byte from 0x80 on
)

// SWAR constants: a byte value in every byte of a word.
const (
	ones   = 0x0101010101010101
	highs  = 0x8080808080808080
	quotes = 0x2222222222222222 // '"'
	backs  = 0x5c5c5c5c5c5c5c5c // '\\'
)

// zeroBytes flags the zero bytes of x with their high bit. Above the
// lowest zero byte it may flag others too, never below it.
func zeroBytes(x uint64) uint64 { return (x - ones) &^ x & highs }

// scanValue finds the quote that ends a label value in v and reports
// whether a backslash or a non-ASCII byte came before it; end is -1 when
// there is no quote.
//
// It reads eight bytes at a time, since this runs for every label of
// every kept line (and the key of every line): quotes and backslashes are
// the zero bytes of the word XOR '"' and XOR '\\', and the high bit marks
// the non-ASCII bytes.
func scanValue(v []byte) (end, flags int) {
	i := 0
	for ; i+8 <= len(v); i += 8 {
		x := binary.LittleEndian.Uint64(v[i:])
		q := zeroBytes(x ^ quotes)
		bs, hi := zeroBytes(x^backs), x&highs
		if q != 0 {
			below := q&-q - 1 // the bits of the bytes before the quote, and 7 of its own
			bs, hi = bs&below, hi&below
		}
		if bs != 0 {
			flags |= seenBackslash
		}
		if hi != 0 {
			flags |= seenHigh
		}
		if q != 0 {
			return i + bits.TrailingZeros64(q)/8, flags
		}
	}
	for ; i < len(v); i++ {
		switch c := v[i]; {
		case c == '"':
			return i, flags
		case c == '\\':
			flags |= seenBackslash
		case c >= utf8.RuneSelf:
			flags |= seenHigh
		}
	}
	return -1, flags
}

func (p *Page) lookup(kind int, raw []byte) *target {
	last := p.lastTarget
	if last != nil && p.lastKind == kind {
		// Fast path - the key of the line before, or the one that came
		// after it last time.
		if last.key == string(raw) {
			return last
		}
		if next := last.next.Load(); next != nil && next.key == string(raw) {
			p.lastTarget = next
			return next
		}
	}
	t := p.rw.target(kind, raw)
	if last != nil && p.lastKind == kind {
		last.next.Store(t)
	}
	p.lastKind, p.lastTarget = kind, t
	return t
}

// keep counts a kept series of family fi and writes the family's HELP and
// TYPE before its first one.
func (p *Page) keep(dst []byte, fi int) []byte {
	p.stats.Kept++
	if !p.emitted[fi] {
		p.emitted[fi] = true
		dst = appendLines(dst, p.help[fi], p.typ[fi])
	}
	return dst
}

// plainShape says where to cut a kept line in Kong's shape, one whose
// label values are all printable ASCII without backslashes, so they are
// written as they came, and whose le label, if any, is the last.
type plainShape struct {
	split    int    // where the added labels go: the comma before le, or the closing brace
	last     int    // where the last label starts; -1 while there is none but the key
	renames  [2]int // where service labels start, which become kong_service
	nRenames int
}

// nameChars are the bytes of a label name (digits not first).
var nameChars = func() (t [256]bool) {
	for c := range 256 {
		t[c] = c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
	}
	return t
}()

// parse reads the labels of body (what follows '{') from i, the end of
// the labels already read (the key's, or a run's head), and reports
// whether the line has the shape plainShape describes, is valid and
// carries none of the labels the rewriter adds. When it does not, the
// slow path gives the verdict.
func (sh *plainShape) parse(body []byte, i int) bool {
	le := -1 // where the le label starts
	for {
		if i >= len(body) {
			return false
		}
		if body[i] == '}' {
			break
		}
		if body[i] != ',' || le >= 0 { // le must be the last label
			return false
		}
		i++
		j := i
		for j < len(body) && nameChars[body[j]] {
			j++
		}
		if j == i || body[i] <= '9' || j+1 >= len(body) || body[j] != '=' || body[j+1] != '"' {
			return false
		}
		switch string(body[i:j]) {
		case "le":
			le = i
		case "service":
			if sh.nRenames == len(sh.renames) {
				return false
			}
			sh.renames[sh.nRenames] = i
			sh.nRenames++
		case "kong_service", "kubernetes_namespace", "kubernetes_name", "kubernetes_kind", "exported_namespace", "exported_service":
			return false
		}
		end, flags := scanValue(body[j+2:])
		if end < 0 || flags != 0 || le == i && !validFloat(body[j+2:j+2+end]) {
			return false
		}
		sh.last, i = i, j+2+end+1
	}
	sh.split = i
	if le >= 0 {
		sh.split = le - 1
	}
	return validSampleValue(body[i+1:])
}

// appendTo writes the kept line: head (the name and '{'), body with
// service renamed and the added labels at the split.
func (sh *plainShape) appendTo(dst, head, body, added []byte) []byte {
	dst = append(dst, head...)
	from := 0
	for _, at := range sh.renames[:sh.nRenames] {
		dst = append(dst, body[from:at]...)
		dst = append(dst, "kong_"...)
		from = at
	}
	dst = append(dst, body[from:sh.split]...)
	dst = append(dst, added...)
	dst = append(dst, body[sh.split:]...)
	return append(dst, '\n')
}

// appendParsed is the slow path of AppendLine: it parses the labels in full
// and re-escapes values that need it.
func (p *Page) appendParsed(dst, line []byte, nameEnd, fi int) []byte {
	fam := &families[fi]
	labels, rest, ok := p.parseLabels(line[nameEnd+1:])
	if !ok || !validSampleValue(rest) {
		p.stats.Dropped[DropMalformed]++
		return dst
	}
	key, le := -1, -1
	for i, l := range labels {
		switch string(l.name) {
		case fam.keyLabel:
			if key < 0 {
				key = i
			}
		case "le":
			le = i
		case RenamedServiceLabel, AddedLabels[0], AddedLabels[1], AddedLabels[2], AddedLabels[3], AddedLabels[4]:
			// Kong never sends these; a line that does would end with a label twice.
			p.stats.Dropped[DropMalformed]++
			return dst
		}
	}
	if le >= 0 && !validFloat(labels[le].value) {
		p.stats.Dropped[DropMalformed]++ // a strict parser wants a float bound
		return dst
	}
	if key < 0 {
		p.stats.Dropped[DropUnresolved]++
		return dst
	}
	t := p.lookup(keyKind[fi], labels[key].value)
	if reason, drop := t.drop(fam); drop {
		p.stats.Dropped[reason]++
		return dst
	}
	dst = p.keep(dst, fi)
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
	// Fast path - one blank and a plain integer, as Kong writes counts.
	if len(rest) >= 2 && rest[0] == ' ' && isPlainInteger(rest[1:]) {
		return true
	}
	if len(rest) == 0 || (rest[0] != ' ' && rest[0] != '\t') {
		return false
	}
	if last := rest[len(rest)-1]; last == ' ' || last == '\t' {
		return false // a strict parser would want a timestamp after it
	}
	value, rest := nextField(rest)
	if value == nil {
		return false
	}
	timestamp, rest := nextField(rest)
	if extra, _ := nextField(rest); extra != nil {
		return false
	}
	// Kong's %.14g also prints fractions and exponents.
	if !validFloat(value) {
		return false
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

// validFloat reports whether v is a value a strict parser takes as a
// float, such as an le bound: Kong's plain integers and +Inf, or any float
// Go parses less its hex and underscore forms.
func validFloat(v []byte) bool {
	// Fast path - Kong's bounds.
	if isPlainInteger(v) || string(v) == "+Inf" {
		return true
	}
	if bytes.ContainsAny(v, "pP_") {
		return false
	}
	_, err := strconv.ParseFloat(string(v), 64)
	return err == nil
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
