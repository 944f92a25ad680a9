package envconfig

import "testing"

func TestByteSize(t *testing.T) {
	tests := map[string]ByteSize{"0": 0, "512": 512, "1KB": 1000, "1KiB": 1024, "3 MiB": 3 << 20, "1GiB": 1 << 30, "2GB": 2e9, "7B": 7}
	for in, want := range tests {
		var b ByteSize
		if err := b.UnmarshalText([]byte(in)); err != nil || b != want {
			t.Errorf("ByteSize(%q) = %d, %v; want %d", in, b, err, want)
		}
	}
	for _, in := range []string{"", "1.5GiB", "GiB", "1PiB", "0x10"} {
		var b ByteSize
		if err := b.UnmarshalText([]byte(in)); err == nil {
			t.Errorf("ByteSize(%q) accepted as %d", in, b)
		}
	}
}
