// Command gen-manifests writes the files of the kustomize install under
// manifests/ that the Helm chart renders (package manifestgen): make
// manifests runs it from charts/test.
//
//	go run ./cmd/gen-manifests -chart ../kong-metrics-sidecar -out ../../manifests
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/charts/test/manifestgen"
)

func main() {
	chartDir := flag.String("chart", "../kong-metrics-sidecar", "the chart's directory")
	out := flag.String("out", "../../manifests", "the kustomize install's directory (manifests/)")
	flag.Parse()
	if err := run(*chartDir, *out); err != nil {
		fmt.Fprintln(os.Stderr, "gen-manifests:", err)
		os.Exit(1)
	}
}

func run(chartDir, out string) error {
	files, err := manifestgen.Generate(chartDir)
	if err != nil {
		return err
	}
	if err := manifestgen.Write(out, files); err != nil {
		return err
	}
	fmt.Printf("gen-manifests: %d files under %s\n", len(files), out)
	return nil
}
