package golden

import (
	"os"
	"path/filepath"
	"testing"
)

func TestFirstDiff(t *testing.T) {
	for _, tc := range []struct{ want, got, diff string }{
		{"a\nb\n", "a\nb\n", "(no line differs)"},
		{"a\nb\n", "a\nc\n", "line 2:\n  want: \"b\"\n  got:  \"c\""},
		{"a\n", "a\n\n", "line 3:\n  want: (none: the text ends before)\n  got:  \"\""},
		{"a\nb", "a", "line 2:\n  want: \"b\"\n  got:  (none: the text ends before)"},
	} {
		if got := FirstDiff([]byte(tc.want), []byte(tc.got)); got != tc.diff {
			t.Errorf("FirstDiff(%q, %q) = %q, want %q", tc.want, tc.got, got, tc.diff)
		}
	}
}

func TestCheckMatches(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.golden")
	if err := os.WriteFile(path, []byte("same\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	Check(t, path, []byte("same\n"))
}
