package e2e_test

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/golden"
)

// scenarioLog watches the output of the scenario's run in its network
// namespace and keeps its last test-log entries before the timeline that
// the run prints when it ends. The failure that ended a run is among
// them; repeated in the outer test's failure, after the component logs,
// it is where whoever reads the output's tail looks.
type scenarioLog struct {
	partial []byte
	entries []string // each a log line, with its continuation lines
	ended   bool     // the timeline was seen: nothing after it is kept
}

const (
	// scenarioLogEntries is how many entries scenarioLog keeps.
	scenarioLogEntries = 4
	// scenarioLogLines bounds the continuation lines kept of one entry.
	scenarioLogLines = 12
	// timelineMarker opens the timeline world.report prints.
	timelineMarker = "=== e2e timeline"
)

// testLogLine is how go test -v prints a t.Log line of a top-level test.
var testLogLine = regexp.MustCompile(`^ {4}\S+\.go:\d+: `)

func (l *scenarioLog) Write(p []byte) (int, error) {
	if l.ended {
		return len(p), nil
	}
	l.partial = append(l.partial, p...)
	for !l.ended {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		l.line(string(l.partial[:i]))
		l.partial = l.partial[i+1:]
	}
	if l.ended {
		l.partial = nil
	}
	return len(p), nil
}

func (l *scenarioLog) line(s string) {
	switch {
	case strings.HasPrefix(s, timelineMarker):
		l.ended = true
	case testLogLine.MatchString(s):
		l.entries = append(l.entries, s)
		if len(l.entries) > scenarioLogEntries {
			l.entries = l.entries[1:]
		}
	case strings.HasPrefix(s, "        ") && strings.TrimSpace(s) != "" && len(l.entries) > 0:
		last := &l.entries[len(l.entries)-1]
		if strings.Count(*last, "\n") < scenarioLogLines {
			*last += "\n" + s
		}
	}
}

// last returns the kept entries, oldest first.
func (l *scenarioLog) last() string { return strings.Join(l.entries, "\n") }

// TestScenarioLog feeds scenarioLog runs' output in writes of several
// sizes (a write may end mid-line) and checks what it keeps against
// testdata/scenariolog/<case>.golden.
func TestScenarioLog(t *testing.T) {
	for _, name := range []string{"waitfor-timeout", "fatal-many-lines", "more-than-kept"} {
		t.Run(name, func(t *testing.T) {
			in, err := os.ReadFile(filepath.Join("testdata", "scenariolog", name+".txt"))
			if err != nil {
				t.Fatal(err)
			}
			var first string
			for _, size := range []int{1, 7, len(in)} {
				var l scenarioLog
				for p := in; len(p) > 0; {
					n := min(size, len(p))
					if w, err := l.Write(p[:n]); w != n || err != nil {
						t.Fatalf("Write of %d bytes: %d, %v", n, w, err)
					}
					p = p[n:]
				}
				if l.partial != nil {
					t.Errorf("writes of %d: %d bytes still buffered after the timeline", size, len(l.partial))
				}
				got := l.last()
				if first == "" {
					first = got
					golden.Check(t, filepath.Join("testdata", "scenariolog", name+".golden"), []byte(got+"\n"))
				} else if got != first {
					t.Errorf("writes of %d bytes keep\n%s\nwrites of 1 byte keep\n%s", size, got, first)
				}
			}
		})
	}
}
