//go:build tools

// Package tools pins helm-docs, which generates the chart README's values table from values.yaml.
package tools

import (
	_ "github.com/norwoodj/helm-docs/cmd/helm-docs"
)
