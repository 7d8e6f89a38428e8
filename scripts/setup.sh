#!/usr/bin/env bash
# Prepares a Debian machine for swarm-e2e (run as root; idempotent):
#   - installs the engine, debootstrap, busybox-static, chromium and a C compiler from Debian's
#     packages, and checks for Rust >= 1.89 (installs it with rustup where rustup's site
#     answers, or stops with the command that does)
#   - raises the host limits node containers share (neighbour table, inotify)
#   - starts a Docker engine unless one already answers
# When it starts containerd and dockerd itself, it writes their PIDs to
# $SWARM_E2E_DOCKERD_PIDFILE (default /run/swarm-e2e-dockerd.pid), one per line in the
# order to stop them (dockerd first), so a caller can stop exactly those processes.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
  echo "scripts/setup.sh: run as root (it installs packages and starts dockerd)" >&2
  exit 2
fi

# gcc and libc6-dev: crates with C parts (aws-lc-sys, the TLS provider) compile them.
# chromium: the tests load the HTML reports in a real browser (headless).
packages=(debootstrap busybox-static iproute2 iptables procps tar ca-certificates openssl gcc libc6-dev chromium)
# An engine installed another way (docker-ce on CI runners) is used as it is: docker.io
# would conflict with its containerd.io.
# The docker CLI deploys Compose stacks (`docker stack deploy`): docker.io ships both.
{ command -v dockerd && command -v docker; } >/dev/null 2>&1 || packages+=(docker.io)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "scripts/setup.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Rust: the workspace needs 1.89 or later (Cargo.toml `rust-version`); Debian 12's own
# rustc is 1.63, so it comes from rustup. Callers source ~/.cargo/env afterwards.
rust_needed=1.89
rust_found() {
  local v
  v=$( (rustc --version 2>/dev/null || "$HOME/.cargo/bin/rustc" --version 2>/dev/null) | awk '{print $2}')
  [ -n "$v" ] && [ "$(printf '%s\n%s\n' "$rust_needed" "$v" | sort -V | head -1)" = "$rust_needed" ]
}
if ! rust_found; then
  have=$( (rustc --version 2>/dev/null || "$HOME/.cargo/bin/rustc" --version 2>/dev/null) || echo "none")
  echo "scripts/setup.sh: Rust >= $rust_needed is needed (found: $have)"
  if command -v rustup >/dev/null 2>&1 || [ -x "$HOME/.cargo/bin/rustup" ]; then
    PATH="$HOME/.cargo/bin:$PATH" rustup toolchain install stable --profile minimal
    PATH="$HOME/.cargo/bin:$PATH" rustup default stable
  elif command -v curl >/dev/null 2>&1 && curl -fsS --max-time 20 --proto '=https' --tlsv1.2 https://sh.rustup.rs -o /tmp/rustup-init.sh; then
    sh /tmp/rustup-init.sh -y --profile minimal --default-toolchain stable
    rm -f /tmp/rustup-init.sh
  else
    echo "scripts/setup.sh: rustup's site does not answer from here; install Rust with:" >&2
    echo "  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal && . \"\$HOME/.cargo/env\"" >&2
    exit 2
  fi
  rust_found || { echo "scripts/setup.sh: Rust is still older than $rust_needed" >&2; exit 2; }
  echo "scripts/setup.sh: Rust installed in ~/.cargo (run: . \"\$HOME/.cargo/env\")"
fi

# Host limits that node containers share (one kernel): the neighbour table grows with
# the square of the nodes (100 nodes need about 10,100 entries; the default allows
# 1,024). `swarm-e2e doctor --nodes N` says what a size needs. A machine that does not
# let us change them (a container) keeps its own, and runs say what they lack.
raise() {
  local key=$1 want=$2 have
  have=$(sysctl -n "$key" 2>/dev/null || echo 0)
  if [ "$have" -lt "$want" ]; then
    if sysctl -q -w "$key=$want" 2>/dev/null; then
      echo "scripts/setup.sh: raised $key from $have to $want"
    else
      echo "scripts/setup.sh: could not raise $key ($have); runs larger than it allows are refused" >&2
    fi
  fi
}
raise net.ipv4.neigh.default.gc_thresh1 3072
raise net.ipv4.neigh.default.gc_thresh2 6144
raise net.ipv4.neigh.default.gc_thresh3 12288
raise fs.inotify.max_user_instances 512

if docker info >/dev/null 2>&1; then
  echo "scripts/setup.sh: a Docker engine is running: $(docker version --format '{{.Server.Version}}')"
  exit 0
fi

pidfile=${SWARM_E2E_DOCKERD_PIDFILE:-/run/swarm-e2e-dockerd.pid}
log=${SWARM_E2E_DOCKERD_LOG:-/var/log/swarm-e2e-dockerd.log}
containerd_log=${log%.log}-containerd.log
containerd_sock=/run/containerd/containerd.sock
: >"$pidfile"

# Waits up to $1 seconds for the command "$3..." to succeed while the process $2 lives.
# Returns 0 when it succeeds, 1 when the process exits, 2 when the bound passes.
wait_for() {
  local bound=$1 pid=$2 tries
  shift 2
  tries=$((bound * 5))
  for _ in $(seq 1 "$tries"); do
    "$@" >/dev/null 2>&1 && return 0
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.2
  done
  return 2
}

# containerd first, by us, with a generous bound: dockerd gives a containerd it starts
# itself only 15 s, and on a fresh machine its first start has taken longer (CI failed
# with "timeout waiting for containerd to start"). A containerd that already answers is
# used as it is.
if ! ctr --address "$containerd_sock" version >/dev/null 2>&1; then
  echo "scripts/setup.sh: starting containerd (log: $containerd_log)"
  setsid containerd >"$containerd_log" 2>&1 </dev/null &
  containerd_pid=$!
  # Stop order: dockerd (written below, first line), then containerd.
  echo "$containerd_pid" >>"$pidfile"
  if ! wait_for 120 "$containerd_pid" ctr --address "$containerd_sock" version; then
    echo "scripts/setup.sh: containerd did not answer on $containerd_sock; last lines of $containerd_log:" >&2
    tail -20 "$containerd_log" >&2
    exit 3
  fi
fi

# Offline-preferring services: nothing here may reach a registry.
for attempt in 1 2; do
  echo "scripts/setup.sh: starting dockerd (log: $log)"
  DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1 setsid dockerd --containerd="$containerd_sock" >"$log" 2>&1 </dev/null &
  dockerd_pid=$!
  { echo "$dockerd_pid"; grep -v "^$dockerd_pid\$" "$pidfile" || true; } >"$pidfile.new"
  mv "$pidfile.new" "$pidfile"
  wait_for 60 "$dockerd_pid" docker info && status=0 || status=$?
  if [ "$status" -eq 0 ]; then
    echo "scripts/setup.sh: dockerd $(docker version --format '{{.Server.Version}}') is ready"
    exit 0
  fi
  if [ "$status" -eq 1 ]; then
    echo "scripts/setup.sh: dockerd exited (attempt $attempt); last lines of $log:" >&2
  else
    echo "scripts/setup.sh: dockerd did not answer within 60s (attempt $attempt); last lines of $log:" >&2
    kill "$dockerd_pid" 2>/dev/null || true
    wait_for 15 "$dockerd_pid" false || true
  fi
  tail -20 "$log" >&2
  grep -v "^$dockerd_pid\$" "$pidfile" >"$pidfile.new" || true
  mv "$pidfile.new" "$pidfile"
done
exit 3
