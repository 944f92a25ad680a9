package main

import (
	"os"
	"strings"
	"testing"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/envconfig"
)

// TestREADMEListsEverySetting keeps the settings table of docs/reference.md
// (which the README links to) true to the code.
func TestREADMEListsEverySetting(t *testing.T) {
	readme, err := os.ReadFile("../../docs/reference.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range envconfig.Variables[Settings](EnvPrefix) {
		row := "| `" + v.Name + "` | "
		if !strings.Contains(string(readme), row) {
			t.Errorf("docs/reference.md has no settings row for %s", v.Name)
			continue
		}
		_, rest, _ := strings.Cut(string(readme), row)
		def, _, _ := strings.Cut(rest, " |")
		want := "`" + v.Default + "`"
		if v.Default == "" {
			want = "empty"
		}
		if def != want {
			t.Errorf("docs/reference.md gives %s the default %s, the code %s", v.Name, def, want)
		}
	}
}
