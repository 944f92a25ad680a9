package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
)

// TestUsage: every way of calling the plugin wrongly exits 2 with a
// message, before any request; help and version exit 0.
func TestUsage(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "no-kubeconfig")
	tests := []struct {
		args []string
		code int
		says string
	}{
		{nil, exitUsage, "Usage: kubectl kong-metrics doctor"},
		{[]string{"cure"}, exitUsage, `unknown command "cure"`},
		{[]string{"doctor"}, exitUsage, "doctor takes one target"},
		{[]string{"doctor", "service/a", "service/b"}, exitUsage, "doctor takes one target"},
		{[]string{"doctor", "pod/command"}, exitUsage, `kind "pod" is none of service, hpa, scaledobject`},
		{[]string{"doctor", "command"}, exitUsage, "want service/NAME"},
		{[]string{"doctor", "-o", "yaml", "service/command"}, exitUsage, `-o "yaml": want text or json`},
		{[]string{"doctor", "--no-such-flag", "service/command"}, exitUsage, "unknown flag: --no-such-flag"},
		{[]string{"doctor", "--kubeconfig", missing, "service/command"}, exitUsage, "kubeconfig:"},
		{[]string{"help"}, exitWhole, "Usage: kubectl kong-metrics doctor"},
		{[]string{"version"}, exitWhole, program + ", version"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			t.Setenv("KUBECONFIG", filepath.Join(t.TempDir(), "none"))
			var stdout, stderr bytes.Buffer
			code := run(tt.args, &stdout, &stderr)
			if code != tt.code {
				t.Errorf("exit %d, want %d; stderr %s", code, tt.code, stderr.String())
			}
			if out := stdout.String() + stderr.String(); !strings.Contains(out, tt.says) {
				t.Errorf("output does not say %q:\n%s", tt.says, out)
			}
		})
	}
}

// TestDoctorHelp: --help lists kubectl's connection flags beside the
// doctor's own.
func TestDoctorHelp(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"doctor", "--help"}, &stdout, &stderr); code != exitWhole {
		t.Fatalf("exit %d", code)
	}
	for _, flag := range []string{"--kubeconfig", "--context", "-n, --namespace", "--prometheus", "-o, --output", "--record"} {
		if !strings.Contains(stderr.String(), flag) {
			t.Errorf("--help does not list %s:\n%s", flag, stderr.String())
		}
	}
}
