package test

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// The contract between the manifests and the binaries that is not printed
// by -help: the opt-in label, the sidecar's port name and uid.
const (
	mainModule       = "github.com/kong-metrics-sidecar/kong-metrics-sidecar"
	labelInject      = "kong-metrics-sidecar.io/inject"
	annotationConfig = "kong-metrics-sidecar.io/config"
	sidecarPortName  = "sidecar-metrics"
	configKey        = "config.yaml"
	nonRootUID       = 65532
)

// binaries are kong-metrics-sidecar and kong-metrics-injector, built once
// from the repository this module sits in.
var binaries struct {
	once sync.Once
	dir  string
	err  error
}

// binary returns the path of the named binary from ./cmd, building both on
// first use.
func binary(t *testing.T, name string) string {
	t.Helper()
	binaries.once.Do(func() {
		binaries.dir, binaries.err = os.MkdirTemp("", "manifests-test-bin-") //nolint:usetesting // shared by every test of the run, built once; removed in TestMain
		if binaries.err != nil {
			return
		}
		root, err := filepath.Abs(filepath.Join(manifestsDir, ".."))
		if err != nil {
			binaries.err = err
			return
		}
		gomod, err := os.ReadFile(filepath.Join(root, "go.mod"))
		if err != nil {
			binaries.err = fmt.Errorf("%s is not the root of %s: %w", root, mainModule, err)
			return
		}
		if !bytes.HasPrefix(gomod, []byte("module "+mainModule+"\n")) {
			binaries.err = fmt.Errorf("%s is not the root of %s: its go.mod names another module", root, mainModule)
			return
		}
		cmd := exec.Command("go", "build", "-o", binaries.dir+string(filepath.Separator),
			"./cmd/kong-metrics-sidecar", "./cmd/kong-metrics-injector")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			binaries.err = fmt.Errorf("go build in %s: %w\n%s", root, err, out)
		}
	})
	if binaries.err != nil {
		t.Fatal(binaries.err)
	}
	return filepath.Join(binaries.dir, name)
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binaries.dir != "" {
		os.RemoveAll(binaries.dir)
	}
	os.Exit(code)
}

// helpVariable is a line of a binary's -help variable list:
// "  NAME (default VALUE)", VALUE quoted or not.
var helpVariable = regexp.MustCompile(`^  ([A-Z][A-Z0-9_]*) \(default (.*)\)$`)

// variables returns the environment variables a binary's -help lists, with
// their defaults ("" for none).
func variables(t *testing.T, name string) map[string]string {
	t.Helper()
	out, err := exec.Command(binary(t, name), "-help").CombinedOutput()
	if err != nil {
		t.Fatalf("%s -help: %v\n%s", name, err, out)
	}
	vars := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		m := helpVariable.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		def := m[2]
		if u, err := strconv.Unquote(def); err == nil {
			def = u
		} else if def == "none" {
			def = ""
		}
		vars[m[1]] = def
	}
	if len(vars) == 0 {
		t.Fatalf("%s -help lists no variables:\n%s", name, out)
	}
	return vars
}

// listenPort is the port of a [host]:port default.
func listenPort(t *testing.T, addr string) int32 {
	t.Helper()
	i := strings.LastIndexByte(addr, ':')
	p, err := strconv.ParseInt(addr[i+1:], 10, 32)
	if i < 0 || err != nil {
		t.Fatalf("%q is not [host]:port", addr)
	}
	return int32(p)
}

// checkConfig runs kong-metrics-sidecar -check-config on content and
// returns its output; it fails the test when the sidecar rejects it.
func checkConfig(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), configKey)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(binary(t, "kong-metrics-sidecar"), "-check-config", path).CombinedOutput()
	if err != nil {
		t.Fatalf("kong-metrics-sidecar -check-config: %v\n%s", err, out)
	}
	return string(out)
}

// TestCheckConfigRejects shows that checkConfig's sidecar run can fail: a
// misspelt field of the extension file is an error.
func TestCheckConfigRejects(t *testing.T) {
	bad := strings.Replace(tutorialExtension, "latency: true", "latncy: true", 1)
	path := filepath.Join(t.TempDir(), configKey)
	if err := os.WriteFile(path, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(binary(t, "kong-metrics-sidecar"), "-check-config", path).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "latncy") {
		t.Errorf("-check-config of a misspelt file: err %v, output:\n%s", err, out)
	}
}
