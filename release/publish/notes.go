package publish

import (
	"bufio"
	"bytes"
	"fmt"
	"strings"
)

// ReleaseNotes returns the section of changelog (Keep a Changelog:
// "## [1.2.3] - 2026-12-06" headings) for version (v1.2.3), without its
// heading and with surrounding blank lines trimmed: the GitHub release's
// text. A version with no section, or an empty one, is an error: a
// release without its changelog entry is not made.
func ReleaseNotes(changelog []byte, version string) (string, error) {
	want := "## [" + strings.TrimPrefix(version, "v") + "]"
	var body []string
	in, found := false, false
	sc := bufio.NewScanner(bytes.NewReader(changelog))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "## ") {
			if in {
				break
			}
			in = line == want || strings.HasPrefix(line, want+" ")
			found = found || in
			continue
		}
		if in && strings.HasPrefix(line, "[") && strings.Contains(line, "]: ") {
			break // the link definitions after the last section
		}
		if in {
			body = append(body, line)
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("reading the changelog: %w", err)
	}
	if !found {
		return "", fmt.Errorf("the changelog has no section %q for %s", want, version)
	}
	text := strings.TrimSpace(strings.Join(body, "\n"))
	if text == "" {
		return "", fmt.Errorf("the changelog's section %q is empty", want)
	}
	return text + "\n", nil
}
