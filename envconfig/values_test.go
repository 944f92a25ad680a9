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

func TestRedact(t *testing.T) {
	tests := map[string]string{
		"http://user:pw@kong:8100/metrics": "http://user:xxxxx@kong:8100/metrics",
		"https://kong:8444":                "https://kong:8444",
		"http://user:p%zz@kong:8100/":      "http://xxxxx@kong:8100/", // does not parse
		"http://u:p/w@kong:8100/metrics":   "http://xxxxx@kong:8100/metrics",
		"user:pw@kong:8100/metrics":        "xxxxx@kong:8100/metrics",
		"not a url":                        "not a url",
		"/etc/kong-metrics-sidecar/x.yaml": "/etc/kong-metrics-sidecar/x.yaml",
	}
	for in, want := range tests {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestURLNeverPrintsItsPassword: neither the logged value nor the error of
// a URL that does not parse shows a password.
func TestURLNeverPrintsItsPassword(t *testing.T) {
	var u URL
	if err := u.UnmarshalText([]byte("http://user:hunter2@kong:8100/metrics")); err != nil {
		t.Fatal(err)
	}
	if got := u.LogValue().String(); strings.Contains(got, "hunter2") || !strings.Contains(got, "xxxxx") {
		t.Errorf("LogValue = %q, want the password as xxxxx", got)
	}
	err := u.UnmarshalText([]byte("http://user:hunter2@kong:bad/metrics"))
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("UnmarshalText error %v: want an error without the password", err)
	}
}
