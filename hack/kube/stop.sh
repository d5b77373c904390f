#!/usr/bin/env bash
# Stop the control plane started by hack/kube/start.sh DIR.
# Stops in reverse start order (controller-manager, apiserver, etcd) so nothing logs storms of
# connection errors against an already-dead backend. SIGTERM first, SIGKILL after a grace period.
# Logs, certificates and etcd data stay in DIR for post-mortems; start.sh wipes them.
# Idempotent: stopping an already-stopped DIR is fine.
set -euo pipefail

GRACE_SECONDS=${PIRATE_KUBE_STOP_GRACE:-10}

log() { printf '[kube-stop %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf '[kube-stop] ERROR: %s\n' "$*" >&2; exit 1; }

[[ $# == 1 ]] || die "usage: $0 DIR"
DIR=$1
if [[ ! -f $DIR/pids ]]; then
  log "nothing to stop in $DIR (no pids file)"
  exit 0
fi

# Only signal a pid that still runs the binary we started there: after a reboot or a long time
# the number may belong to an unrelated process.
is_ours() {
  local name=$1 pid=$2
  [[ -r /proc/$pid/cmdline ]] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$name"
}

# A process that exited is a zombie until init reaps it (here that can take seconds): dead too.
alive() { kill -0 "$1" 2>/dev/null && [[ $(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) != Z ]]; }

mapfile -t entries < <(tac "$DIR/pids")
for entry in "${entries[@]}"; do
  read -r name pid <<<"$entry"
  [[ -n ${pid:-} ]] || continue
  if ! is_ours "$name" "$pid"; then
    continue
  fi
  log "stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  deadline=$((SECONDS + GRACE_SECONDS))
  while alive "$pid" && ((SECONDS < deadline)); do sleep 0.1; done
  if alive "$pid"; then
    log "$name (pid $pid) ignored SIGTERM for ${GRACE_SECONDS}s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
done
rm -f "$DIR/pids"
log "stopped ($DIR)"
