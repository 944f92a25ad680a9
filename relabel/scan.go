package relabel

import (
	"encoding/binary"
	"math/bits"
	"unicode/utf8"
)

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
