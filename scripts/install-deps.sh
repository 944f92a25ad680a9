#!/usr/bin/env bash
# Installs what the tests need and the machine may lack: a Prometheus
# server (Debian's package). Idempotent; needs root (or sudo) only when
# something is missing.
set -euo pipefail

need=()
if [ -z "${PROMETHEUS_BIN:-}" ] && ! command -v prometheus >/dev/null 2>&1; then
	need+=(prometheus)
fi
if [ ${#need[@]} -eq 0 ]; then
	exit 0
fi
echo "installing: ${need[*]}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# Debian's package may start a system Prometheus; the tests run their own.
if command -v systemctl >/dev/null 2>&1; then $sudo systemctl disable --now prometheus >/dev/null 2>&1 || true; fi
pkill -x prometheus 2>/dev/null || true
