//go:build tools

// Package tools pins the helm CLI used to install the chart into the testbed.
package tools

import (
	_ "helm.sh/helm/v4/cmd/helm"
)
