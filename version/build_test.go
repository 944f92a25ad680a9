package version_test

import (
	"bufio"
	"context"
	"debug/buildinfo"
	"debug/elf"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

const (
	repoRoot   = ".."
	versionPkg = "github.com/prometheus/common/version"
)

// stamps are the test's values of the build's variables: the make variable,
// the github.com/prometheus/common/version variable
// it sets, and the value.
var stamps = []struct{ arg, variable, value string }{
	{"VERSION", "Version", "v9.9.9-test"},
	{"REVISION", "Revision", "abc123"},
	{"BRANCH", "Branch", "test-branch"},
	{"BUILD_USER", "BuildUser", "tester@example"},
	{"BUILD_DATE", "BuildDate", "20260102-03:04:05"},
}

// stamp returns the test's value of the make variable arg.
func stamp(arg string) string {
	for _, s := range stamps {
		if s.arg == arg {
			return s.value
		}
	}
	panic("BUG: no stamp " + arg)
}

// makeBuild returns the command line `make build` runs with the test's
// stamps, as `make -n` prints it.
func makeBuild(t *testing.T) string {
	t.Helper()
	args := []string{"-n", "build"}
	for _, s := range stamps {
		args = append(args, s.arg+"="+s.value)
	}
	cmd := exec.Command("make", args...)
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
// both binaries are static and print the stamped version, and that the
// sidecar's build_info carries it.
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
	for _, name := range []string{"kong-metrics-sidecar", "kong-metrics-injector", "kubectl-kong_metrics"} {
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
		tags := settings["-tags"]
		if tags == "" {
			tags = "unknown"
		}
		want := name + ", version " + stamp("VERSION") + " (branch: " + stamp("BRANCH") + ", revision: " + stamp("REVISION") + ")\n" +
			"  build user:       " + stamp("BUILD_USER") + "\n" +
			"  build date:       " + stamp("BUILD_DATE") + "\n" +
			"  go version:       " + bi.GoVersion + "\n" +
			"  platform:         " + settings["GOOS"] + "/" + settings["GOARCH"] + "\n" +
			"  tags:             " + tags + "\n"
		if string(got) != want {
			t.Errorf("%s -version printed\n%s\nwant\n%s", name, got, want)
		}
	}
	checkBuildInfo(t, filepath.Join(dir, "kong-metrics-sidecar"))
}

// checkBuildInfo starts the sidecar at path on a free loopback port, with no
// Kong to read, and checks that its /metrics has
// kong_metrics_sidecar_build_info with the stamped labels users query.
func checkBuildInfo(t *testing.T, path string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, path)
	cmd.Env = []string{
		"SIDECAR_LISTEN_ADDR=127.0.0.1:0",
		"SIDECAR_UPSTREAM_URL=http://127.0.0.1:1/metrics", // nothing listens: only the sidecar's own metrics
		"SIDECAR_CONFIG_FILE=" + filepath.Join(t.TempDir(), "missing.yaml"),
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}()
	// The sidecar logs JSON; its "serving" record names the port it got.
	var addr string
	sc := bufio.NewScanner(stderr)
	for addr == "" && sc.Scan() {
		var rec struct{ Msg, Addr string }
		if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Msg == "serving" {
			addr = rec.Addr
		}
	}
	if addr == "" {
		t.Fatalf("the sidecar stopped logging before it served (%v)", sc.Err())
	}
	go func() { _, _ = io.Copy(io.Discard, stderr) }() // keep it from blocking on a full pipe
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	var line string
	for l := range strings.Lines(string(body)) {
		if strings.HasPrefix(l, "kong_metrics_sidecar_build_info{") {
			line = strings.TrimSpace(l)
		}
	}
	if line == "" {
		t.Fatalf("/metrics has no kong_metrics_sidecar_build_info:\n%s", body)
	}
	for _, want := range []string{
		`version="` + stamp("VERSION") + `"`, `revision="` + stamp("REVISION") + `"`, `branch="` + stamp("BRANCH") + `"`,
		`goversion="go`, `goos="`, `goarch="`,
	} {
		if !strings.Contains(line, want) {
			t.Errorf("%s lacks %s", line, want)
		}
	}
	if !strings.HasSuffix(line, "} 1") {
		t.Errorf("%s: want the value 1", line)
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
	defer func() { _ = f.Close() }() // read only
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
