//go:build tools

// Package kubernetes pins the Kubernetes control-plane commands that
// scripts/build-test-bins.sh builds from this module.
package kubernetes

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
)
