#!/usr/bin/env bash
# The local Docker engine of the testbed: `engine.sh start|stop|status|host`.
#
# Debian's docker.io, started by hand (these machines run no init system) with its own data root,
# exec root and socket, and with no bridge, no iptables rules, no masquerading and no IP forwarding:
# nothing on the host firewall or its routing changes. Builds use --network=host; compose networks
# (tests/compose) are plain bridges without NAT, reachable from this host only. `host` prints the DOCKER_HOST value for clients.
#   start   start it unless it answers already; prints "started" or "running"
#   stop    stop it (only a dockerd this script started: its pid file names it)
set -euo pipefail
cache="${FLASKOPS_CACHE:-$HOME/.cache/flaskops}"
engine="$cache/engine"
# Unix socket paths are limited to 108 bytes: the socket lives under /run, not in the cache.
run_dir="/run/flaskops-engine"
sock="$run_dir/docker.sock"
pid_file="$run_dir/dockerd.pid"
docker=(/usr/bin/docker -H "unix://$sock")

answers() { "${docker[@]}" version >/dev/null 2>&1; }

case "${1:-}" in
  host)
    echo "unix://$sock"
    ;;
  status)
    if answers; then echo "running (unix://$sock)"; else echo "stopped"; exit 3; fi
    ;;
  start)
    if answers; then echo running; exit 0; fi
    mkdir -p "$engine" "$run_dir"
    # dockerd starts its own containerd (from PATH) under its exec root.
    dockerd --data-root "$engine/docker" --exec-root "$run_dir/exec" --pidfile "$pid_file" \
      -H "unix://$sock" --iptables=false --ip-masq=false --ip6tables=false --bridge=none \
      --ip-forward=false --storage-driver=overlay2 >>"$engine/dockerd.log" 2>&1 &
    pid=$!
    for _ in $(seq 300); do
      answers && { echo started; exit 0; }
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    echo "engine: dockerd did not start; see $engine/dockerd.log" >&2
    tail -20 "$engine/dockerd.log" >&2
    exit 1
    ;;
  stop)
    [ -s "$pid_file" ] || exit 0
    pid="$(cat "$pid_file")"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$pid_file"
    # Its exec root, unless something is still mounted there.
    grep -q " $run_dir/" /proc/self/mountinfo || rm -rf "$run_dir"
    ;;
  *)
    echo "usage: $0 start|stop|status|host" >&2
    exit 2
    ;;
esac
