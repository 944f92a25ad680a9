// Package cli is the skeleton both programs' main packages share: their
// exit codes, the report of invalid settings and the handling of signals,
// so that the sidecar and the injector start, fail and stop alike.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// Exit codes of both programs.
const (
	ExitOK       = 0
	ExitFailure  = 1 // could not start, or stopped serving on an error
	ExitSettings = 2 // bad flags, arguments or settings: nothing was started
)

// Parse parses args with fs. done is true when the program must exit
// with code now: -help (ExitOK), or a bad flag (ExitSettings; fs has said
// which).
func Parse(fs *flag.FlagSet, args []string) (code int, done bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return ExitOK, true
		}
		return ExitSettings, true
	}
	return ExitOK, false
}

// InvalidSettings writes every problem err lists (one a line, each naming
// its variable) to w under a line that names program, and returns
// ExitSettings.
func InvalidSettings(w io.Writer, program string, err error) int {
	fmt.Fprintf(w, "%s: invalid settings:\n", program)
	for line := range strings.SplitSeq(err.Error(), "\n") {
		fmt.Fprintf(w, "  %s\n", line)
	}
	return ExitSettings
}

// Signals is the signal handling of both programs. ctx is done on the
// first SIGTERM or SIGINT; from then on their default action is back, so a
// second one ends the process at once, whatever is still draining. hup
// receives SIGHUP, whose default action (exit) it replaces: the caller
// reloads or says why it need not. stop releases both; call it before
// returning.
func Signals(parent context.Context) (ctx context.Context, hup <-chan os.Signal, stop func()) {
	ctx, cancel := context.WithCancel(parent)
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM, syscall.SIGINT)
	h := make(chan os.Signal, 1)
	signal.Notify(h, syscall.SIGHUP)
	go func() {
		select {
		case <-term:
		case <-ctx.Done():
		}
		// The default action is back before ctx is done: whatever sees ctx
		// done can count on a second signal ending the process.
		signal.Stop(term)
		cancel()
	}()
	return ctx, h, func() {
		cancel()
		signal.Stop(term)
		signal.Stop(h)
	}
}
