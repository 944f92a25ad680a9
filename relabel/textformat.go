package relabel

import (
	"bytes"
	"strconv"
	"strings"
	"unicode/utf8"
)

// validBucketTail reports whether v, what follows `le="` on a bucket line,
// is a plain float bound closing the labels and a valid sample value.
func validBucketTail(v []byte) bool {
	end, flags := scanValue(v)
	return end >= 0 && flags == 0 && end+1 < len(v) && v[end+1] == '}' && validFloat(v[:end]) && validSampleValue(v[end+2:])
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
	// Fast path - one blank and a short integer, as Kong writes counts.
	if len(rest) >= 2 && rest[0] == ' ' && isShortInteger(rest[1:]) {
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
	if isShortInteger(v) || string(v) == "+Inf" {
		return true
	}
	if bytes.ContainsAny(v, "pP_") {
		return false
	}
	_, err := strconv.ParseFloat(string(v), 64)
	return err == nil
}

// isShortInteger reports whether s is an optionally negative integer of at
// most 18 digits, which a float64 always holds. A longer one may not: 309
// digits overflow, and a strict parser rejects the whole page for it.
func isShortInteger(s []byte) bool {
	if len(s) > 0 && s[0] == '-' {
		s = s[1:]
	}
	if len(s) > 18 {
		return false
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
