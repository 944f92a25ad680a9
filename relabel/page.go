package relabel

import "bytes"

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

	// The targets dropped as unresolved so far, counted once each in
	// stats.Unresolved; lastUnresolved spares the map for a run of them.
	// The map comes from the Rewriter and goes back on Release, so
	// that a page with many unresolved names allocates no more than one
	// with few.
	unresolved     map[string]struct{} // by the raw name: a Rewriter whose cache is full makes a new target each time
	lastUnresolved *target
}

// Release hands the page's scratch back to its Rewriter for a later page.
// The Page must not be used afterwards; a Page never released costs only
// the allocations the next page then makes.
func (p *Page) Release() {
	if p.unresolved != nil {
		p.rw.keepUnresolvedSet(p.unresolved)
		p.unresolved = nil
	}
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
			p.drop(t, reason)
			return dst
		}
		keyEnd := len(keyPrefix[fi]) + len(key) + 1
		if !ascii {
			return p.appendParsed(dst, line, nameEnd, fi)
		}
		sh := plainShape{last: -1, nNames: 1}
		sh.names[0] = [2]int32{0, int32(len(keyPrefix[fi]) - 2)} // the key label's name
		if keyKind[fi] == keyService {
			sh.renames[0], sh.nRenames = 0, 1 // the key label is service
		}
		if sh.parse(body, keyEnd, &p.rw.added.reserved) {
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
	for _, n := range sh.names[:sh.nNames] {
		if int(n[0]) < sh.last {
			p.runShape.names[p.runShape.nNames] = n
			p.runShape.nNames++
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
	if !sh.parse(body, headEnd-1, &p.rw.added.reserved) {
		return dst, false
	}
	dst = p.keep(dst, p.runFamily)
	return sh.appendTo(dst, line[:nameEnd+1], body, p.runTarget.labels), true
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

// drop counts a series of t dropped for reason, and t among the
// unresolved names the first time.
func (p *Page) drop(t *target, reason DropReason) {
	p.stats.Dropped[reason]++
	if reason != DropUnresolved || t == p.lastUnresolved {
		return
	}
	p.lastUnresolved = t
	if p.unresolved == nil {
		p.unresolved = p.rw.unresolvedSet()
	}
	if _, seen := p.unresolved[t.key]; !seen {
		p.unresolved[t.key] = struct{}{}
		p.stats.Unresolved++
	}
}

// lookup returns the target of a key of kind; raw is the label value as
// it came.
func (p *Page) lookup(kind int, raw []byte) *target {
	last := p.lastTarget
	sameKind := last != nil && p.lastKind == kind
	if sameKind {
		// Fast path - the key of the line before, or the one that came
		// after it last time (on this page or an earlier one).
		if last.key == string(raw) {
			return last
		}
		if next := last.next.Load(); next != nil && next.key == string(raw) && !p.rw.noGuess {
			p.lastTarget = next
			return next
		}
	}
	t := p.rw.target(kind, raw)
	if sameKind && !p.rw.noGuess {
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
	names    [maxPlainLabels][2]int32 // where each label's name starts and ends, to find one twice
	nNames   int
}

// maxPlainLabels is the most labels a line in Kong's shape has (Kong's
// have up to seven); a line with more takes the slow path.
const maxPlainLabels = 10

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
// carries none of the reserved names (those the rewriter adds or renames
// to) and no label name twice. When it does not, the slow path gives the
// verdict.
func (sh *plainShape) parse(body []byte, i int, reserved *nameSet) bool {
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
		for _, n := range sh.names[:sh.nNames] {
			if string(body[n[0]:n[1]]) == string(body[i:j]) {
				return false // a label twice: the slow path drops the line
			}
		}
		if sh.nNames == len(sh.names) {
			return false
		}
		sh.names[sh.nNames] = [2]int32{int32(i), int32(j)}
		sh.nNames++
		switch string(body[i:j]) {
		case "le":
			le = i
		case "service":
			if sh.nRenames == len(sh.renames) {
				return false
			}
			sh.renames[sh.nRenames] = i
			sh.nRenames++
		default:
			if reserved.has(body[i:j]) {
				return false
			}
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

func appendLines(dst []byte, lines ...[]byte) []byte {
	for _, l := range lines {
		if len(l) > 0 {
			dst = append(dst, l...)
			dst = append(dst, '\n')
		}
	}
	return dst
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
