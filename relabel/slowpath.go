package relabel

import (
	"bytes"
	"unicode/utf8"
)

type labelPair struct {
	name, value []byte // value as on the wire, without quotes
	clean       bool   // value is printable ASCII without backslashes: copy it as it is
}

// appendParsed is the slow path of AppendLine: it parses the labels in full
// and re-escapes values that need it.
func (p *Page) appendParsed(dst, line []byte, nameEnd, fi int) []byte {
	fam := &families[fi]
	labels, rest, ok := p.parseLabels(line[nameEnd+1:])
	if !ok || !validSampleValue(rest) || hasDuplicateName(labels) {
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
		default:
			if p.rw.added.reserved.has(l.name) {
				// Kong never sends these; a line that does would end with a label twice.
				p.stats.Dropped[DropMalformed]++
				return dst
			}
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
		p.drop(t, reason)
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

// hasDuplicateName reports whether a label name appears twice: Prometheus
// rejects the whole scrape for such a line, so it is dropped as malformed.
func hasDuplicateName(labels []labelPair) bool {
	for i := 1; i < len(labels); i++ {
		for _, l := range labels[:i] {
			if bytes.Equal(l.name, labels[i].name) {
				return true
			}
		}
	}
	return false
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
