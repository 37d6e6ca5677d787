// Command promrules checks Prometheus rule files the way `promtool check rules` does (rulefmt.ParseFile:
// the YAML shape, every PromQL expression, durations, label names and annotation templates), without
// promtool's service-discovery dependencies, so it builds from the Go module proxy in about a minute.
//
//	promrules FILE...   prints each problem and exits 1 when there is any
package main

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: promrules FILE...")
		os.Exit(2)
	}
	p := parser.NewParser(parser.Options{})
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	failed := false
	for _, file := range os.Args[1:] {
		groups, errs := rulefmt.ParseFile(file, false, model.UTF8Validation, p, logger)
		for _, err := range errs {
			fmt.Fprintln(os.Stderr, err)
			failed = true
		}
		if groups != nil && len(errs) == 0 {
			n := 0
			for _, g := range groups.Groups {
				n += len(g.Rules)
			}
			fmt.Printf("%s: %d rules OK\n", file, n)
		}
	}
	if failed {
		os.Exit(1)
	}
}
