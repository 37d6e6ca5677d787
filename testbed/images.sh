#!/usr/bin/env bash
# `make images`: the project's images, built with a local Docker engine and no image registry.
#
#   flaskops.local/guestbook:<key>         Dockerfile --target app
#   flaskops.local/flaskops:<key>          Dockerfile --target operator
#   flaskops.local/guestbook-broken:<key>  the guestbook plus a migration that fails (a real exit code != 0)
#   flaskops.local/pause:3.10              the node's sandbox image: kubernetes' pause.c, compiled here
#   flaskops.local/postgres:15-<hash>      Debian's PostgreSQL 15, a postgres:15 stand-in for compose.yaml
#
# Registries of images are unreachable here, so the Dockerfile's FROM gets a base made from Debian
# packages (debootstrap + Debian's Python 3.11) through its PYTHON_IMAGE build argument; the Dockerfile's
# default stays the public python:3.11-slim. The images are for the tests and the demo only: never pushed.
#
# Output, in $FLASKOPS_CACHE/images/:
#   <key>/images.tar   the four images (`docker save`), what the testbed's node imports into its containerd
#   <key>/images.env   their names (GUESTBOOK_IMAGE=..., ...), read by flaskops_testbed.images
#   current            a symlink to the newest <key>
# <key> hashes everything that goes into the images, so an unchanged tree is a no-op (no daemon starts).
#
# The engine: Debian's docker.io, started by testbed/engine.sh (its own data root and socket, no bridge,
# no iptables rules); stopped again at the end unless it was already running. Packages are installed
# when missing (node-packages.sh).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"

cache="${FLASKOPS_CACHE:-$HOME/.cache/flaskops}"
images="$cache/images"
engine="$cache/engine"
docker=(/usr/bin/docker -H "$(bash "$here/engine.sh" host)")
log() { echo "images: $*" >&2; }

# ---- what the images are made of: their key -------------------------------------------------------------
inputs() {
  (cd "$root" && find Dockerfile .dockerignore pyproject.toml app/wsgi.py app/gunicorn.conf.py \
    app/guestbook operator/flaskops testbed/images testbed/images.sh testbed/engine.sh testbed/versions.env \
    -type f ! -name '*.pyc' ! -path '*/__pycache__/*' -print0 | sort -z | xargs -0 sha256sum)
}
key="$(inputs | sha256sum | cut -c1-12)"

# ---- packages: also on the no-op path, since the real node and the Compose test need them too -------------
# shellcheck source=node-packages.sh
source "$here/node-packages.sh"
ensure_node_packages

dest="$images/$key"
if [ -s "$dest/images.tar" ] && [ -s "$dest/images.env" ]; then
  log "images present in $dest (nothing to build)"
  ln -sfn "$key" "$images/current"
  exit 0
fi

mkdir -p "$images"
exec 9>"$images/.build.lock"
if ! flock -n 9; then
  log "another build holds $images/.build.lock; waiting for it"
  flock 9
fi
started=$SECONDS

# ---- the engine ------------------------------------------------------------------------------------------
started_engine=""
stop_engine() { [ -z "$started_engine" ] || { log "stopping dockerd"; bash "$here/engine.sh" stop; }; }
trap 'stop_engine; rm -rf "${tmp:-}"' EXIT
if [ "$(bash "$here/engine.sh" start)" = started ]; then
  started_engine=yes
  log "dockerd up after $((SECONDS - started))s (data in $engine/docker; no bridge, no iptables)"
fi

# ---- the base: Debian bookworm + Debian's Python 3.11, in python:3.11-slim's layout ------------------------
base="flaskops.local/python:3.11-bookworm"
if ! "${docker[@]}" image inspect "$base" >/dev/null 2>&1; then
  t0=$SECONDS
  mirror="$(debian_mirror)"
  rootfs="$(mktemp -d "$engine/.rootfs.XXXXXX")"
  log "debootstrap bookworm from $mirror (a minute or two)"
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$rootfs" "$mirror" >"$engine/debootstrap.log" 2>&1 \
    || { tail -20 "$engine/debootstrap.log" >&2; exit 1; }
  # Outgoing HTTPS here may be re-signed by a local CA: pip inside a build needs to trust it too.
  if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
    chroot "$rootfs" update-ca-certificates >/dev/null 2>&1
  fi
  ln -sf /usr/bin/python3 "$rootfs/usr/local/bin/python"   # where python:3.11-slim has it
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*
  tar --numeric-owner -C "$rootfs" -c . | "${docker[@]}" import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' - "$base" >/dev/null
  rm -rf "$rootfs"
  log "base image $base in $((SECONDS - t0))s"
fi

# ---- the project's images -------------------------------------------------------------------------------
guestbook="flaskops.local/guestbook:$key"
operator="flaskops.local/flaskops:$key"
broken="flaskops.local/guestbook-broken:$key"
pause="flaskops.local/pause:3.10"
export DOCKER_BUILDKIT=1   # BuildKit, as users get it: it is what a `# syntax=` line would break offline
build() {
  local t0=$SECONDS tag="$1"
  shift
  log "building $tag"
  "${docker[@]}" build --network=host --progress=plain -t "$tag" "$@" >"$engine/build-${tag##*/}.log" 2>&1 \
    || { tail -40 "$engine/build-${tag##*/}.log" >&2; exit 1; }
  log "built $tag in $((SECONDS - t0))s"
}
build "$guestbook" --build-arg "PYTHON_IMAGE=$base" --target app "$root"
build "$operator" --build-arg "PYTHON_IMAGE=$base" --target operator "$root"
build "$broken" --build-arg "GUESTBOOK_IMAGE=$guestbook" "$here/images/guestbook-broken"

# pause: the sandbox every pod's namespaces hang on, from the kubernetes module of the pinned version.
if ! "${docker[@]}" image inspect "$pause" >/dev/null 2>&1; then
  # The module cache has it after `make testbed`; `go mod download` fetches it otherwise.
  kubernetes_dir="$(cd "$here/kube" && GOTOOLCHAIN=local go mod download -json "k8s.io/kubernetes@${KUBERNETES_VERSION}" \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')"
  pause_src="$kubernetes_dir/build/pause/linux/pause.c"
  pause_ctx="$(mktemp -d)"
  gcc -Os -static -o "$pause_ctx/pause" -DVERSION="\"${KUBERNETES_VERSION}-flaskops\"" "$pause_src"
  cp "$here/images/pause/Dockerfile" "$pause_ctx/"
  build "$pause" "$pause_ctx"
  rm -rf "$pause_ctx"
fi

# For the Compose dev stack (compose.yaml, tests/compose): stays in the engine, not in the node's tarball.
postgres="flaskops.local/postgres:15-$(cat "$here"/images/postgres/* | sha256sum | cut -c1-8)"
"${docker[@]}" image inspect "$postgres" >/dev/null 2>&1 \
  || build "$postgres" --build-arg "BASE_IMAGE=$base" "$here/images/postgres"

tmp="$(mktemp -d "$images/.tmp-$key.XXXXXX")"
log "saving the images for the node's containerd"
"${docker[@]}" save -o "$tmp/images.tar" "$guestbook" "$operator" "$broken" "$pause"
{
  echo "# written by testbed/images.sh; read by flaskops_testbed.images"
  echo "GUESTBOOK_IMAGE=$guestbook"
  echo "OPERATOR_IMAGE=$operator"
  echo "BROKEN_MIGRATION_IMAGE=$broken"
  echo "PAUSE_IMAGE=$pause"
  echo "BASE_IMAGE=$base"
  echo "POSTGRES_IMAGE=$postgres"
  for image in "$guestbook" "$operator" "$broken" "$pause"; do
    name="${image%%:*}"
    echo "SIZE_${name##*/}=$("${docker[@]}" image inspect -f '{{.Size}}' "$image" | tr -d '\n')" | tr '-' '_'
  done
} >"$tmp/images.env"
chmod 755 "$tmp"
rm -rf "$dest"
mv "$tmp" "$dest"
ln -sfn "$key" "$images/current"
# Older keys: keep the newest two, in the cache and in the engine (each tarball is ~470 MB).
# shellcheck disable=SC2012
ls -1t "$images" | grep -E '^[0-9a-f]{12}$' | tail -n +3 | while read -r old; do rm -rf "${images:?}/$old"; done
kept="$(ls -1 "$images" | grep -E '^[0-9a-f]{12}$' | paste -sd'|')"
"${docker[@]}" image ls --format '{{.Repository}}:{{.Tag}}' \
  | grep -E '^flaskops\.local/(guestbook|flaskops|guestbook-broken):[0-9a-f]{12}$' | grep -vE ":($kept)\$" \
  | xargs -r "${docker[@]}" rmi >/dev/null || true
log "done in $((SECONDS - started))s -> $dest"
"${docker[@]}" image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep flaskops.local | sed 's/^/images: /' >&2
