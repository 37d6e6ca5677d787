//go:build tools

// Package tools pins etcd, in its own module so its dependencies do not collide with Kubernetes'.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
)
