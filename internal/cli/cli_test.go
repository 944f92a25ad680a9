package cli

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/golden"
)

// hangTimeout only turns a hang into a failure; nothing here is timed.
const hangTimeout = time.Minute

// TestSignals runs this test binary again as a program that takes
// Signals and then never finishes its drain: the first SIGTERM ends its
// context, SIGHUP arrives on hup, and a second SIGTERM ends the process at
// once.
func TestSignals(t *testing.T) {
	if os.Getenv("CLI_SIGNALS_CHILD") == "1" {
		signalsChild()
		return
	}
	ctx, cancel := context.WithTimeout(t.Context(), hangTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestSignals$")
	cmd.Env = append(os.Environ(), "CLI_SIGNALS_CHILD=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(out)
	expect := func(want string) {
		t.Helper()
		if !lines.Scan() || lines.Text() != want {
			t.Fatalf("child said %q (%v), want %q", lines.Text(), lines.Err(), want)
		}
	}
	signal := func(s syscall.Signal) {
		t.Helper()
		if err := cmd.Process.Signal(s); err != nil {
			t.Fatal(err)
		}
	}
	expect("ready")
	signal(syscall.SIGHUP)
	expect("hup")
	signal(syscall.SIGTERM)
	expect("draining")
	signal(syscall.SIGTERM)
	_, _ = io.Copy(io.Discard, out)
	err = cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGTERM {
		t.Errorf("after the second SIGTERM: %v, want the process ended by SIGTERM", err)
	}
}

// signalsChild is the program TestSignals runs.
func signalsChild() {
	ctx, hup, stop := Signals(context.Background())
	defer stop()
	fmt.Println("ready")
	<-hup
	fmt.Println("hup")
	<-ctx.Done()
	fmt.Println("draining")
	time.Sleep(hangTimeout) // a drain that does not end: only a second signal does
	os.Exit(3)
}

// TestInvalidSettings pins the report of invalid settings.
func TestInvalidSettings(t *testing.T) {
	var buf strings.Builder
	err := errors.Join(errors.New(`P_A="x": want a duration with a unit, such as 10s`), errors.New("P_B: unknown variable"))
	if code := InvalidSettings(&buf, "program", err); code != ExitSettings {
		t.Errorf("exit code %d, want %d", code, ExitSettings)
	}
	golden.Check(t, filepath.Join("testdata", "invalid-settings.golden"), []byte(buf.String()))
}

func TestParse(t *testing.T) {
	tests := []struct {
		args []string
		code int
		done bool
	}{
		{nil, ExitOK, false},
		{[]string{"-v"}, ExitOK, false},
		{[]string{"-help"}, ExitOK, true},
		{[]string{"-nope"}, ExitSettings, true},
	}
	for _, tc := range tests {
		fs := flag.NewFlagSet("p", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		fs.Bool("v", false, "")
		if code, done := Parse(fs, tc.args); code != tc.code || done != tc.done {
			t.Errorf("Parse(%q) = %d, %v; want %d, %v", tc.args, code, done, tc.code, tc.done)
		}
	}
}
