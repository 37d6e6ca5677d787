#!/usr/bin/env bash
# Builds the testbed's binaries (Kubernetes control plane + kubectl, etcd, kwok/kwokctl, helm) from the
# Go module proxy into $FLASKOPS_CACHE/testbed/<key>/, and extracts KWOK's stage YAMLs next to them.
#
# - A no-op (well under a second) when <key>/bin is complete: the key names every pinned version and
#   the Go toolchain, so a version bump builds into a new directory and never reuses a stale one.
# - Atomic: everything is built into a temporary sibling directory that is renamed into place only
#   at the end, so an interrupted build never looks complete.
# - Versions come from versions.env, the one source of truth; go.mod/go.sum are committed
#   (regenerate them with update-modules.sh), so this script never edits them.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"

cache="${FLASKOPS_CACHE:-$HOME/.cache/flaskops}/testbed"
go="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
[ -x "$go" ] || { echo "build.sh: no Go toolchain found (install Go >= 1.26 or set GO=/path/to/go)" >&2; exit 1; }
goversion="$("$go" env GOVERSION)"
key="k8s-${KUBERNETES_VERSION}_etcd-${ETCD_VERSION}_kwok-${KWOK_VERSION}_helm-${HELM_VERSION}_${goversion}"
dest="$cache/$key"

binaries=(kube-apiserver kube-controller-manager kube-scheduler kubectl etcd kwok kwokctl helm)
stages=(
  node/fast/node-initialize.yaml
  node/heartbeat-with-lease/node-heartbeat-with-lease.yaml
  pod/fast/pod-ready.yaml
  pod/fast/pod-complete.yaml
  pod/fast/pod-delete.yaml
  pod/chaos/pod-container-running-failed.yaml
)

complete() {
  local b
  for b in "${binaries[@]}"; do [ -x "$dest/bin/$b" ] || return 1; done
  [ -f "$dest/stages.yaml" ]
}

# The real node's kubelet (flaskops_testbed.node) lives in its own directory: adding it did not make
# every existing control-plane build stale, and a machine that never runs the node could skip it.
node_dest="$cache/node_$key"
node_binaries=(kubelet)
node_complete() {
  local b
  for b in "${node_binaries[@]}"; do [ -x "$node_dest/bin/$b" ] || return 1; done
}

if complete && node_complete; then
  echo "testbed: binaries present in $dest and $node_dest (nothing to build)"
  exit 0
fi

mkdir -p "$cache"
# Two concurrent builds (say, `make test` in two terminals) would only waste cores; the second waits.
exec 9>"$cache/.build.lock"
if ! flock -n 9; then
  echo "testbed: another build holds $cache/.build.lock; waiting for it"
  flock 9
fi
if complete && node_complete; then
  echo "testbed: binaries present in $dest and $node_dest (built by the other process)"
  exit 0
fi

export CGO_ENABLED=0
export GOFLAGS="${GOFLAGS:--buildvcs=false}"
# GOTOOLCHAIN=local: a go.mod must never make a build download another toolchain behind our back.
export GOTOOLCHAIN=local

started=$SECONDS

# build <module dir> <output name> <package> [ldflags...]; into $tmp/bin
build() {
  local module="$1" name="$2" pkg="$3"
  shift 3
  local t0=$SECONDS
  echo "testbed: [$(( SECONDS - started ))s] building $name ($pkg)"
  (cd "$here/$module" && "$go" build -trimpath -ldflags "-s -w $*" -o "$tmp/bin/$name" "$pkg")
  echo "testbed: [$(( SECONDS - started ))s] built $name in $(( SECONDS - t0 ))s"
}

# Without these stamps the binaries call themselves v0.0.0-master and clients (and kwokctl, which
# derives flags from the version) misjudge the server. Same keys as upstream hack/lib/version.sh.
k8s_major_minor="${KUBERNETES_VERSION#v}"
k8s_major="${k8s_major_minor%%.*}"
k8s_minor="$(echo "$k8s_major_minor" | cut -d. -f2)"
build_date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
kube_ldflags=()
for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
  kube_ldflags+=(
    "-X $pkg.gitVersion=$KUBERNETES_VERSION"
    "-X $pkg.gitMajor=$k8s_major"
    "-X $pkg.gitMinor=$k8s_minor"
    "-X $pkg.gitTreeState=clean"
    "-X $pkg.buildDate=$build_date"
  )
done

if ! complete; then
  echo "testbed: cold build into $dest (expect 10-25 minutes on 2 cores; later runs are a no-op)"
  tmp="$(mktemp -d "$cache/.tmp-$key.XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  mkdir -p "$tmp/bin"

  build kube kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver "${kube_ldflags[@]}"
  build kube kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager "${kube_ldflags[@]}"
  build kube kube-scheduler k8s.io/kubernetes/cmd/kube-scheduler "${kube_ldflags[@]}"
  build kube kubectl k8s.io/kubernetes/cmd/kubectl "${kube_ldflags[@]}"
  build etcd etcd go.etcd.io/etcd/server/v3
  kwok_ldflags=(
    "-X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION#v}"
    "-X sigs.k8s.io/kwok/pkg/consts.KubeVersion=${KUBERNETES_VERSION#v}"
  )
  build kwok kwok sigs.k8s.io/kwok/cmd/kwok "${kwok_ldflags[@]}"
  build kwok kwokctl sigs.k8s.io/kwok/cmd/kwokctl "${kwok_ldflags[@]}"
  # `helm version` otherwise reports only the minor ("v4.3") baked into the source.
  build helm helm "$HELM_MODULE/cmd/helm" \
    "-X $HELM_MODULE/internal/version.version=$HELM_VERSION" \
    "-X $HELM_MODULE/internal/version.gitTreeState=clean"

  # The stages ship inside the KWOK module; take them from the exact version we pinned.
  kwok_dir="$(cd "$here/kwok" && "$go" list -m -f '{{.Dir}}' sigs.k8s.io/kwok)"
  {
    echo "# KWOK ${KWOK_VERSION} stages, extracted by testbed/build.sh from $kwok_dir/kustomize/stage"
    for s in "${stages[@]}"; do
      echo "---"
      cat "$kwok_dir/kustomize/stage/$s"
    done
  } >"$tmp/stages.yaml"
  mkdir -p "$tmp/stages"
  for s in "${stages[@]}"; do cp "$kwok_dir/kustomize/stage/$s" "$tmp/stages/"; done
  chmod -R u+w "$tmp/stages" "$tmp/stages.yaml"   # module cache files are read-only

  cp "$here/versions.env" "$tmp/versions.env"
  chmod 755 "$tmp"   # mktemp makes it 700; the postgres user may need to traverse the cache later
  rm -rf "$dest"     # a leftover from a different, incomplete layout; complete() said it is not usable
  mv "$tmp" "$dest"
  trap - EXIT
  echo "testbed: done in $(( SECONDS - started ))s -> $dest/bin"
  du -sh "$dest" | sed 's/^/testbed: size /'
fi

if ! node_complete; then
  echo "testbed: building the real node's kubelet into $node_dest (2-4 minutes after the control plane)"
  tmp="$(mktemp -d "$cache/.tmp-node_$key.XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  mkdir -p "$tmp/bin"
  build kube kubelet k8s.io/kubernetes/cmd/kubelet "${kube_ldflags[@]}"
  chmod 755 "$tmp"
  rm -rf "$node_dest"
  mv "$tmp" "$node_dest"
  trap - EXIT
  echo "testbed: kubelet done -> $node_dest/bin"
fi
