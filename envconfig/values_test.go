package envconfig

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
)

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

// TestSecretNeverPrints prints a Secret, alone and inside a struct, in every
// way the programs could: fmt's verbs, slog's JSON and text handlers and
// encoding/json. An empty Secret prints empty, so that "unset" still shows.
func TestSecretNeverPrints(t *testing.T) {
	type settings struct{ Token Secret }
	prints := map[string]func(s Secret) string{
		"%v":         func(s Secret) string { return fmt.Sprintf("%v", s) },
		"%s":         func(s Secret) string { return fmt.Sprintf("%s", s) }, //nolint:staticcheck // S1025: fmt's %s verb is what is tested
		"%q":         func(s Secret) string { return fmt.Sprintf("%q", s) },
		"%#v":        func(s Secret) string { return fmt.Sprintf("%#v", s) },
		"%+v struct": func(s Secret) string { return fmt.Sprintf("%+v", settings{s}) },
		"%#v struct": func(s Secret) string { return fmt.Sprintf("%#v", settings{s}) },
		"slog JSON":  func(s Secret) string { return logged(slog.NewJSONHandler, "token", s) },
		"slog text":  func(s Secret) string { return logged(slog.NewTextHandler, "token", s) },
		"slog JSON struct": func(s Secret) string {
			return logged(slog.NewJSONHandler, "settings", settings{s})
		},
		"slog text struct": func(s Secret) string {
			return logged(slog.NewTextHandler, "settings", settings{s})
		},
		"json.Marshal":        func(s Secret) string { return marshalled(t, s) },
		"json.Marshal struct": func(s Secret) string { return marshalled(t, settings{s}) },
	}
	for name, format := range prints {
		t.Run(name, func(t *testing.T) {
			if got := format("hunter2"); strings.Contains(got, "hunter2") || !strings.Contains(got, "<secret>") {
				t.Errorf("a secret prints as %s, want <secret> in its place", got)
			}
			if got := format(""); strings.Contains(got, "<secret>") {
				t.Errorf("an empty secret prints as %s, want it empty", got)
			}
		})
	}
}

// logged returns what a handler made by newHandler writes for one record
// with the attribute key=value.
func logged[H slog.Handler](newHandler func(io.Writer, *slog.HandlerOptions) H, key string, value any) string {
	var buf bytes.Buffer
	slog.New(newHandler(&buf, nil)).Info("settings", key, value)
	return buf.String()
}

// marshalled returns v through json.Marshal, decoded again: json.Marshal
// escapes < and > as \u003c and \u003e.
func marshalled(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var decoded any
	if err := json.Unmarshal(b, &decoded); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprint(decoded)
}
