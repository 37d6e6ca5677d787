#!/usr/bin/env bash
# Checks Prometheus rule files as `promtool check rules` does (rulefmt: YAML shape, PromQL, durations,
# label names, annotation templates) with testbed/promrules, a small program on Prometheus's own packages
# (pinned in testbed/promrules/go.mod), built from the Go module proxy into
# $FLASKOPS_CACHE/tools/promrules-<version>_<go version>/ on first use (about a minute cold), like
# chart-docs.sh builds helm-docs. promtool itself would also compile Prometheus's service discovery.
#
#   bash testbed/promrules.sh FILE...   prints each problem, exits 1 when there is any
#   bash testbed/promrules.sh --build   only builds it (make promrules)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"

go="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
[ -x "$go" ] || { echo "promrules.sh: no Go toolchain found (install Go >= 1.26 or set GO=/path/to/go)" >&2; exit 1; }
dest="${FLASKOPS_CACHE:-$HOME/.cache/flaskops}/tools/promrules-${PROMETHEUS_VERSION}_$("$go" env GOVERSION)"
bin="$dest/promrules"

if [ ! -x "$bin" ]; then
  mkdir -p "$(dirname "$dest")"
  exec 9>"$dest.lock"
  flock 9  # a concurrent first use waits for the other build instead of racing it
  if [ ! -x "$bin" ]; then
    echo "promrules: building the rule checker (Prometheus ${PROMETHEUS_VERSION}) into $dest" >&2
    tmp="$(mktemp -d "$dest.tmp.XXXXXX")"
    trap 'rm -rf "$tmp"' EXIT
    (cd "$here/promrules" && CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS="${GOFLAGS:--buildvcs=false}" \
      "$go" build -trimpath -ldflags "-s -w" -o "$tmp/promrules" . >&2)
    rm -rf "$dest"
    mv "$tmp" "$dest"  # atomic: an interrupted build never leaves a binary behind
    trap - EXIT
  fi
fi

[ "${1:-}" = "--build" ] && exit 0
exec "$bin" "$@"
