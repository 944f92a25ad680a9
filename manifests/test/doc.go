// Package test checks the Kubernetes manifests under manifests/: every
// kustomization builds with kustomize, every rendered object decodes
// strictly into its Go type (a misspelt field fails), and the install,
// monitoring and example objects keep the invariants the injector, the
// sidecar and Kong's tutorial "Autoscale workloads with Prometheus" rely on.
//
// It is a module of its own so that kustomize, prometheus-operator and
// cert-manager stay out of the main module's go.mod. Run it with
// `make test-manifests` from the repository root.
package test
