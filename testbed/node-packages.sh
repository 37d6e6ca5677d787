# shellcheck shell=bash
# Debian packages the images and the real node need; sourced by images.sh.
# Installed when a command is missing (a fresh machine); nothing is started by installing them here
# (these machines run no init system, and Debian's policy-rc.d keeps services from starting).
#   docker.io         the engine that builds the images (dockerd started by hand: engine.sh)
#   docker-compose    Debian's Compose (1.29) for the dev stack test (tests/compose)
#   containerd runc   the node's container runtime (its own containerd, started by the testbed)
#   debootstrap       the base image, from Debian packages (no image registry is reachable)
#   containernetworking-plugins  the bridge and host-local CNI plugins the node's pods use
#   gcc libc6-dev     the static pause binary

ensure_node_packages() {
  local missing=()
  command -v dockerd >/dev/null || missing+=(docker.io)
  command -v docker-compose >/dev/null || missing+=(docker-compose)
  command -v containerd >/dev/null || missing+=(containerd)
  command -v runc >/dev/null || [ -x /usr/sbin/runc ] || missing+=(runc)
  command -v debootstrap >/dev/null || [ -x /usr/sbin/debootstrap ] || missing+=(debootstrap)
  [ -x /usr/lib/cni/bridge ] || missing+=(containernetworking-plugins)
  command -v gcc >/dev/null || missing+=(gcc)
  [ -f /usr/lib/x86_64-linux-gnu/libc.a ] || [ -n "$(find /usr/lib -name libc.a -print -quit)" ] || missing+=(libc6-dev)
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "packages: installing ${missing[*]} (Debian)" >&2
  if [ "$(id -u)" -ne 0 ]; then
    echo "packages: need root to apt-get install ${missing[*]}" >&2
    return 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# The Debian mirror apt already uses (debootstrap fetches the base system from it).
debian_mirror() {
  local uri
  uri="$(sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\).*/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null \
    | grep -v security | head -1)"
  [ -n "$uri" ] || uri="$(awk '$1 == "deb" && $0 !~ /security/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null)"
  echo "${uri:-http://deb.debian.org/debian}"
}
