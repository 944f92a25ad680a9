package kongsim

import (
	"cmp"
	"io"
	"math"
	"slices"
	"strconv"
	"unicode/utf8"
)

// Bucket bounds of Kong 3.9's latency histograms, in milliseconds.
var (
	kongLatencyBuckets     = []float64{1, 2, 5, 7, 10, 15, 20, 30, 50, 75, 100, 200, 500, 750, 1000, 3000, 6000}
	upstreamLatencyBuckets = []float64{25, 50, 80, 100, 250, 400, 700, 1000, 2000, 5000, 10000, 30000, 60000}
)

// linesPerChunk is how many lines Kong's metric_data buffers before it hands
// them to ngx.print, so a scrape body arrives in pieces of this many lines.
const linesPerChunk = 100

// Metric types as Kong prints them on # TYPE lines.
const (
	typeCounter   = "counter"
	typeGauge     = "gauge"
	typeHistogram = "histogram"
)

// family is one metric family of a snapshot, ready to be written.
type family struct {
	name   string // exposed name, with Kong's "kong_" prefix
	help   string
	typ    string
	series []series
}

// series is one label set of a family. For histograms, labels excludes le.
type series struct {
	labels string // encoded as Kong stores it: {k="v",...}, or "" without labels
	value  float64
	hist   *histogram
}

// histogram holds one histogram series the way Kong's shared dict does: one
// value per bucket key, where an observation increments every bucket whose
// bound it does not exceed, so counts are cumulative and a bucket whose count
// is still 0 has no key at all.
type histogram struct {
	bounds []float64
	counts []float64 // len(bounds)+1; the last one is +Inf
	count  float64
	sum    float64
}

func newHistogram(bounds []float64) *histogram {
	return &histogram{bounds: bounds, counts: make([]float64, len(bounds)+1)}
}

// observe records n observations of value v.
func (h *histogram) observe(v, n float64) {
	h.count += n
	h.sum += v * n
	for i := len(h.bounds) - 1; i >= 0 && v <= h.bounds[i]; i-- {
		h.counts[i] += n
	}
	h.counts[len(h.bounds)] += n
}

func (h *histogram) clone() *histogram {
	c := *h
	c.counts = slices.Clone(h.counts)
	return &c
}

// Parts of a family, each a run of keys that share a prefix.
const (
	partPlain = iota
	partBucket
	partCount
	partSum
)

// block is a run of keys with one prefix: a whole counter or gauge family,
// or the _bucket, _count or _sum keys of a histogram family.
type block struct {
	prefix string
	fam    *family
	part   int
}

// writeFamilies writes one subsystem's families in the order of Kong's
// metric_data: every stored key sorted bytewise, # HELP and # TYPE before the
// first key of a family. Sorting the runs of keys by prefix and each run's
// series by label string gives exactly that order, because no prefix here is
// a prefix of another run's keys and Kong's label encoding is prefix-free
// (every value ends at an unescaped quote). In a histogram this puts all
// _bucket lines before all _count lines before all _sum lines, and the
// zero-padded le Kong stores keeps one series' buckets in numeric order with
// +Inf (stored as "Inf") last.
func writeFamilies(lw *lineWriter, fams []*family) {
	var blocks []block
	for _, f := range fams {
		if len(f.series) == 0 {
			continue // Kong has no key for it, so it prints nothing
		}
		slices.SortFunc(f.series, func(a, b series) int { return cmp.Compare(a.labels, b.labels) })
		switch {
		case f.typ == typeHistogram:
			blocks = append(blocks,
				block{f.name + "_bucket{", f, partBucket},
				block{f.name + "_count{", f, partCount},
				block{f.name + "_sum{", f, partSum})
		case f.series[0].labels == "":
			blocks = append(blocks, block{f.name, f, partPlain})
		default:
			blocks = append(blocks, block{f.name + "{", f, partPlain})
		}
	}
	slices.SortFunc(blocks, func(a, b block) int { return cmp.Compare(a.prefix, b.prefix) })
	for _, b := range blocks {
		// Kong looks a key's family up by its name minus _bucket; the names
		// with _count or _sum are not registered, so they get no comments.
		if b.part == partPlain || b.part == partBucket {
			lw.comment("# HELP ", b.fam.name, b.fam.help)
			lw.comment("# TYPE ", b.fam.name, b.fam.typ)
		}
		for _, s := range b.fam.series {
			switch b.part {
			case partPlain:
				lw.sample(b.fam.name, "", s.labels, "", s.value)
			case partBucket:
				writeBuckets(lw, b.fam.name, s)
			case partCount:
				lw.sample(b.fam.name, "_count", s.labels, "", s.hist.count)
			case partSum:
				lw.sample(b.fam.name, "_sum", s.labels, "", s.hist.sum)
			}
		}
	}
}

// writeBuckets writes the bucket lines of one histogram series that Kong has
// keys for: those whose cumulative count is above zero.
func writeBuckets(lw *lineWriter, name string, s series) {
	h := s.hist
	for i, c := range h.counts {
		if c <= 0 {
			continue
		}
		le := "+Inf"
		if i < len(h.bounds) {
			le = formatValue(h.bounds[i])
		}
		lw.sample(name, "_bucket", s.labels, le, c)
	}
}

// lineWriter buffers output lines and hands them to w in pieces of
// linesPerChunk lines, as Kong does. The first write error sticks.
type lineWriter struct {
	w     io.Writer
	buf   []byte
	lines int
	err   error
}

func newLineWriter(w io.Writer) *lineWriter {
	return &lineWriter{w: w, buf: make([]byte, 0, 32<<10)}
}

func (lw *lineWriter) comment(kind, name, text string) {
	lw.buf = append(lw.buf, kind...)
	lw.buf = append(lw.buf, name...)
	lw.buf = append(lw.buf, ' ')
	lw.buf = append(lw.buf, text...)
	lw.endLine()
}

// sample writes name+suffix, the labels, an le label when le is not empty,
// and the value.
func (lw *lineWriter) sample(name, suffix, labels, le string, v float64) {
	lw.buf = append(lw.buf, name...)
	lw.buf = append(lw.buf, suffix...)
	switch {
	case le == "":
		lw.buf = append(lw.buf, labels...)
	case labels == "":
		lw.buf = append(lw.buf, `{le="`...)
		lw.buf = append(lw.buf, le...)
		lw.buf = append(lw.buf, `"}`...)
	default:
		lw.buf = append(lw.buf, labels[:len(labels)-1]...)
		lw.buf = append(lw.buf, `,le="`...)
		lw.buf = append(lw.buf, le...)
		lw.buf = append(lw.buf, `"}`...)
	}
	lw.buf = append(lw.buf, ' ')
	lw.buf = appendValue(lw.buf, v)
	lw.endLine()
}

func (lw *lineWriter) endLine() {
	lw.buf = append(lw.buf, '\n')
	lw.lines++
	if lw.lines >= linesPerChunk {
		lw.flush()
	}
}

func (lw *lineWriter) flush() {
	if lw.err == nil && len(lw.buf) > 0 {
		_, lw.err = lw.w.Write(lw.buf)
	}
	lw.buf = lw.buf[:0]
	lw.lines = 0
}

// appendValue formats v as LuaJIT's tostring does, which is C's %.14g:
// integers plain, exponent form from 1e14 on.
func appendValue(dst []byte, v float64) []byte {
	switch {
	case math.IsInf(v, 1):
		return append(dst, "inf"...)
	case math.IsInf(v, -1):
		return append(dst, "-inf"...)
	case math.IsNaN(v):
		return append(dst, "nan"...)
	}
	return strconv.AppendFloat(dst, v, 'g', 14, 64)
}

func formatValue(v float64) string { return string(appendValue(nil, v)) }

// encodeLabels encodes names and values as Kong stores them in a key:
// {k1="v1",k2="v2"}, in the given order.
func encodeLabels(names []string, values ...string) string {
	if len(names) != len(values) {
		panic("BUG: kongsim: label names and values differ in number")
	}
	b := make([]byte, 0, 128)
	b = append(b, '{')
	for i, name := range names {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, name...)
		b = append(b, `="`...)
		b = appendLabelValue(b, values[i])
		b = append(b, '"')
	}
	b = append(b, '}')
	return string(b)
}

// appendLabelValue appends v the way Kong's prometheus.lua encodes a label
// value: cut at the first byte that is not valid UTF-8, then only \ and "
// escaped. A newline stays a raw newline, which the text format forbids.
func appendLabelValue(dst []byte, v string) []byte {
	for i := 0; i < len(v); {
		r, size := utf8.DecodeRuneInString(v[i:])
		if r == utf8.RuneError && size == 1 {
			v = v[:i]
			break
		}
		i += size
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c == '\\' || c == '"' {
			dst = append(dst, '\\')
		}
		dst = append(dst, v[i])
	}
	return dst
}
