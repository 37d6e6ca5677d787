//go:build tools

// Package tools pins KWOK (the node/pod simulator) and kwokctl (which runs the cluster).
package tools

import (
	_ "sigs.k8s.io/kwok/cmd/kwok"
	_ "sigs.k8s.io/kwok/cmd/kwokctl"
)
