#!/usr/bin/env bash
# The project's own dockerd: the container runtime of the real node (hack/cluster/) and the
# builder of its images (`make images`). Debian's docker.io, started by hand with its own data
# root, exec root, socket and pidfile, so it never touches a system Docker, and with its data root
# in the cache: images built once stay there for the next run.
#
# Usage: hack/cluster/docker.sh start|stop|env
#   start  installs docker.io if missing, starts dockerd unless it already answers, prints the
#          DOCKER_HOST line (also written to $RUN_DIR/docker.env)
#   stop   stops dockerd (SIGTERM, SIGKILL after 30 s); images stay in the cache
#   env    prints DOCKER_HOST=... (exit 1 when dockerd does not answer)
#
# Environment: PIRATE_CACHE_DIR (default ~/.cache/pirate-workers), PIRATE_RUN_DIR (default
# /run/pirate-workers).
set -euo pipefail

CACHE_ROOT="${PIRATE_CACHE_DIR:-$HOME/.cache/pirate-workers}"
RUN_DIR="${PIRATE_RUN_DIR:-/run/pirate-workers}"
DATA_ROOT="$CACHE_ROOT/docker"
EXEC_ROOT="$RUN_DIR/docker-exec"
SOCKET="$RUN_DIR/docker.sock"
PIDFILE="$RUN_DIR/dockerd.pid"
LOG="$RUN_DIR/dockerd.log"
DOCKER_HOST_VALUE="unix://$SOCKET"
# Debian's client: it matches the daemon (a newer client elsewhere on PATH may be first).
DOCKER=/usr/bin/docker

log() { printf '[docker %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf '[docker] ERROR: %s\n' "$*" >&2; exit 1; }

answers() { DOCKER_HOST=$DOCKER_HOST_VALUE "$DOCKER" version --format '{{.Server.Version}}' >/dev/null 2>&1; }

install_docker() {
  command -v dockerd >/dev/null 2>&1 && [[ -x $DOCKER ]] && return 0
  [[ $(id -u) == 0 ]] || die "dockerd is not installed and installing it needs root (apt-get install docker.io)"
  log "installing docker.io (Debian)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=900 update -qq >/dev/null
  # policy-rc.d: the package must not start a system dockerd of its own.
  local policy=/usr/sbin/policy-rc.d created=0
  if [[ ! -e $policy ]]; then printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod 755 "$policy"; created=1; fi
  apt-get -o DPkg::Lock::Timeout=900 install -y -qq --no-install-recommends docker.io iptables >/dev/null \
    || { [[ $created == 1 ]] && rm -f "$policy"; die "apt-get install docker.io failed"; }
  [[ $created == 1 ]] && rm -f "$policy"
  return 0
}

start() {
  mkdir -p "$RUN_DIR" "$DATA_ROOT"
  if answers; then
    echo "DOCKER_HOST=$DOCKER_HOST_VALUE" | tee "$RUN_DIR/docker.env"
    return 0
  fi
  [[ $(id -u) == 0 ]] || die "starting dockerd needs root"
  install_docker
  # A dockerd that died uncleanly leaves its pidfile and socket; both would stop a new one.
  if [[ -s $PIDFILE ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
    die "dockerd (pid $(cat "$PIDFILE")) runs but does not answer on $SOCKET; see $LOG"
  fi
  rm -f "$PIDFILE" "$SOCKET"
  log "starting dockerd (data root $DATA_ROOT, socket $SOCKET)"
  # setsid + stdio on a file: the daemon outlives the calling shell and never holds its pipes.
  setsid dockerd \
    --data-root "$DATA_ROOT" --exec-root "$EXEC_ROOT" --pidfile "$PIDFILE" \
    --host "$DOCKER_HOST_VALUE" --group root \
    --storage-driver overlay2 --log-driver json-file --log-opt max-size=10m \
    </dev/null >"$LOG" 2>&1 &
  local deadline=$((SECONDS + 60))
  until answers; do
    ((SECONDS < deadline)) || { tail -n 20 "$LOG" >&2; die "dockerd did not answer within 60 s (see $LOG)"; }
    sleep 0.5
  done
  echo "DOCKER_HOST=$DOCKER_HOST_VALUE" | tee "$RUN_DIR/docker.env"
}

stop() {
  [[ -s $PIDFILE ]] || { log "dockerd is not running"; return 0; }
  local pid
  pid=$(cat "$PIDFILE")
  if kill -0 "$pid" 2>/dev/null; then
    log "stopping dockerd (pid $pid)"
    kill -TERM "$pid"
    local deadline=$((SECONDS + 30))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.3; done
    kill -0 "$pid" 2>/dev/null && { log "dockerd ignored SIGTERM for 30 s; SIGKILL"; kill -KILL "$pid"; }
  fi
  rm -f "$PIDFILE" "$SOCKET" "$RUN_DIR/docker.env"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  env) answers || die "dockerd does not answer on $SOCKET (hack/cluster/docker.sh start)"; echo "DOCKER_HOST=$DOCKER_HOST_VALUE" ;;
  *) die "usage: $0 start|stop|env" ;;
esac
