package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// yamlProblem splits the YAML library's "yaml: line N: problem".
var yamlProblem = regexp.MustCompile(`^yaml: (?:line (\d+): )?(.*)$`)

// indentationExample is the valid shape the indentation hints show.
const indentationExample = `"  config:\n    latency: true\n    statusCode: true" (spaces only; the keys of one mapping in one column)`

// syntaxProblem turns the YAML library's syntax error for data into a
// message that names the line at fault, quotes it and says what YAML
// expected there. The library reports a parser error at the line where the
// enclosing block starts (for bad indentation, often the document's first
// key), so the line is found again as the first one after which the same
// problem appears; and its "found character that cannot start any token"
// for a tab in the indentation is said plainly.
func syntaxProblem(data []byte, err error) string {
	m := yamlProblem.FindStringSubmatch(err.Error())
	if m == nil {
		return err.Error()
	}
	problem := m[2]
	line, _ := strconv.Atoi(m[1])
	lines := strings.Split(string(data), "\n")
	if tab := tabIndented(lines); tab > 0 && (line == 0 || tab <= line) {
		text := strings.TrimRight(lines[tab-1], "\r")
		return fmt.Sprintf("line %d: %s is indented with a tab; YAML indents with spaces only, as in %s",
			tab, quote(text), quote(spaceIndented(lines[:tab-1], strings.TrimLeft(text, " \t"))))
	}
	if at := firstFailingLine(lines, problem); at > 0 {
		line = at
	}
	if line == 0 || line > len(lines) {
		return "YAML syntax: " + problem
	}
	msg := fmt.Sprintf("line %d: %s: YAML syntax: %s", line, quote(strings.TrimRight(lines[line-1], "\r")), problem)
	switch problem {
	case "did not find expected key", "mapping values are not allowed in this context",
		"did not find expected '-' indicator", "block sequence entries are not allowed in this context":
		msg += "; check the indentation, as in " + indentationExample
	}
	return msg
}

// tabIndented is the first line (from 1) whose indentation holds a tab, or
// 0. A tab inside a value or a block scalar's text is not indentation YAML
// rejects, but a tab before the first character of a key or item is.
func tabIndented(lines []string) int {
	for i, l := range lines {
		indent := l[:len(l)-len(strings.TrimLeft(l, " \t"))]
		if strings.Contains(indent, "\t") && strings.TrimSpace(l) != "" {
			return i + 1
		}
	}
	return 0
}

// spaceIndented is text indented with spaces below the last non-blank
// line of above: two more than it when it opens a block (ends with ':'),
// as many as it otherwise.
func spaceIndented(above []string, text string) string {
	for i := len(above) - 1; i >= 0; i-- {
		l := strings.TrimRight(above[i], " \t\r")
		if strings.TrimSpace(l) == "" {
			continue
		}
		indent := len(l) - len(strings.TrimLeft(l, " "))
		if strings.HasSuffix(l, ":") {
			indent += 2
		}
		return strings.Repeat(" ", indent) + text
	}
	return text
}

// firstFailingLine is the smallest n such that the first n lines fail to
// decode with problem, or 0. A document cut at a line boundary that is
// fine up to the fault decodes, so the search is a binary one: the cost is
// a few decodes of the file, on an error path only.
func firstFailingLine(lines []string, problem string) int {
	fails := func(n int) bool {
		err := decodeAll([]byte(strings.Join(lines[:n], "\n") + "\n"))
		if err == nil {
			return false
		}
		m := yamlProblem.FindStringSubmatch(err.Error())
		return m != nil && m[2] == problem
	}
	n := sort.Search(len(lines)+1, fails)
	if n > len(lines) || n == 0 {
		return 0
	}
	return n
}

// decodeAll decodes every document of data and returns the first error.
func decodeAll(data []byte) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var n yaml.Node
		if err := dec.Decode(&n); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}
