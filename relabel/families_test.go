package relabel

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestFlags checks what comes from flagDefs: every flag a single bit, named
// by String, keeping its families and no other flag's.
func TestFlags(t *testing.T) {
	var all Metrics
	for _, d := range flagDefs {
		if d.flag == 0 || d.flag&(d.flag-1) != 0 || all&d.flag != 0 {
			t.Errorf("flag %s is %#x: want a bit of its own", d.name, d.flag)
		}
		all |= d.flag
		if got := d.flag.String(); got != d.name {
			t.Errorf("String of %s = %q", d.name, got)
		}
		var want []string
		for _, f := range d.families {
			want = append(want, f.name)
		}
		slices.Sort(want)
		if got := FamilyNames(d.flag); !slices.Equal(got, want) {
			t.Errorf("FamilyNames(%s) = %v, want %v", d.name, got, want)
		}
	}
	for i, d := range flagDefs {
		if Flags[i] != d.flag {
			t.Errorf("Flags[%d] = %s, want %s", i, Flags[i], d.name)
		}
	}
	f := func(m Metrics, want string) {
		t.Helper()
		if got := m.String(); got != want {
			t.Errorf("%#x.String() = %q, want %q", uint8(m), got, want)
		}
	}
	f(0, "none")
	f(all, "latency,bandwidth,upstreamHealth,statusCode") // Kong's CRD order
	f(StatusCode|Latency, "latency,statusCode")
	for i, fam := range families {
		if i > 0 && families[i-1].name >= fam.name {
			t.Errorf("families are not sorted by name: %s before %s", families[i-1].name, fam.name)
		}
		if fam.flag == 0 || fam.flag&(fam.flag-1) != 0 {
			t.Errorf("family %s has flag %#x", fam.name, fam.flag)
		}
	}
}

// TestReadmeFlagTable checks docs/reference.md's table of flags and the
// families each keeps against flagDefs, row for row and family for family, and that
// the check finds a table that differs.
func TestReadmeFlagTable(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", referenceDoc)) // from the repository's root
	if err != nil {
		t.Fatal(err)
	}
	for _, problem := range flagTableProblems(readmeFlagRows(t, readme)) {
		t.Errorf("%s: %s", referenceDoc, problem)
	}
	// Each doctored table replaces old with new in the reference.
	for desc, c := range map[string]struct{ old, new string }{
		"a family missing":  {", `kong_kong_latency_ms`", ""},
		"families reversed": {"`kong_upstream_latency_ms`, `kong_request_latency_ms`", "`kong_request_latency_ms`, `kong_upstream_latency_ms`"},
		"a flag renamed":    {"| `bandwidth` |", "| `bandwith` |"},
		"a row missing":     {"| `statusCode` | `kong_http_requests_total` |\n", ""},
	} {
		doctored := strings.Replace(string(readme), c.old, c.new, 1)
		if doctored == string(readme) {
			t.Fatalf("%s: %s has no %q", desc, referenceDoc, c.old)
		}
		if len(flagTableProblems(readmeFlagRows(t, []byte(doctored)))) == 0 {
			t.Errorf("%s: no problem found", desc)
		}
	}
}

// flagTableProblems compares a table's rows with flagDefs.
func flagTableProblems(rows map[string][]string) []string {
	var problems []string
	if len(rows) != len(flagDefs) {
		problems = append(problems, fmt.Sprintf("the table has %d rows, flagDefs %d flags", len(rows), len(flagDefs)))
	}
	for _, d := range flagDefs {
		var want []string
		for _, f := range d.families {
			want = append(want, f.name)
		}
		got, ok := rows[d.name]
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("the table has no row for flag %s", d.name))
		case !slices.Equal(got, want):
			problems = append(problems, fmt.Sprintf("the table gives flag %s the families %v, flagDefs %v", d.name, got, want))
		}
	}
	return problems
}

// referenceDoc is where the users' reference keeps the table, from the
// repository's root.
const referenceDoc = "docs/reference.md"

// readmeFlagRows reads the table that follows the reference's heading "Which
// families each flag keeps": each row's flag and families, in backquotes.
func readmeFlagRows(t *testing.T, readme []byte) map[string][]string {
	t.Helper()
	const heading = "### Which families each flag keeps"
	rows := map[string][]string{}
	sc := bufio.NewScanner(bytes.NewReader(readme))
	in, seen := false, false
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == heading:
			in, seen = true, true
			continue
		case !in:
			continue
		case strings.HasPrefix(line, "#"):
			in = false
			continue
		case !strings.HasPrefix(line, "|") || strings.HasPrefix(line, "|---") || strings.HasPrefix(line, "| flag "):
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		if len(cells) != 2 {
			t.Fatalf("%s row %q: want two cells", referenceDoc, line)
		}
		flag := unquote(t, cells[0])
		if _, dup := rows[flag]; dup {
			t.Errorf("%s: flag %s has two rows", referenceDoc, flag)
		}
		var fams []string
		for _, c := range strings.Split(cells[1], ",") {
			fams = append(fams, unquote(t, c))
		}
		rows[flag] = fams
	}
	if !seen {
		t.Fatalf("%s has no heading %q", referenceDoc, heading)
	}
	return rows
}

func unquote(t *testing.T, cell string) string {
	t.Helper()
	s := strings.TrimSpace(cell)
	if len(s) < 3 || s[0] != '`' || s[len(s)-1] != '`' {
		t.Fatalf("%s cell %q: want one name in backquotes", referenceDoc, cell)
	}
	return s[1 : len(s)-1]
}
