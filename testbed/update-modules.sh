#!/usr/bin/env bash
# Regenerates the go.mod/go.sum of the testbed's Go modules (and helm-docs') from versions.env.
# Run it after changing a version there; commit the result. build.sh never edits go.mod, so a build
# is reproducible from the committed files (and the drift test keeps them in step with versions.env).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"
export GOFLAGS="${GOFLAGS:--buildvcs=false}"

# `go mod init` writes the running toolchain's patch release; ask only for the minor the pinned
# modules need, so a CI runner with an older 1.26.x builds without fetching a toolchain.
lowest_go() { go mod edit -go=1.26.0; }

k8s_minor_patch="${KUBERNETES_VERSION#v1.}"   # v1.36.3 -> 36.3; staging modules are v0.36.3

echo "==> kube: k8s.io/kubernetes ${KUBERNETES_VERSION}"
cd "$here/kube"
rm -f go.mod go.sum
go mod init flaskops.dev/testbed/kube >/dev/null 2>&1
lowest_go
# k8s.io/kubernetes requires its staging modules at v0.0.0 and replaces them with ./staging paths,
# which do not exist outside its repository. Replace every one with its published v0.<minor>.<patch>
# before `go get`, taking the list from the served go.mod rather than typing it.
gomod="$(go mod download -json "k8s.io/kubernetes@${KUBERNETES_VERSION}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')"
staging="$(sed -n 's#^\s*\(k8s\.io/[a-z0-9-]*\) => \./staging/.*#\1#p' "$gomod")"
[ -n "$staging" ] || { echo "no staging replaces found in $gomod" >&2; exit 1; }
for m in $staging; do
  go mod edit -replace "$m=$m@v0.${k8s_minor_patch}"
done
go get "k8s.io/kubernetes@${KUBERNETES_VERSION}"
go mod tidy

echo "==> etcd: go.etcd.io/etcd/server/v3 ${ETCD_VERSION}"
cd "$here/etcd"
rm -f go.mod go.sum
go mod init flaskops.dev/testbed/etcd >/dev/null 2>&1
lowest_go
go get "go.etcd.io/etcd/server/v3@${ETCD_VERSION}"
go mod tidy

echo "==> kwok: sigs.k8s.io/kwok ${KWOK_VERSION}"
cd "$here/kwok"
rm -f go.mod go.sum
go mod init flaskops.dev/testbed/kwok >/dev/null 2>&1
lowest_go
go get "sigs.k8s.io/kwok@${KWOK_VERSION}"
go mod tidy

echo "==> helm: ${HELM_MODULE} ${HELM_VERSION}"
cd "$here/helm"
rm -f go.mod go.sum
go mod init flaskops.dev/testbed/helm >/dev/null 2>&1
lowest_go
go get "${HELM_MODULE}@${HELM_VERSION}"
go mod tidy
echo "==> helm-docs: ${HELM_DOCS_MODULE} ${HELM_DOCS_VERSION}"
cd "$here/helm-docs"
rm -f go.mod go.sum
go mod init flaskops.dev/testbed/helm-docs >/dev/null 2>&1
lowest_go
go get "${HELM_DOCS_MODULE}@${HELM_DOCS_VERSION}"
go mod tidy
echo "==> promrules: ${PROMETHEUS_MODULE} ${PROMETHEUS_VERSION}"
cd "$here/promrules"
rm -f go.mod go.sum
go mod init flaskops.dev/testbed/promrules >/dev/null 2>&1
lowest_go  # raised again by `go get` when Prometheus needs a newer patch release
go get "${PROMETHEUS_MODULE}@${PROMETHEUS_VERSION}"
go mod tidy
echo "==> done; review and commit testbed/*/go.mod testbed/*/go.sum"
