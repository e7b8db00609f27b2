#!/usr/bin/env bash
# Makes sure a Docker engine answers. As root on Debian/Ubuntu it installs docker.io and starts dockerd in the
# background (log: .cache/dockerd.log); anywhere else it says, in one line, what the user must do.
set -euo pipefail
log_dir="${1:-.cache}"
mkdir -p "$log_dir"

answers() { timeout 20 docker info >/dev/null 2>&1; }

if command -v docker >/dev/null 2>&1 && answers; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "error: no Docker engine answers: start one (e.g. 'sudo systemctl start docker', or run 'make setup' as root on Debian), or use '--sandbox process' (no isolation)" >&2
  exit 1
fi
if ! command -v dockerd >/dev/null 2>&1; then
  echo "[setup] installing docker.io and debootstrap (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >"$log_dir/apt.log" 2>&1 || true
  apt-get install -y -q docker.io debootstrap >>"$log_dir/apt.log" 2>&1 || {
    echo "error: 'apt-get install docker.io' failed (see $log_dir/apt.log): install Docker yourself, or use '--sandbox process' (no isolation)" >&2
    exit 1
  }
fi
command -v debootstrap >/dev/null 2>&1 || apt-get install -y -q debootstrap >>"$log_dir/apt.log" 2>&1 || true
if ! command -v docker >/dev/null 2>&1; then
  echo "error: dockerd is installed but no docker CLI is on PATH: install docker.io's client" >&2
  exit 1
fi
echo "[setup] starting dockerd in the background (log: $log_dir/dockerd.log)"
nohup dockerd >"$log_dir/dockerd.log" 2>&1 </dev/null &
for _ in $(seq 1 60); do
  if answers; then
    exit 0
  fi
  sleep 1
done
echo "error: dockerd did not answer within 60 s (see $log_dir/dockerd.log): start a Docker engine, or use '--sandbox process' (no isolation)" >&2
exit 1
