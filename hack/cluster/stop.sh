#!/usr/bin/env bash
# Stop the node started by hack/cluster/start.sh DIR and remove everything it left on the machine
# but the cache (binaries, images) and DIR's logs: the processes (hack/kube/stop.sh, reverse
# start order), the pod containers, kubelet's mounts and fixed directories, the CNI bridge, the
# iptables chains of kubelet, kube-proxy and the CNI plugins, the hostpath provisioner's volumes,
# the sysctls kubelet and kube-proxy changed, and dockerd if start.sh had to start it.
#
# Usage: hack/cluster/stop.sh DIR      Idempotent; also cleans up after a node that crashed.
set -euo pipefail

RUN_DIR="${PIRATE_RUN_DIR:-/run/pirate-workers}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
NODE_MARKER="$RUN_DIR/node-dir"
BRIDGE=pirate0
DOCKER=/usr/bin/docker
# kubelet 1.20's fixed paths, the hostpath provisioner's directory (hard-coded in 1.20) and the
# CNI plugins' default state directory.
FIXED_DIRS=(/var/lib/kubelet /var/lib/dockershim /var/log/pods /var/log/containers /var/lib/cni /tmp/hostpath_pv)

log() { printf '[cluster-stop %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf '[cluster-stop] ERROR: %s\n' "$*" >&2; exit 1; }

[[ $# == 1 ]] || die "usage: $0 DIR"
[[ $(id -u) == 0 ]] || die "must run as root"
DIR=$1

# The machine-wide cleanup is for the node this DIR ran: the marker names it, or (a second stop)
# the marker is gone and DIR holds a node's configuration. Another DIR's node is left alone.
ABS_DIR=$(cd "$DIR" 2>/dev/null && pwd || echo "$DIR")
if [[ -s $NODE_MARKER ]]; then
  [[ "$(cat "$NODE_MARKER")" == "$ABS_DIR" ]] && node=1 || node=0
else
  [[ -f $DIR/config/kubelet.yaml ]] && node=1 || node=0
fi
if [[ $node == 0 ]]; then
  log "no node of $DIR on this machine; stopping only DIR's processes"
  [[ ! -d $DIR ]] || "$HERE/../kube/stop.sh" "$DIR"
  exit 0
fi

# 1. Processes: kube-proxy, kubelet and the DNS pieces first (they were started last), then the
#    control plane. kubelet no longer restarts anything after this.
if [[ -d $DIR ]]; then
  "$HERE/../kube/stop.sh" "$DIR"
fi

# 2. The pod containers (dockershim labels every container and sandbox it creates). Sandboxes
#    die with their network namespace, so CNI DEL never runs: the bridge, addresses and chains go
#    in the steps below.
if DOCKER_ENV=$("$HERE/docker.sh" env 2>/dev/null); then
  export DOCKER_HOST=${DOCKER_ENV#DOCKER_HOST=}
  mapfile -t containers < <("$DOCKER" ps -aq --filter label=io.kubernetes.docker.type)
  if ((${#containers[@]})); then
    log "removing ${#containers[@]} pod containers"
    "$DOCKER" rm -f "${containers[@]}" >/dev/null || log "some containers could not be removed"
  fi
fi

# 3. kubelet's mounts (secrets, projected tokens: tmpfs under /var/lib/kubelet/pods), deepest
#    first, then its directories and the provisioner's volumes.
mapfile -t mounts < <(awk '$2 ~ "^/var/lib/kubelet(/|$)" {print $2}' /proc/self/mounts | sort -r)
for target in "${mounts[@]}"; do
  umount "$target" 2>/dev/null || umount -l "$target" 2>/dev/null || log "could not unmount $target"
done
rm -rf "${FIXED_DIRS[@]}"
rm -f "$RUN_DIR/dockershim.sock"
[[ ! -d $DIR ]] || rm -rf "$DIR/cni" "$DIR/run"

# 4. Network: the bridge (the veths went with their namespaces) and every KUBE-* / CNI-* /
#    PIRATE-* chain with the rules jumping to them, in one iptables-restore per table (it keeps the quoting of
#    rules such as `-m comment --comment "kubernetes forwarding rules"` intact).
ip link delete "$BRIDGE" 2>/dev/null || true
for tool in iptables ip6tables; do
  command -v "$tool-save" >/dev/null || continue
  for table in filter nat mangle raw; do
    rules=$("$tool-save" -t "$table" 2>/dev/null) || continue
    mapfile -t chains < <(grep -E '^:(KUBE|CNI|PIRATE)-' <<<"$rules" | cut -d' ' -f1 | cut -c2-)
    ((${#chains[@]})) || continue
    {
      echo "*$table"
      grep -E '^-A .* -j (KUBE|CNI|PIRATE)-' <<<"$rules" | grep -Ev '^-A (KUBE|CNI|PIRATE)-' | sed 's/^-A /-D /' || true
      printf -- '-F %s\n' "${chains[@]}"
      printf -- '-X %s\n' "${chains[@]}"
      echo COMMIT
    } | "$tool-restore" --noflush || log "could not remove the $tool $table chains"
  done
done

# 5. Sysctls back to the host's values (saved by the first start).
if [[ -s $RUN_DIR/sysctl.saved ]]; then
  while read -r key _ value; do
    sysctl -qw "$key=$value" >/dev/null 2>&1 || log "could not restore $key"
  done <"$RUN_DIR/sysctl.saved"
  rm -f "$RUN_DIR/sysctl.saved"
fi

# 6. dockerd, only if start.sh started it; the images stay in its data root (the cache).
if [[ -f $DIR/dockerd.started ]]; then
  "$HERE/docker.sh" stop
  rm -f "$DIR/dockerd.started"
fi
rm -f "$NODE_MARKER"
log "node stopped and cleaned up (logs stay in $DIR)"
