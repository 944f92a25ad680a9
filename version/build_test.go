package version_test

import (
	"debug/buildinfo"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

const (
	repoRoot     = ".."
	testVersion  = "v9.9.9-test"
	testRevision = "abc123"
	versionPkg   = "github.com/kong-metrics-sidecar/kong-metrics-sidecar/version"
)

// makeBuild returns the command line `make build` runs with the test's
// VERSION and REVISION, as `make -n` prints it.
func makeBuild(t *testing.T) string {
	t.Helper()
	cmd := exec.Command("make", "-n", "build", "VERSION="+testVersion, "REVISION="+testRevision)
	cmd.Dir = repoRoot
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("make -n build: %v", err)
	}
	var lines []string
	for l := range strings.Lines(string(out)) {
		if strings.Contains(l, " build ") {
			lines = append(lines, strings.TrimSpace(l))
		}
	}
	if len(lines) != 1 {
		t.Fatalf("make -n build printed %d go build lines, want 1:\n%s", len(lines), out)
	}
	return lines[0]
}

// TestBuildIsStaticAndStamped runs `make build`'s own command line, with its
// output sent to a temporary directory instead of bin/, and checks that
// both binaries are static and print the stamped version.
func TestBuildIsStaticAndStamped(t *testing.T) {
	line := makeBuild(t)
	const out = " -o bin/ "
	if strings.Count(line, out) != 1 {
		t.Fatalf("make build's command line has no %q to redirect: %s", out, line)
	}
	dir := t.TempDir()
	cmd := exec.Command("sh", "-c", strings.Replace(line, out, " -o '"+dir+"/' ", 1))
	cmd.Dir = repoRoot
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", line, err, b)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		checkStatic(t, filepath.Join(dir, e.Name()))
	}
	for _, name := range []string{"kong-metrics-sidecar", "kong-metrics-injector"} {
		path := filepath.Join(dir, name)
		bi, err := buildinfo.ReadFile(path)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		settings := map[string]string{}
		for _, s := range bi.Settings {
			settings[s.Key] = s.Value
		}
		if settings["CGO_ENABLED"] != "0" || settings["-trimpath"] != "true" {
			t.Errorf("%s: built with CGO_ENABLED=%q -trimpath=%q, want 0 and true", name, settings["CGO_ENABLED"], settings["-trimpath"])
		}
		got, err := exec.Command(path, "-version").Output()
		if err != nil {
			t.Errorf("%s -version: %v", name, err)
			continue
		}
		want := name + " version " + testVersion + " (revision " + testRevision + ", " + bi.GoVersion + ")\n"
		if string(got) != want {
			t.Errorf("%s -version printed %q, want %q", name, got, want)
		}
	}
}

// checkStatic fails the test unless path is an ELF executable with no
// program interpreter and no shared libraries.
func checkStatic(t *testing.T, path string) {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Errorf("%s: not an ELF binary: %v", filepath.Base(path), err)
		return
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("%s: has a %v program header: dynamically linked", filepath.Base(path), p.Type)
		}
	}
	libs, err := f.ImportedLibraries()
	if err != nil || len(libs) > 0 {
		t.Errorf("%s: needs shared libraries %v (%v)", filepath.Base(path), libs, err)
	}
}

// TestDockerfileUsesMakeBuildFlags: the image is built with the flags of
// `make build`: CGO_ENABLED=0, -trimpath and the same -ldflags.
func TestDockerfileUsesMakeBuildFlags(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	dockerfile := strings.ReplaceAll(string(data), "\\\n", " ")
	var run string
	for l := range strings.Lines(dockerfile) {
		if strings.HasPrefix(strings.TrimSpace(l), "RUN ") && strings.Contains(l, " go build ") {
			if run != "" {
				t.Fatal("the Dockerfile has more than one RUN with go build")
			}
			run = strings.NewReplacer("${VERSION}", testVersion, "${REVISION}", testRevision).Replace(l)
		}
	}
	if run == "" {
		t.Fatal("the Dockerfile has no RUN with go build")
	}
	makeLine := makeBuild(t)

	ldflags := func(what, line string) string {
		t.Helper()
		m := regexp.MustCompile(`-ldflags (?:'([^']*)'|"([^"]*)")`).FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("%s has no -ldflags: %s", what, line)
		}
		return m[1] + m[2]
	}
	want := ldflags("make build", makeLine)
	if got := ldflags("the Dockerfile", run); got != want {
		t.Errorf("the Dockerfile's -ldflags %q, make build's %q", got, want)
	}
	for _, x := range []string{"-X " + versionPkg + ".Version=" + testVersion, "-X " + versionPkg + ".Revision=" + testRevision} {
		if !strings.Contains(want, x) {
			t.Errorf("make build's -ldflags %q lack %q", want, x)
		}
	}
	for _, flag := range []string{"CGO_ENABLED=0 ", " -trimpath "} {
		for what, line := range map[string]string{"make build": makeLine, "the Dockerfile": run} {
			if !strings.Contains(line+" ", flag) {
				t.Errorf("%s does not build with %q: %s", what, strings.TrimSpace(flag), line)
			}
		}
	}
}
