package kongsim

import (
	"bytes"
	"fmt"
	"testing"
)

func BenchmarkWritePage(b *testing.B) {
	for _, routes := range []int{100, 1000, 10000} {
		b.Run(fmt.Sprintf("routes=%d", routes), func(b *testing.B) {
			var w countingWriter
			if err := WritePage(&w, routes); err != nil {
				b.Fatal(err)
			}
			size := w.bytes
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				w = countingWriter{}
				if err := WritePage(&w, routes); err != nil {
					b.Fatal(err)
				}
				if w.bytes != size {
					b.Fatalf("page of %d bytes, then %d", size, w.bytes)
				}
			}
		})
	}
}

// BenchmarkWriteMetrics measures a scrape of an already populated node.
func BenchmarkWriteMetrics(b *testing.B) {
	s, err := NewPage(Config{Toggles: AllToggles}, 1000)
	if err != nil {
		b.Fatal(err)
	}
	var first bytes.Buffer
	if err := s.WriteMetrics(&first); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(first.Len()))
	b.ReportAllocs()
	for b.Loop() {
		var w countingWriter
		if err := s.WriteMetrics(&w); err != nil {
			b.Fatal(err)
		}
		if w.bytes != first.Len() {
			b.Fatalf("scrape of %d bytes, want %d", w.bytes, first.Len())
		}
	}
}
