#!/usr/bin/env bash
# Regenerates charts/flaskops/README.md from README.md.gotmpl and the `# --` comments in values.yaml with
# helm-docs, built from the Go module proxy (pinned in testbed/helm-docs/go.mod) into
# $FLASKOPS_CACHE/tools/helm-docs-<version>_<go version>/ on first use, like build.sh builds the testbed.
#
#   bash testbed/chart-docs.sh            rewrite the README (make chart-docs)
#   bash testbed/chart-docs.sh --dry-run  print it instead (tests/chart compares that with the file)
#
# Strict mode: a value without a `# --` comment fails the generation, so the table never has a blank row.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"

go="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
[ -x "$go" ] || { echo "chart-docs.sh: no Go toolchain found (install Go >= 1.26 or set GO=/path/to/go)" >&2; exit 1; }
dest="${FLASKOPS_CACHE:-$HOME/.cache/flaskops}/tools/helm-docs-${HELM_DOCS_VERSION}_$("$go" env GOVERSION)"
bin="$dest/helm-docs"

if [ ! -x "$bin" ]; then
  mkdir -p "$(dirname "$dest")"
  exec 9>"$dest.lock"
  flock 9  # a concurrent first use waits for the other build instead of racing it
  if [ ! -x "$bin" ]; then
    echo "chart-docs: building helm-docs ${HELM_DOCS_VERSION} into $dest" >&2
    tmp="$(mktemp -d "$dest.tmp.XXXXXX")"
    trap 'rm -rf "$tmp"' EXIT
    (cd "$here/helm-docs" && CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS="${GOFLAGS:--buildvcs=false}" \
      "$go" build -trimpath -ldflags "-s -w -X main.version=${HELM_DOCS_VERSION}" -o "$tmp/helm-docs" \
      "$HELM_DOCS_MODULE/cmd/helm-docs" >&2)
    rm -rf "$dest"
    mv "$tmp" "$dest"  # atomic: an interrupted build never leaves a binary behind
    trap - EXIT
  fi
fi

cd "$here/../charts"
# helm-docs exits 0 even when it skips a chart it cannot parse, saying so only in a log line: any line on
# stderr is a failure here.
errors="$(mktemp)"
trap 'rm -f "$errors"' EXIT
"$bin" --chart-search-root . --chart-to-generate flaskops --template-files README.md.gotmpl \
  --sort-values-order file --skip-version-footer --log-level warning "$@" 2>"$errors"
if [ -s "$errors" ]; then
  cat "$errors" >&2
  echo "chart-docs: helm-docs reported a problem (above)" >&2
  exit 1
fi
