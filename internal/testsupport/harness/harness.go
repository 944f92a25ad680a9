// Package harness starts the project's programs and real third-party
// servers as processes on loopback for integration tests and the demo, and
// stops them again.
package harness

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

// TutorialExtension is the DataPlaneMetricsExtension of Kong's tutorial
// "Autoscale workloads with Prometheus": latency for Service kong/command.
const TutorialExtension = `kind: DataPlaneMetricsExtension
apiVersion: gateway-operator.konghq.com/v1alpha1
metadata:
  name: kong
  namespace: kong
spec:
  serviceSelector:
    matchNames:
    - name: command
  config:
    latency: true
`

// RepoRoot returns the repository's top directory, found from this file.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", "..", ".."))
}

// FreeAddr returns a loopback address with a port nobody listens on now.
func FreeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("finding a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// Build compiles the main packages (import paths relative to the repo, such
// as ./cmd/kong-metrics-sidecar) into dir and returns the binaries' paths by
// their base names.
func Build(ctx context.Context, dir string, pkgs ...string) (map[string]string, error) {
	args := append([]string{"build", "-o", dir + string(os.PathSeparator)}, pkgs...)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = RepoRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build %s: %w\n%s", strings.Join(pkgs, " "), err, out)
	}
	bins := map[string]string{}
	for _, p := range pkgs {
		bins[filepath.Base(p)] = filepath.Join(dir, filepath.Base(p))
	}
	return bins, nil
}

// Process is a started program whose output is kept for failure reports.
type Process struct {
	Name string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
	err  error // set when done is closed
}

// Start runs bin with args and extra environment variables (added to a
// minimal environment, not the caller's, so no stray variable leaks in).
func Start(name, bin string, args, env []string) (*Process, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, env...)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &Process{Name: name, cmd: cmd, out: out, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Pid is the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Output is everything the process wrote so far.
func (p *Process) Output() string { return p.out.String() }

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// exitErr is how an exited process ended: cmd.Wait's error, or "exited 0".
func (p *Process) exitErr() error {
	if p.err != nil {
		return p.err
	}
	return errors.New("exited 0")
}

// Signal sends sig to the process.
func (p *Process) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// Wait waits for the process to end, at most timeout, and returns its exit error.
func (p *Process) Wait(timeout time.Duration) error {
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		return fmt.Errorf("%s still running after %s", p.Name, timeout)
	}
}

// Stop sends SIGTERM, then SIGKILL to the process group after grace.
func (p *Process) Stop(grace time.Duration) {
	if p.Exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// WaitHTTP polls url until it answers 200, the process exits or timeout
// passes. p may be nil.
func WaitHTTP(url string, p *Process, timeout time.Duration) error {
	return waitOK(&http.Client{Timeout: attemptTimeout}, url, p, timeout)
}

// attemptTimeout bounds one request of a readiness wait: generous, so that
// a busy machine's slow answer is not taken for a hang, while a port
// nobody listens on yet is refused at once whatever it is.
const attemptTimeout = 10 * time.Second

// WaitHTTPS is WaitHTTP for an https URL served with a certificate that
// pool trusts.
func WaitHTTPS(url string, pool *x509.CertPool, p *Process, timeout time.Duration) error {
	client := &http.Client{Timeout: attemptTimeout, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
	}}
	defer client.CloseIdleConnections()
	return waitOK(client, url, p, timeout)
}

func waitOK(client *http.Client, url string, p *Process, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		resp, err := client.Get(url)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body) // drained so the connection is reused
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("HTTP %s", resp.Status)
		}
		if p != nil && p.Exited() {
			return fmt.Errorf("%s exited while waiting for %s: %w\n%s", p.Name, url, p.exitErr(), p.Output())
		}
		if time.Now().After(deadline) {
			msg := ""
			if p != nil {
				msg = "\n" + p.Output()
			}
			return fmt.Errorf("%s not ready after %s: %w%s", url, timeout, err, msg)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Get fetches url and returns the body of a 200 answer.
func Get(ctx context.Context, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return body, fmt.Errorf("GET %s: HTTP %s: %s", url, resp.Status, bytes.TrimSpace(body))
	}
	return body, nil
}

// Traffic runs the tutorial's request loop, `curl /command/shell?cmd=sleep%20<delay>`,
// with workers concurrent clients against a Kong proxy base URL until ctx ends.
// It returns the number of requests answered 200 and the first error.
func Traffic(ctx context.Context, proxyURL string, delay string, workers int) (int, error) {
	var (
		mu    sync.Mutex
		ok    int
		first error
		wg    sync.WaitGroup
	)
	url := proxyURL + "/command/shell?cmd=sleep%20" + delay
	for range workers {
		wg.Go(func() {
			for ctx.Err() == nil {
				_, err := Get(ctx, url)
				mu.Lock()
				switch {
				case err == nil:
					ok++
				case first == nil && ctx.Err() == nil:
					first = err
				}
				mu.Unlock()
				if err != nil && ctx.Err() == nil {
					time.Sleep(100 * time.Millisecond)
				}
			}
		})
	}
	wg.Wait()
	if errors.Is(first, context.Canceled) {
		first = nil
	}
	return ok, first
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var (
	buildOnce sync.Once
	buildBins map[string]string
	buildErr  error
)

// Binaries builds the project's programs once per test process into
// integration/.work/bin (ignored by git) and returns their paths by name:
// kong-metrics-sidecar, kong-metrics-injector (when present) and kong-simulator.
//
// Test processes of several packages may call it at once (go test runs
// packages in parallel), so each builds into a directory of its own and
// renames the binaries into place: a path always holds a whole binary,
// and one that a process runs is never written over.
func Binaries(ctx context.Context) (map[string]string, error) {
	buildOnce.Do(func() {
		dir := filepath.Join(RepoRoot(), "integration", ".work", "bin")
		if buildErr = os.MkdirAll(dir, 0o755); buildErr != nil {
			return
		}
		pkgs := []string{"./cmd/kong-metrics-sidecar", "./integration/cmd/kong-simulator"}
		if _, err := os.Stat(filepath.Join(RepoRoot(), "cmd", "kong-metrics-injector")); err == nil {
			pkgs = append(pkgs, "./cmd/kong-metrics-injector")
		}
		buildBins, buildErr = buildInto(ctx, dir, pkgs)
	})
	return buildBins, buildErr
}

// buildInto builds pkgs into a new directory inside dir, then renames each
// binary into dir.
func buildInto(ctx context.Context, dir string, pkgs []string) (map[string]string, error) {
	tmp, err := os.MkdirTemp(dir, ".build-")
	if err != nil {
		return nil, fmt.Errorf("making a build directory: %w", err)
	}
	defer os.RemoveAll(tmp)
	bins, err := Build(ctx, tmp, pkgs...)
	if err != nil {
		return nil, err
	}
	for name, built := range bins {
		final := filepath.Join(dir, name)
		if err := os.Rename(built, final); err != nil {
			return nil, fmt.Errorf("moving %s into place: %w", name, err)
		}
		bins[name] = final
	}
	return bins, nil
}
