// Package test checks the Helm chart charts/kong-metrics-sidecar with the
// Helm SDK: the chart lints, renders with a matrix of values into objects
// that decode strictly into their Go types (a misspelt field fails) and
// match one golden file per case under testdata/, its schema rejects wrong
// values, its self-generated webhook certificate is kept across upgrades
// and renewed near its expiry, the files of the kustomize install under
// manifests/ that `make manifests` generates from the chart (package
// manifestgen, command cmd/gen-manifests) are current, and every kustomize
// install holds the objects the chart renders, so the two cannot drift.
//
// It is a module of its own so that Helm, kustomize, prometheus-operator
// and cert-manager stay out of the main module's go.mod. Run it with
// `make test-chart` from the repository root.
package test
