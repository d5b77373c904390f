#!/usr/bin/env bash
# Build the project's images offline on the project's dockerd (hack/cluster/docker.sh): no image
# registry is reachable here, so everything starts from a Debian base made with debootstrap.
#
#   pirate-python-base:bookworm   debootstrap minbase + Debian's Python 3.11, standing in for
#                                 python:3.11-slim-bookworm (cached as a tarball, imported once)
#   pirate-worker:dev             Dockerfile.worker   (--build-arg PYTHON_IMAGE=<base>)
#   pirate-operator:dev           Dockerfile.operator (same base, same uv download cache)
#   pirate-redis:dev              hack/images/redis: Debian's redis-server, official image's interface
#   pirate-postgres:dev           hack/images/postgres: Debian's postgresql-15, same
#
# Usage: hack/images/build.sh [base|worker|operator|redis|postgres]...   (default: all of them)
# Every step is cached (base tarball, image tag, BuildKit layers), so a second run takes seconds.
#
# Environment: PIRATE_CACHE_DIR (default ~/.cache/pirate-workers), DOCKER_HOST (default: the
# project's dockerd), IMAGE_TAG (default dev), BASE_IMAGE (default pirate-python-base:bookworm),
# REBUILD_BASE=1 (debootstrap again even when the tarball exists).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHE_ROOT="${PIRATE_CACHE_DIR:-$HOME/.cache/pirate-workers}"
IMAGES_DIR="$CACHE_ROOT/images"
SUITE=bookworm
BASE_IMAGE="${BASE_IMAGE:-pirate-python-base:$SUITE}"
# Bump when make_base_tarball changes: a tarball or image of another recipe is rebuilt.
BASE_RECIPE=2
BASE_TARBALL="$IMAGES_DIR/python-base-$SUITE-r$BASE_RECIPE.tar"
BASE_LABEL=dev.pirateradio.base-recipe
BASE_PACKAGES=python3,python3-venv,python3-pip,ca-certificates
TAG="${IMAGE_TAG:-dev}"
HOST_SOURCES=/etc/apt/sources.list.d/debian.sources
LOCAL_CA_DIR=/usr/local/share/ca-certificates
export DOCKER_HOST="${DOCKER_HOST:-unix:///run/pirate-workers/docker.sock}"
# BuildKit is built into this dockerd (20.10) and its client: no buildx, and no frontend image
# to pull as long as the Dockerfiles carry no `# syntax=` line (see hack/images/README.md).
export DOCKER_BUILDKIT=1
# Debian's client matches the daemon; a newer one earlier on PATH may not.
DOCKER=/usr/bin/docker

log() { printf '[images %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf '[images] ERROR: %s\n' "$*" >&2; exit 1; }
image_id() { "$DOCKER" image inspect --format '{{.Id}}' "$1" 2>/dev/null || true; }

# The mirror the host's apt uses (the first URI of the deb822 stanza with Types deb and Suites
# $SUITE), so debootstrap goes the same way as every other package install on this machine.
host_mirror() {
  awk -v suite="$SUITE" '
    BEGIN { RS = "" }
    {
      uri = ""; deb = 0; ours = 0
      n = split($0, lines, "\n")
      for (i = 1; i <= n; i++) {
        m = split(lines[i], field, /[ \t]+/)
        for (j = 2; j <= m; j++) {
          if (field[1] == "URIs:" && uri == "") uri = field[j]
          if (field[1] == "Types:" && field[j] == "deb") deb = 1
          if (field[1] == "Suites:" && field[j] == suite) ours = 1
        }
      }
      if (deb && ours && uri != "") { print uri; exit }
    }
  ' "$HOST_SOURCES"
}

# debootstrap a minimal bookworm with Debian's Python into a tarball (50-80 s, once).
make_base_tarball() {
  [[ $(id -u) == 0 ]] || die "debootstrap needs root"
  command -v debootstrap >/dev/null 2>&1 || {
    log "installing debootstrap (Debian)"
    apt-get -o DPkg::Lock::Timeout=900 update -qq >/dev/null
    apt-get -o DPkg::Lock::Timeout=900 install -y -qq --no-install-recommends debootstrap >/dev/null
  }
  local mirror rootfs
  mirror=$(host_mirror)
  [[ -n $mirror ]] || die "no $SUITE entry in $HOST_SOURCES"
  mkdir -p "$IMAGES_DIR"
  rootfs=$(mktemp -d "$IMAGES_DIR/rootfs.XXXXXX")
  # shellcheck disable=SC2064 # expand now: the path is fixed
  trap "rm -rf '$rootfs'" EXIT
  log "debootstrap $SUITE (minbase + $BASE_PACKAGES) from the host's mirror"
  debootstrap --variant=minbase --include="$BASE_PACKAGES" "$SUITE" "$rootfs" "$mirror" \
    >"$IMAGES_DIR/debootstrap.log" 2>&1 || { tail -n 20 "$IMAGES_DIR/debootstrap.log" >&2; die "debootstrap failed"; }
  # The host's apt sources (with the updates and security suites), instead of debootstrap's
  # one-line sources.list, so images built on this base install the same package versions.
  cp "$HOST_SOURCES" "$rootfs/etc/apt/sources.list.d/debian.sources"
  rm -f "$rootfs/etc/apt/sources.list"
  # Local CAs (e.g. an intercepting egress proxy's) so pip and uv in the builds trust the network.
  if compgen -G "$LOCAL_CA_DIR/*.crt" >/dev/null; then
    cp "$LOCAL_CA_DIR"/*.crt "$rootfs/usr/local/share/ca-certificates/"
  fi
  chroot "$rootfs" update-ca-certificates >/dev/null 2>&1 || die "update-ca-certificates failed in the base root"
  # `python` as in the official images.
  ln -sf python3 "$rootfs/usr/bin/python"
  slim "$rootfs"
  tar --numeric-owner --xattrs -C "$rootfs" -cf "$BASE_TARBALL.tmp" .
  mv "$BASE_TARBALL.tmp" "$BASE_TARBALL"
  rm -rf "$rootfs"
  trap - EXIT
}

# What debian:bookworm-slim (under python:3.11-slim) does to stay small, for this root and for
# every package the images install on it: no apt caches or downloaded .debs left in a layer, no
# docs (but the copyright files), man pages or translations.
slim() {
  local rootfs=$1
  cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'APT'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
Acquire::Languages "none";
APT
  cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker-slim" <<'DPKG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/locale/*
DPKG
  find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  rm -rf "$rootfs"/usr/share/{man,groff,info,lintian,locale}/* "$rootfs"/var/lib/apt/lists/* \
    "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/log/*
}

base_current() {
  [[ $("$DOCKER" image inspect --format "{{index .Config.Labels \"$BASE_LABEL\"}}" "$BASE_IMAGE" 2>/dev/null) == "$BASE_RECIPE" ]]
}

build_base() {
  if [[ ${REBUILD_BASE:-0} == 1 || ! -s $BASE_TARBALL ]]; then
    make_base_tarball
  elif base_current; then
    log "$BASE_IMAGE: present"
    return 0
  fi
  local previous
  previous=$(image_id "$BASE_IMAGE")
  log "importing $BASE_TARBALL as $BASE_IMAGE"
  # What python:3.11-slim gives the Dockerfiles: PATH set (they append to it), `pip install`
  # allowed (Debian's Python is "externally managed", PEP 668), and a CA bundle that uv reads
  # (it ignores the system store unless SSL_CERT_FILE points at it).
  "$DOCKER" import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
    --change 'ENV PIP_BREAK_SYSTEM_PACKAGES=1' \
    --change "LABEL $BASE_LABEL=$BASE_RECIPE" \
    --change 'CMD ["python3"]' \
    "$BASE_TARBALL" "$BASE_IMAGE" >/dev/null
  [[ -z $previous ]] || "$DOCKER" rmi "$previous" >/dev/null 2>&1 || true
}

# docker build with timing; $1 = image name, rest = build arguments. The image the tag pointed
# at before is removed when nothing else uses it: the daemon is shared, and every rebuild would
# otherwise leave one more dangling image behind.
build() {
  local image=$1 started=$SECONDS previous build_log
  shift
  build_log="$IMAGES_DIR/build-${image%%:*}.log"
  previous=$(image_id "$image")
  log "building $image"
  "$DOCKER" build --progress=plain -t "$image" "$@" >"$build_log" 2>&1 \
    || { tail -n 30 "$build_log" >&2; die "building $image failed (log: $build_log)"; }
  if [[ -n $previous && $previous != "$(image_id "$image")" ]]; then
    "$DOCKER" rmi "$previous" >/dev/null 2>&1 || true
  fi
  log "$image built in $((SECONDS - started)) s"
}

revision() { git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown; }

main() {
  "$DOCKER" version >/dev/null 2>&1 || die "dockerd does not answer on $DOCKER_HOST (hack/cluster/docker.sh start)"
  mkdir -p "$IMAGES_DIR"
  # One builder at a time (make images, the test fixtures): the CPU is shared and two debootstraps
  # into one tarball would clash. The second waits, then finds everything cached.
  exec 9>"$IMAGES_DIR/.build.lock"
  flock 9
  local targets=("$@")
  ((${#targets[@]})) || targets=(base worker operator redis postgres)
  local target
  for target in "${targets[@]}"; do
    case $target in
      base) build_base ;;
      worker | operator)
        base_current || build_base
        build "pirate-$target:$TAG" --build-arg "PYTHON_IMAGE=$BASE_IMAGE" --build-arg "REVISION=$(revision)" \
          -f "$ROOT/Dockerfile.$target" "$ROOT"
        ;;
      redis | postgres)
        base_current || build_base
        build "pirate-$target:$TAG" --build-arg "BASE_IMAGE=$BASE_IMAGE" "$ROOT/hack/images/$target"
        ;;
      *) die "unknown image $target (base, worker, operator, redis, postgres)" ;;
    esac
  done
}

main "$@"
