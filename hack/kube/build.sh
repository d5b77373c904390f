#!/usr/bin/env bash
# Build the Kubernetes 1.20.2 binaries once, from Debian bookworm's `kubernetes` source package,
# and cache them under ~/.cache/pirate-workers/kube-1.20.2/bin: kube-apiserver and
# kube-controller-manager (the apiserver-only control plane of the fast tiers) and, in the same
# `make WHAT`, kubelet (dockershim), kube-scheduler and kube-proxy for the real node of
# hack/cluster/, plus the pod sandbox's `pause` (the source's build/pause/linux/pause.c, static).
# The Go build cache is kept, so a rebuild after a cache miss takes a minute.
#
# Why from source: Debian ships only kubectl (kubernetes-client), there is no Docker here and
# nothing can be downloaded except Debian/PyPI/npm packages, so the control-plane binaries have
# to be compiled from the vendored source package with Debian's Go. See hack/kube/README.md.
#
# Idempotent: when the cached binaries exist and answer `--version`, this exits 0 in well under
# a second (it only checks that etcd and kubectl are there too). Safe to run concurrently: a lock
# serialises builders and the loser re-checks the cache after the winner finished.
#
# Environment knobs:
#   PIRATE_CACHE_DIR   cache root (default ~/.cache/pirate-workers)
#   PIRATE_KEEP_BUILD  1 = keep the source tree after a successful build (the Go cache is always kept)
set -euo pipefail

KUBE_VERSION=1.20.2
CACHE_ROOT="${PIRATE_CACHE_DIR:-$HOME/.cache/pirate-workers}"
KUBE_DIR="$CACHE_ROOT/kube-$KUBE_VERSION"
BIN_DIR="$KUBE_DIR/bin"
SRC_ROOT="$CACHE_ROOT/src"
BUILD_LOG="$KUBE_DIR/build.log"
DEB_SRC_FILE=/etc/apt/sources.list.d/pirate-deb-src.sources
DEBIAN_KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
REFLECT2_DEBIAN=/usr/share/gocode/src/github.com/modern-go/reflect2
PATCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/patches"
PAUSE_DIR="$KUBE_DIR/pause"
# The kubelet's patches (step 4b). The list is stamped next to the binary: a kubelet built with
# another list is rebuilt, so a cache from before a patch was added does not pass for a new one.
KUBELET_PATCHES="dockershim-oom-score-adj kubelet-hostpath-fsgroup"
# Binaries we always need (control plane, then the node); kubectl only when none is on PATH (see
# needed_targets).
CONTROL_PLANE=(kube-apiserver kube-controller-manager kubelet kube-scheduler kube-proxy)

log() { printf '[kube-build %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf '[kube-build] ERROR: %s\n' "$*" >&2; exit 1; }
# Any unexpected failure still ends with exactly one clear line naming what failed.
on_err() {
  local rc=$? line=$1 cmd=$2
  printf '[kube-build] ERROR: command failed (exit %s) at build.sh:%s: %s\n' "$rc" "$line" "$cmd" >&2
  exit "$rc"
}
trap 'on_err "$LINENO" "$BASH_COMMAND"' ERR

# A binary counts as built only if it runs and reports the version we want (a half-copied or
# foreign file must not satisfy the fast path).
binary_ok() {
  [[ -x "$BIN_DIR/$1" ]] && "$BIN_DIR/$1" --version 2>/dev/null | grep -q "v$KUBE_VERSION" || return 1
  [[ $1 != kubelet || "$(cat "$BIN_DIR/kubelet.patches" 2>/dev/null)" == "$KUBELET_PATCHES" ]]
}

pause_ok() { [[ -x $PAUSE_DIR/pause && -f $PAUSE_DIR/pause.c ]]; }

kubectl_available() {
  command -v kubectl >/dev/null 2>&1 || [[ -x "$BIN_DIR/kubectl" ]]
}

needed_targets() {
  local t
  for t in "${CONTROL_PLANE[@]}"; do binary_ok "$t" || echo "$t"; done
  # start.sh and the tests drive the cluster with kubectl; Debian's kubernetes-client is the same
  # 1.20 code and would hit the reflect2 crash, so build a fixed one only if the machine has none.
  kubectl_available || echo kubectl
}

ensure_etcd() {
  if ! command -v etcd >/dev/null 2>&1; then
    log "installing etcd-server (Debian)"
    apt_install etcd-server
  fi
}

apt_updated=0
apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  if [[ $apt_updated == 0 ]]; then
    apt-get -o DPkg::Lock::Timeout=900 update -qq >>"$BUILD_LOG" 2>&1 || die "apt-get update failed (see $BUILD_LOG)"
    apt_updated=1
  fi
  apt-get -o DPkg::Lock::Timeout=900 install -y -qq --no-install-recommends "$@" >>"$BUILD_LOG" 2>&1 \
    || die "apt-get install $* failed (see $BUILD_LOG)"
}

# The deb-src entry `apt-get source` needs. Written in deb822 form mirroring the existing deb
# entries (same URIs and Suites, read from the file so no host name is hard-coded here) and with
# the same Signed-By keyring: apt refuses a one-line deb-src whose Signed-By differs from the
# .sources entry.
ensure_deb_src() {
  if ! apt-cache showsrc kubernetes 2>/dev/null | grep -q '^Package: kubernetes'; then
    MAIN_SOURCES=/etc/apt/sources.list.d/debian.sources
    [[ -r $MAIN_SOURCES ]] || die "no $MAIN_SOURCES to copy URIs/Suites from; add a deb-src entry for bookworm by hand"
    log "adding deb-src entry $DEB_SRC_FILE (mirrors $MAIN_SOURCES)"
    local tmp_src
    tmp_src=$(mktemp)
    # Paragraph mode: one stanza per record. Keep URIs/Suites/Components, force Types/Signed-By,
    # drop comments and any (possibly multi-line) Signed-By of the original.
    awk -v keyring="$DEBIAN_KEYRING" '
      BEGIN { RS = ""; ORS = "\n\n" }
      $0 ~ /(^|\n)Types:[^\n]*deb([ \t]|$|\n)/ {
        out = ""; n = split($0, L, "\n"); skip = 0
        for (i = 1; i <= n; i++) {
          l = L[i]
          if (skip && l ~ /^[ \t]/) continue
          skip = 0
          if (l ~ /^#/) continue
          if (l ~ /^Types:/) { out = out "Types: deb-src\n"; continue }
          if (l ~ /^Signed-By:/) { skip = 1; continue }
          out = out l "\n"
        }
        print out "Signed-By: " keyring
      }' "$MAIN_SOURCES" >"$tmp_src"
    grep -q '^URIs:' "$tmp_src" || die "could not derive a deb-src entry from $MAIN_SOURCES"
    install -m 0644 "$tmp_src" "$DEB_SRC_FILE"
    rm -f "$tmp_src"
    apt-get -o DPkg::Lock::Timeout=900 update -qq >>"$BUILD_LOG" 2>&1 || die "apt-get update after adding $DEB_SRC_FILE failed (see $BUILD_LOG)"
  fi
}

# The pod sandbox's pause, exactly as upstream builds it (build/pause/Makefile: -Os -static) from
# the source package's build/pause/linux/pause.c, which is kept next to the binary.
compile_pause() {
  # -static needs libc.a (libc6-dev); gcc prints the bare name when it has none.
  if ! command -v gcc >/dev/null 2>&1 || [[ $(gcc -print-file-name=libc.a) != /* ]]; then
    apt_install gcc libc6-dev
  fi
  gcc -Os -Wall -Werror -static -DVERSION=v3.4-pirate -o "$PAUSE_DIR/.pause.tmp" "$PAUSE_DIR/pause.c" >>"$BUILD_LOG" 2>&1 \
    || die "compiling pause.c failed (see $BUILD_LOG)"
  mv -f "$PAUSE_DIR/.pause.tmp" "$PAUSE_DIR/pause"
  log "built $PAUSE_DIR/pause"
}

# A cache whose binaries were built before pause was kept: take pause.c from the source package's
# orig tarball (Debian's patches do not touch build/pause) instead of unpacking and building it all.
build_pause_only() {
  mkdir -p "$PAUSE_DIR"
  if [[ ! -f $PAUSE_DIR/pause.c ]]; then
    ensure_deb_src
    log "fetching build/pause/linux/pause.c from the kubernetes source package"
    local scratch
    scratch=$(mktemp -d)
    (cd "$scratch" && apt-get source --download-only -qq kubernetes >>"$BUILD_LOG" 2>&1) \
      || { rm -rf "$scratch"; die "apt-get source --download-only kubernetes failed (see $BUILD_LOG)"; }
    tar -xzf "$scratch"/kubernetes_*.orig.tar.gz -O --wildcards '*/build/pause/linux/pause.c' >"$PAUSE_DIR/.pause.c.tmp" \
      || { rm -rf "$scratch"; die "build/pause/linux/pause.c not found in the kubernetes source package"; }
    rm -rf "$scratch"
    mv -f "$PAUSE_DIR/.pause.c.tmp" "$PAUSE_DIR/pause.c"
  fi
  compile_pause
}

# ---------------------------------------------------------------------------------------------
# Fast path: nothing to do.
mkdir -p "$KUBE_DIR"
if [[ -z "$(needed_targets)" ]] && command -v etcd >/dev/null 2>&1 && pause_ok; then
  exit 0
fi

[[ $(id -u) == 0 ]] || die "must run as root (apt-get install / apt-get source)"

# Serialise concurrent builders (e.g. two test sessions starting at once).
exec 9>"$KUBE_DIR/.build.lock"
flock 9
mapfile -t TARGETS < <(needed_targets)
if [[ ${#TARGETS[@]} == 0 ]]; then
  ensure_etcd
  pause_ok || build_pause_only
  log "cached binaries are ready in $BIN_DIR"
  exit 0
fi
: >"$BUILD_LOG"
log "building ${TARGETS[*]} (Kubernetes $KUBE_VERSION); full log: $BUILD_LOG"

# ---------------------------------------------------------------------------------------------
# 1. Packages. dpkg-dev unpacks the source package; golang-go (1.19 on bookworm), make and rsync
#    are what Kubernetes' own build scripts use; the reflect2 package carries the fixed 1.0.2;
#    etcd-server is the apiserver's storage; openssl/curl are used by start.sh.
log "installing build dependencies (apt)"
apt_install ca-certificates dpkg-dev golang-go make rsync patch gcc libc6-dev \
  golang-github-modern-go-reflect2-dev etcd-server openssl curl util-linux python3

# ---------------------------------------------------------------------------------------------
# 2. deb-src entry (see ensure_deb_src).
ensure_deb_src

# ---------------------------------------------------------------------------------------------
# 3. Source. Unpacked into a scratch dir and renamed only when complete, so an interrupted run
#    never leaves a half-unpacked tree that later runs would trust.
mkdir -p "$SRC_ROOT"
SRC_DIR=$(find "$SRC_ROOT" -mindepth 1 -maxdepth 1 -type d -name "kubernetes-*$KUBE_VERSION" -print -quit)
if [[ -z $SRC_DIR || ! -f $SRC_DIR/.pirate-unpacked ]]; then
  if [[ -n $SRC_DIR ]]; then rm -rf "$SRC_DIR"; fi
  log "fetching source package: apt-get source kubernetes"
  scratch=$(mktemp -d "$SRC_ROOT/.fetch.XXXXXX")
  (cd "$scratch" && apt-get source -qq kubernetes >>"$BUILD_LOG" 2>&1) \
    || die "apt-get source kubernetes failed (see $BUILD_LOG)"
  unpacked=$(find "$scratch" -mindepth 1 -maxdepth 1 -type d -name 'kubernetes-*' -print -quit)
  [[ -n $unpacked ]] || die "apt-get source produced no kubernetes-* directory"
  # Debian versions it as 1.20.5+really1.20.2; insist on the upstream version we expect.
  grep -q "tag: v$KUBE_VERSION'" "$unpacked/hack/lib/version.sh" \
    || die "source package is not Kubernetes v$KUBE_VERSION ($(basename "$unpacked"))"
  touch "$unpacked/.pirate-unpacked"
  SRC_DIR="$SRC_ROOT/$(basename "$unpacked")"
  mv "$unpacked" "$SRC_DIR"
  rm -rf "$scratch"
fi
log "source tree: $SRC_DIR"
cd "$SRC_DIR"

# ---------------------------------------------------------------------------------------------
# 4. The reflect2 trap. Vendored github.com/modern-go/reflect2 v1.0.1 links against Go runtime
#    internals that changed in Go 1.18, so binaries built with Go >= 1.18 segfault as soon as
#    json-iterator touches a map (i.e. at the first API request). Debian's
#    golang-github-modern-go-reflect2-dev is 1.0.2, which has the go1.18 fix: swap it in and bump
#    the version in go.mod / vendor/modules.txt so module-aware tooling stays consistent
#    (the 1.20 build itself runs in GOPATH mode and only reads the vendor tree).
[[ -f $REFLECT2_DEBIAN/go_above_118.go ]] || die "$REFLECT2_DEBIAN lacks go_above_118.go; need golang-github-modern-go-reflect2-dev >= 1.0.2"
log "replacing vendored reflect2 v1.0.1 with Debian's 1.0.2"
rsync -a --delete --exclude LICENSE --exclude BUILD "$REFLECT2_DEBIAN/" vendor/github.com/modern-go/reflect2/
sed -i 's#github.com/modern-go/reflect2 v1\.0\.1#github.com/modern-go/reflect2 v1.0.2#g' go.mod vendor/modules.txt
grep -q 'modern-go/reflect2 v1.0.2' vendor/modules.txt || die "reflect2 version bump in vendor/modules.txt did not apply"

# ---------------------------------------------------------------------------------------------
# 4b. The oom_score_adj trap. dockershim starts every pod sandbox with oom_score_adj -998 and
#     Guaranteed/critical containers with negative values; lowering oom_score_adj needs
#     CAP_SYS_RESOURCE, which these machines' bounding set lacks, so runc fails with "can't get
#     final child's PID from pipe" and no pod ever starts. Clamp both to 0 (the kernel default):
#     the only effect is that the OOM killer does not spare the sandbox over other processes.
log "patching dockershim: oom_score_adj never below 0"
sed -i 's/defaultSandboxOOMAdj int = -998/defaultSandboxOOMAdj int = 0/' pkg/kubelet/dockershim/docker_sandbox.go
sed -i 's/createConfig.HostConfig.OomScoreAdj = int(rOpts.OomScoreAdj)/if adj := int(rOpts.OomScoreAdj); adj > 0 { createConfig.HostConfig.OomScoreAdj = adj }/' \
  pkg/kubelet/dockershim/helpers_linux.go
grep -q 'defaultSandboxOOMAdj int = 0' pkg/kubelet/dockershim/docker_sandbox.go || die "dockershim sandbox oom patch did not apply"
grep -q 'if adj := int(rOpts.OomScoreAdj); adj > 0' pkg/kubelet/dockershim/helpers_linux.go || die "dockershim container oom patch did not apply"

# ---------------------------------------------------------------------------------------------
# 4c. fsGroup on the hostpath provisioner's volumes (see the patch's header): what a CSI driver's
#     volumes get from kubelet, so non-root pods can write to their PVCs as on a real cluster.
log "patching kubelet: fsGroup on hostpath-provisioner volumes"
grep -q manageOwnership pkg/volume/hostpath/host_path.go \
  || patch -p1 --forward --quiet <"$PATCH_DIR/kubelet-hostpath-fsgroup.patch" >>"$BUILD_LOG" 2>&1 \
  || die "kubelet-hostpath-fsgroup.patch did not apply (see $BUILD_LOG)"

# The pause source goes into the cache now: the tree is deleted after the build.
mkdir -p "$PAUSE_DIR"
cp build/pause/linux/pause.c "$PAUSE_DIR/pause.c"

# ---------------------------------------------------------------------------------------------
# 5. Build. Kubernetes 1.20's make runs in GOPATH mode (hack/lib/init.sh sets GO111MODULE=off)
#    against the vendor dir, so no -mod=vendor is needed (and a user GOFLAGS could only hurt).
#    The version (v1.20.2) comes from the git-archive stamp in hack/lib/version.sh, so no
#    KUBE_GIT_VERSION is needed either. CGO off as in debian/rules: static binaries, no gcc.
#    It takes ~5+ minutes on 2 cores; progress goes to $BUILD_LOG.
WHAT=""
for t in "${TARGETS[@]}"; do WHAT+="cmd/$t "; done
log "make WHAT=\"${WHAT% }\" (this takes several minutes)"
start=$SECONDS
(
  unset GOFLAGS GO111MODULE GOPATH GOROOT
  export CGO_ENABLED=0
  export GOCACHE="$CACHE_ROOT/go-build-cache"
  export PATH="/usr/lib/go/bin:$PATH"
  make WHAT="${WHAT% }" >>"$BUILD_LOG" 2>&1
) || { tail -n 30 "$BUILD_LOG" >&2; die "make WHAT=\"${WHAT% }\" failed after $((SECONDS - start))s (see $BUILD_LOG)"; }
log "make finished in $((SECONDS - start))s"

# ---------------------------------------------------------------------------------------------
# 6. Install into the cache atomically (copy then rename) and prove each binary runs.
mkdir -p "$BIN_DIR"
for t in "${TARGETS[@]}"; do
  built="_output/bin/$t"
  [[ -x $built ]] || built="_output/local/bin/linux/$(go env GOARCH)/$t"
  [[ -x $built ]] || die "make succeeded but $t was not produced"
  cp "$built" "$BIN_DIR/.$t.tmp"
  mv -f "$BIN_DIR/.$t.tmp" "$BIN_DIR/$t"
  if [[ $t == kubectl ]]; then
    "$BIN_DIR/$t" version --client >/dev/null 2>&1 || die "built $t does not run"
  else
    [[ $t != kubelet ]] || echo "$KUBELET_PATCHES" >"$BIN_DIR/kubelet.patches"
    binary_ok "$t" || die "built $t does not report v$KUBE_VERSION"
  fi
  log "installed $BIN_DIR/$t"
done

ensure_etcd
pause_ok || compile_pause

# The source tree (~GBs with _output) is only needed to rebuild; the Go build cache stays, so a
# rebuild (a new target, a lost binary) compiles only what changed.
if [[ ${PIRATE_KEEP_BUILD:-0} != 1 ]]; then
  log "removing build tree (PIRATE_KEEP_BUILD=1 keeps it; the Go build cache stays)"
  cd /
  rm -rf "$SRC_DIR"
fi
log "done: $(printf '%s ' "$BIN_DIR"/*)"
