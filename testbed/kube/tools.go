//go:build tools

// Package tools pins the Kubernetes commands the testbed builds; nothing imports it.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	// The real node beside the KWOK nodes (flaskops_testbed.node).
	_ "k8s.io/kubernetes/cmd/kubelet"
)
