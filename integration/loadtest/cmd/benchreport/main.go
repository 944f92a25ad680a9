// Command benchreport turns `go test -bench` output on standard input into
// a short Markdown report on standard output: for each benchmark its MB/s,
// allocations and the ratios it reports (x-peer, %-of-scan, x-get,
// x-without-guess, x-smaller, alloc/page), with the machine the run came from. `make bench` runs it;
// docs/performance.md quotes its output.
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"time"
)

func main() {
	if err := report(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		os.Exit(1)
	}
}

// columns are the units shown, in order, with their headings.
var columns = []struct{ unit, heading string }{
	{"MB/s", "MB/s"},
	{"x-peer", "× peer"},
	{"%-of-scan", "% of scan"},
	{"x-get", "× plain GET"},
	{"x-without-guess", "× without next links"},
	{"x-smaller", "ratio"},
	{"alloc/page", "allocated ÷ page"},
	{"allocs/op", "allocs/op"},
	{"B/op", "B/op"},
}

func report(r io.Reader, w io.Writer) error {
	var cpu, pkg string
	headed := false // the table of pkg has its heading
	fmt.Fprintf(w, "# Benchmarks\n\n%s, %s/%s, %d cores, %s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), time.Now().UTC().Format(time.DateOnly))
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "cpu: "):
			if cpu == "" {
				cpu = strings.TrimPrefix(line, "cpu: ")
				fmt.Fprintf(w, "CPU: %s\n", cpu)
			}
		case strings.HasPrefix(line, "pkg: "):
			pkg, headed = strings.TrimPrefix(line, "pkg: "), false
		case strings.HasPrefix(line, "Benchmark"):
			fields := strings.Fields(line)
			if len(fields) < 3 {
				continue
			}
			if !headed {
				headed = true
				fmt.Fprintf(w, "\n## %s\n\n| benchmark |", pkg[strings.LastIndex(pkg, "/")+1:])
				for _, c := range columns {
					fmt.Fprintf(w, " %s |", c.heading)
				}
				fmt.Fprint(w, "\n| --- |")
				for range columns {
					fmt.Fprint(w, " ---: |")
				}
				fmt.Fprintln(w)
			}
			name := strings.TrimPrefix(fields[0], "Benchmark")
			if i := strings.LastIndex(name, "-"); i > 0 {
				name = name[:i] // the GOMAXPROCS suffix
			}
			values := map[string]string{}
			for i := 2; i+1 < len(fields); i += 2 {
				values[fields[i+1]] = fields[i]
			}
			if values["x-peer"] != "" || values["x-get"] != "" || values["x-without-guess"] != "" {
				// A ratio benchmark runs several designs; their
				// allocations together mean nothing.
				delete(values, "allocs/op")
				delete(values, "B/op")
			}
			fmt.Fprintf(w, "| %s |", name)
			for _, c := range columns {
				fmt.Fprintf(w, " %s |", values[c.unit])
			}
			fmt.Fprintln(w)
		case strings.HasPrefix(line, "--- FAIL"), strings.HasPrefix(line, "FAIL"):
			fmt.Fprintf(w, "\n**%s**\n", line)
		}
	}
	return sc.Err()
}
