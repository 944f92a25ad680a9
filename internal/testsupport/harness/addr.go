package harness

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// AnyPort is the listen address to give the project's programs: the
// kernel picks a free loopback port, and LoggedAddr reads back which. A
// port found free beforehand (FreeAddr) can be taken by another test
// process before the program binds it; this one cannot.
const AnyPort = "127.0.0.1:0"

// LoggedAddr waits until p has logged a line whose attributes include
// every key/value pair of match (such as "msg", "serving"), in log/slog's
// text or JSON form, and returns that line's addr attribute. The project's
// programs log the address they listen on so ("serving" for the sidecar,
// "Listening" with a listener attribute for the Kong simulator). It fails
// when p exits first or after timeout, which only turns a hang into a
// failure.
func (p *Process) LoggedAddr(timeout time.Duration, match ...string) (string, error) {
	return p.LoggedValue(timeout, "addr", match...)
}

// LoggedValue is LoggedAddr for an attribute named key, such as the
// "address" of the "Listening on" line of Prometheus and exporter-toolkit.
func (p *Process) LoggedValue(timeout time.Duration, key string, match ...string) (string, error) {
	if len(match)%2 != 0 {
		return "", fmt.Errorf("LoggedValue: match %q is not key/value pairs", match)
	}
	deadline := time.Now().Add(timeout)
	for {
		exited := p.Exited() // before reading, so no line written before the exit is missed
		for line := range strings.Lines(p.Output()) {
			attrs := logAttrs(line)
			ok := attrs[key] != ""
			for i := 0; ok && i < len(match); i += 2 {
				ok = attrs[match[i]] == match[i+1]
			}
			if ok {
				return attrs[key], nil
			}
		}
		if exited {
			return "", fmt.Errorf("%s exited without logging %s (%q): %w\n%s", p.Name, key, match, p.exitErr(), p.Output())
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("%s has not logged %s (%q) after %s:\n%s", p.Name, key, match, timeout, p.Output())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// logAttrs returns the top-level string attributes of one line of
// log/slog output, JSON or text; nil for anything else.
func logAttrs(line string) map[string]string {
	line = strings.TrimSpace(line)
	if strings.HasPrefix(line, "{") {
		var raw map[string]any
		if json.Unmarshal([]byte(line), &raw) != nil {
			return nil
		}
		attrs := map[string]string{}
		for k, v := range raw {
			if s, ok := v.(string); ok {
				attrs[k] = s
			}
		}
		return attrs
	}
	attrs := map[string]string{}
	for line != "" {
		key, rest, ok := strings.Cut(line, "=")
		if !ok || key == "" || strings.ContainsAny(key, " \"") {
			return nil
		}
		var value string
		if strings.HasPrefix(rest, `"`) {
			quoted, err := strconv.QuotedPrefix(rest)
			if err != nil {
				return nil
			}
			if value, err = strconv.Unquote(quoted); err != nil {
				return nil
			}
			rest = rest[len(quoted):]
		} else {
			value, rest, _ = strings.Cut(rest, " ")
			rest = " " + rest
		}
		attrs[key] = value
		line = strings.TrimLeft(rest, " ")
	}
	return attrs
}
