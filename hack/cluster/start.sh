#!/usr/bin/env bash
# Start a real single-node Kubernetes 1.20.2 cluster for the cluster test tier:
#   hack/kube/start.sh in node mode (etcd, kube-apiserver on all addresses, kube-controller-manager
#   with nodelifecycle and the hostpath provisioner)  +  kube-scheduler  +  kubelet (dockershim on
#   the project's dockerd, hack/cluster/docker.sh)  +  kube-proxy (iptables)  +  the pod network
#   (Debian's CNI plugins)  +  cluster DNS (Debian's dnsmasq fed by cluster-dns.py).
#
# Usage: hack/cluster/start.sh DIR
#   DIR gets kubeconfig, env (sourceable: KUBECONFIG, DOCKER_HOST, PIRATE_NODE_NAME,
#   PIRATE_CLUSTER_DIR, ...), pids, one <component>.log per process, pki/, etcd/ and the
#   components' configuration. Exits 0 once the Node is Ready, cluster DNS answers through its
#   Service and the default ServiceAccount has its token; the processes keep running until
#   hack/cluster/stop.sh DIR, which also removes everything the node left on the machine.
#
# One node per machine: kubelet 1.20 has fixed paths (/var/lib/kubelet, /var/lib/dockershim,
# /var/log/pods) and the pod network its bridge, so a second start is refused while one runs.
#
# Environment: PIRATE_NODE_NAME (default pirate-node), PIRATE_NODE_IP (default: the address of the
# interface of the default route), PIRATE_POD_CIDR (default 10.244.0.0/24), PIRATE_CACHE_DIR,
# PIRATE_RUN_DIR (as hack/cluster/docker.sh).
# Prerequisite: hack/kube/build.sh (binaries and pause, cached).
set -euo pipefail

KUBE_VERSION=1.20.2
CACHE_ROOT="${PIRATE_CACHE_DIR:-$HOME/.cache/pirate-workers}"
KUBE_DIR="$CACHE_ROOT/kube-$KUBE_VERSION"
BIN_DIR="$KUBE_DIR/bin"
RUN_DIR="${PIRATE_RUN_DIR:-/run/pirate-workers}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
KUBE_HACK="$HERE/../kube"
NODE_NAME=${PIRATE_NODE_NAME:-pirate-node}
POD_CIDR=${PIRATE_POD_CIDR:-10.244.0.0/24}
CLUSTER_DNS_IP=10.96.0.10
SERVICE_CIDR=10.96.0.0/12 # as hack/kube/start.sh
CLUSTER_DOMAIN=cluster.local
BRIDGE=pirate0
PAUSE_IMAGE=pirate-workers/pause:3.4
CNI_BIN_DIR=/usr/lib/cni
# The marker of the one node this machine runs: the DIR it runs from.
NODE_MARKER="$RUN_DIR/node-dir"
READY_TIMEOUT=${PIRATE_CLUSTER_READY_TIMEOUT:-120}
# What kubelet and kube-proxy write to the host's sysctls; stop.sh puts the saved values back.
SYSCTLS=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys
  kernel.keys.root_maxbytes net.ipv4.conf.all.route_localnet net.bridge.bridge-nf-call-iptables)

log() { printf '[cluster-start %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf '[cluster-start] ERROR: %s\n' "$*" >&2; exit 1; }

[[ $# == 1 ]] || die "usage: $0 DIR"
[[ $(id -u) == 0 ]] || die "must run as root (kubelet, iptables, the pod network)"
mkdir -p "$1"
DIR="$(cd "$1" && pwd)"
[[ $DIR != *[[:space:]]* ]] || die "DIR must not contain whitespace: $DIR"
T0=$SECONDS

for b in kubelet kube-scheduler kube-proxy; do
  [[ -x $BIN_DIR/$b ]] || die "$BIN_DIR/$b missing: run hack/kube/build.sh first"
done
[[ -x $KUBE_DIR/pause/pause ]] || die "$KUBE_DIR/pause/pause missing: run hack/kube/build.sh first"

# ---------------------------------------------------------------------------------------------
# Debian packages of the node: the CNI plugins, conntrack (kube-proxy), socat + nsenter
# (port-forward), dnsmasq (cluster DNS), iptables.
need=()
[[ -x $CNI_BIN_DIR/bridge ]] || need+=(containernetworking-plugins)
command -v conntrack >/dev/null || need+=(conntrack)
command -v socat >/dev/null || need+=(socat)
command -v nsenter >/dev/null || need+=(util-linux)
command -v dnsmasq >/dev/null || need+=(dnsmasq-base)
command -v iptables-save >/dev/null || need+=(iptables)
if ((${#need[@]})); then
  log "installing ${need[*]} (Debian)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=900 update -qq >/dev/null
  apt-get -o DPkg::Lock::Timeout=900 install -y -qq --no-install-recommends "${need[@]}" >/dev/null \
    || die "apt-get install ${need[*]} failed"
fi

# ---------------------------------------------------------------------------------------------
# One node per machine. A marker left by a node that is gone (a crash, a reboot) is cleaned up
# with that node's leftovers.
# Starts are serialised: a second one waits for the first and then finds its node. Nothing started
# from here may inherit the lock's descriptor (8>&-), or the lock would live as long as the node.
mkdir -p "$RUN_DIR"
exec 8>"$RUN_DIR/node.lock"
flock -w 600 8 || die "another hack/cluster/start.sh has held $RUN_DIR/node.lock for 10 minutes"
node_runs() { # DIR: any of its processes alive
  [[ -f $1/pids ]] || return 1
  local name pid
  while read -r name pid; do kill -0 "$pid" 2>/dev/null && return 0; done <"$1/pids"
  return 1
}
if [[ -s $NODE_MARKER ]]; then
  other=$(cat "$NODE_MARKER")
  if node_runs "$other"; then
    if [[ $other == "$DIR" && -f $DIR/env ]] && grep -q '^PIRATE_CLUSTER_DIR=' "$DIR/env"; then
      log "the node already runs from $DIR: export KUBECONFIG=$DIR/kubeconfig"
      exit 0
    fi
    die "a node already runs from $other (hack/cluster/stop.sh $other)"
  fi
  log "cleaning up after a node that did not stop cleanly ($other)"
  "$HERE/stop.sh" "$other" >/dev/null 2>&1 || true
fi

# ---------------------------------------------------------------------------------------------
# The node's address: the interface of the default route (what other machines would use), else
# the first global IPv4 address that is not a container bridge.
NODE_IP=${PIRATE_NODE_IP:-}
if [[ -z $NODE_IP ]]; then
  dev=$(ip -4 -o route show default | awk '{for (i = 1; i < NF; i++) if ($i == "dev") {print $(i + 1); exit}}')
  if [[ -n $dev ]]; then
    NODE_IP=$(ip -4 -o addr show dev "$dev" scope global | awk '{split($4, a, "/"); print a[1]; exit}')
  fi
  if [[ -z $NODE_IP ]]; then
    NODE_IP=$(ip -4 -o addr show scope global | awk '$2 !~ /^(docker|br-|veth|'"$BRIDGE"')/ {split($4, a, "/"); print a[1]; exit}')
  fi
fi
[[ -n $NODE_IP ]] || die "no non-loopback IPv4 address found; set PIRATE_NODE_IP"
ip -4 -o addr show | grep -q " inet $NODE_IP/" || die "$NODE_IP is not an address of this machine (PIRATE_NODE_IP)"

# ---------------------------------------------------------------------------------------------
# dockerd: reuse the project's one when it answers (images built by `make images` are then on the
# node), else start it and remember that stop.sh should stop it again.
rm -f "$DIR/dockerd.started"
if DOCKER_ENV=$("$HERE/docker.sh" env 2>/dev/null); then
  log "using the running dockerd"
else
  DOCKER_ENV=$("$HERE/docker.sh" start 8>&- | tail -n 1)
  touch "$DIR/dockerd.started"
fi
DOCKER_HOST_VALUE=${DOCKER_ENV#DOCKER_HOST=}
export DOCKER_HOST=$DOCKER_HOST_VALUE
DOCKER=/usr/bin/docker

# From here on a failure stops what was started. The marker goes first so that stop.sh (or a
# later start) finds this DIR whatever happens next.
echo "$DIR" >"$NODE_MARKER"
cleanup_on_failure() {
  local rc=$?
  if [[ $rc != 0 ]]; then
    log "start failed; stopping what was started (logs stay in $DIR)"
    "$HERE/stop.sh" "$DIR" >/dev/null 2>&1 || true
  fi
}
trap cleanup_on_failure EXIT

# The pause image: upstream's pause.c, compiled by build.sh, imported once into the daemon.
if ! "$DOCKER" image inspect "$PAUSE_IMAGE" >/dev/null 2>&1; then
  log "importing $PAUSE_IMAGE"
  tar -C "$KUBE_DIR/pause" -c pause | "$DOCKER" import --change 'ENTRYPOINT ["/pause"]' - "$PAUSE_IMAGE" >/dev/null \
    || die "docker import of $PAUSE_IMAGE failed"
fi

# Save the sysctls kubelet and kube-proxy set (kubelet: vm.*, kernel.*; kube-proxy:
# route_localnet); stop.sh writes them back. Only the first save counts: a restart after a
# failed stop must not record the node's own values as the host's.
if [[ ! -s $RUN_DIR/sysctl.saved ]]; then
  for key in "${SYSCTLS[@]}"; do
    value=$(sysctl -n "$key" 2>/dev/null) && echo "$key = $value"
  done >"$RUN_DIR/sysctl.saved.tmp"
  mv "$RUN_DIR/sysctl.saved.tmp" "$RUN_DIR/sysctl.saved"
fi

# Service IPs never leave the machine. A ClusterIP kube-proxy has not programmed yet (a Service a
# second old) is not translated, and the default route would carry it off the machine, where
# whatever answers for that address answers. Refuse such packets instead: from the host (OUTPUT,
# after kube-proxy's DNAT) and from pods (CNI-ADMIN, the firewall plugin's chain for
# administrators, evaluated before its accept rules). stop.sh removes the chains.
iptables -N PIRATE-SERVICES 2>/dev/null || iptables -F PIRATE-SERVICES
iptables -A PIRATE-SERVICES -d "$SERVICE_CIDR" -j REJECT
iptables -C OUTPUT -j PIRATE-SERVICES 2>/dev/null || iptables -I OUTPUT 1 -j PIRATE-SERVICES
iptables -N CNI-ADMIN 2>/dev/null || true
iptables -C CNI-ADMIN -j PIRATE-SERVICES 2>/dev/null || iptables -I CNI-ADMIN 1 -j PIRATE-SERVICES

# ---------------------------------------------------------------------------------------------
# Control plane (node mode): certificates for the node's components, apiserver on NODE_IP too.
rm -rf "$DIR/cni" "$DIR/dns" "$DIR/config"
mkdir -p "$DIR/cni/net.d" "$DIR/cni/cache" "$DIR/cni/networks" "$DIR/dns" "$DIR/config"
# The ServiceAccount token is waited for at the end: the node starts while the controller-manager
# makes it.
PIRATE_KUBE_NODE_NAME=$NODE_NAME PIRATE_KUBE_NODE_IP=$NODE_IP PIRATE_KUBE_WAIT_FOR_SA=0 "$KUBE_HACK/start.sh" "$DIR" 8>&-
# shellcheck disable=SC1091 # written just now by hack/kube/start.sh
APISERVER_URL=$(. "$DIR/env" && echo "$PIRATE_KUBE_APISERVER")
PKI="$DIR/pki"
KUBECTL="$(command -v kubectl || echo "$BIN_DIR/kubectl")"
kubectl_() { "$KUBECTL" --kubeconfig="$DIR/kubeconfig" "$@"; }

# launch NAME CMD... — as hack/kube/start.sh's: own session, stdio on DIR/NAME.log, pid in
# DIR/pids (hack/kube/stop.sh stops everything in DIR/pids in reverse order).
launch() {
  local name=$1; shift
  local pidfile="$DIR/run/$name.pid"
  rm -f "$pidfile"
  # shellcheck disable=SC2016 # $$, $0 and $@ are for the inner sh
  setsid sh -c 'echo $$ >"$0"; exec "$@"' "$pidfile" "$@" </dev/null >"$DIR/$name.log" 2>&1 8>&- &
  local _
  for _ in $(seq 50); do [[ -s $pidfile ]] && break; sleep 0.1; done
  [[ -s $pidfile ]] || die "$name did not start (see $DIR/$name.log)"
  echo "$name $(cat "$pidfile")" >>"$DIR/pids"
}

# wait_for WHAT LOG CMD... — poll CMD until it succeeds; fail fast when a process died.
wait_for() {
  local what=$1 logf=$2; shift 2
  local deadline=$((SECONDS + READY_TIMEOUT))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      tail -n 20 "$logf" >&2
      die "timed out after ${READY_TIMEOUT}s waiting for $what (see $logf)"
    fi
    local name pid
    while read -r name pid; do
      if ! kill -0 "$pid" 2>/dev/null; then
        tail -n 20 "$DIR/$name.log" >&2
        die "$name exited while waiting for $what (see $DIR/$name.log)"
      fi
    done <"$DIR/pids"
    sleep 0.3
  done
}

# free_ports N — N distinct free TCP ports on NODE_IP (also free for UDP: DNS uses both).
free_ports() {
  python3 - "$NODE_IP" "$1" <<'EOF'
import socket, sys
host, wanted = sys.argv[1], int(sys.argv[2])
held, ports = [], []
while len(ports) < wanted:
    tcp = socket.socket()
    tcp.bind((host, 0))
    port = tcp.getsockname()[1]
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        udp.bind((host, port))
    except OSError:
        tcp.close()
        continue
    held += [tcp, udp]
    ports.append(port)
print(*ports)
EOF
}
read -r KUBELET_PORT KUBELET_HEALTHZ_PORT PROXY_HEALTHZ_PORT PROXY_METRICS_PORT DNS_PORT < <(free_ports 5)

# ---------------------------------------------------------------------------------------------
# kube-scheduler: no serving ports (nothing scrapes it), no leader election (one instance).
log "starting kube-scheduler"
launch kube-scheduler "$BIN_DIR/kube-scheduler" \
  --kubeconfig="$DIR/scheduler.kubeconfig" \
  --leader-elect=false --port=0 --secure-port=0 --v=1

# ---------------------------------------------------------------------------------------------
# Pod network: one bridge, host-local addresses from POD_CIDR, state and cache in DIR.
#  * hairpinMode: a pod reaching itself through its own Service (the packet comes back out of
#    the port it went in by) — without it such connections hang.
#  * ipMasq: pods reach addresses outside POD_CIDR with the node's address.
#  * portmap: hostPort.
#  * firewall: dockerd sets the FORWARD policy to DROP; this plugin accepts the pods' traffic in
#    its CNI-FORWARD chain (inserted first in FORWARD).
cat >"$DIR/cni/net.d/10-pirate.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "pirate",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$POD_CIDR"}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": "$DIR/cni/networks"
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "firewall", "backend": "iptables"}
  ]
}
EOF

# ---------------------------------------------------------------------------------------------
# kubelet. What mattered (hack/cluster/README.md has the reasons at length):
#  * cgroupDriver cgroupfs (as our dockerd), cgroupsPerQOS false and enforceNodeAllocatable []:
#    no kubepods cgroup hierarchy on this machine's cgroup v1 without systemd;
#  * failSwapOn false; oomScoreAdj 0 (lowering it needs CAP_SYS_RESOURCE, which this machine's
#    capability set lacks; dockershim is patched to the same effect, see hack/kube/build.sh);
#  * image GC never runs (high threshold 100 %) and the eviction thresholds of disk are 0 %, as
#    kind does: the daemon is shared with `make images` and its cache, nothing may be deleted;
#  * serving certificate from the cluster CA, webhook authentication and authorization (the
#    apiserver's calls for logs, exec and port-forward are checked like any other request).
cat >"$DIR/config/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
tlsCertFile: $PKI/kubelet-serving.crt
tlsPrivateKeyFile: $PKI/kubelet-serving.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization:
  mode: Webhook
cgroupDriver: cgroupfs
cgroupsPerQOS: false
enforceNodeAllocatable: []
failSwapOn: false
oomScoreAdj: 0
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 100Mi
  nodefs.available: "0%"
  nodefs.inodesFree: "0%"
  imagefs.available: "0%"
clusterDNS: [$CLUSTER_DNS_IP]
clusterDomain: $CLUSTER_DOMAIN
volumePluginDir: $DIR/run/volume-plugins
serializeImagePulls: false
nodeStatusUpdateFrequency: 2s
EOF
# AWS_EC2_METADATA_DISABLED: kubelet's built-in ECR credential provider otherwise asks the EC2
# metadata address (169.254.169.254) for credentials at start, i.e. sends traffic off the machine.
log "starting kubelet ($NODE_NAME on $NODE_IP)"
launch kubelet env AWS_EC2_METADATA_DISABLED=true "$BIN_DIR/kubelet" \
  --config="$DIR/config/kubelet.yaml" \
  --kubeconfig="$DIR/kubelet.kubeconfig" \
  --hostname-override="$NODE_NAME" --node-ip="$NODE_IP" \
  --container-runtime=docker --docker-endpoint="$DOCKER_HOST_VALUE" --docker="$DOCKER_HOST_VALUE" \
  --container-runtime-endpoint="unix://$RUN_DIR/dockershim.sock" \
  --pod-infra-container-image="$PAUSE_IMAGE" \
  --network-plugin=cni --cni-conf-dir="$DIR/cni/net.d" --cni-bin-dir="$CNI_BIN_DIR" \
  --cni-cache-dir="$DIR/cni/cache" \
  --v=1

# ---------------------------------------------------------------------------------------------
# kube-proxy, iptables mode. conntrack limits and timeouts 0 = leave the host's as they are; its
# own oom_score_adj 0 as kubelet's; health and metrics on loopback ports picked free.
cat >"$DIR/config/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: $DIR/kube-proxy.kubeconfig
hostnameOverride: $NODE_NAME
bindAddress: 0.0.0.0
clusterCIDR: $POD_CIDR
mode: iptables
healthzBindAddress: 127.0.0.1:$PROXY_HEALTHZ_PORT
metricsBindAddress: 127.0.0.1:$PROXY_METRICS_PORT
oomScoreAdj: 0
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
EOF
log "starting kube-proxy"
launch kube-proxy "$BIN_DIR/kube-proxy" --config="$DIR/config/kube-proxy.yaml" --v=1

# ---------------------------------------------------------------------------------------------
# Cluster DNS: dnsmasq on NODE_IP:DNS_PORT answers *.cluster.local from the hosts file that
# cluster-dns.py keeps equal to the Services (never forwarding those names), other names go to
# the host's resolvers. The kube-dns Service (10.96.0.10:53, the kubelet's clusterDNS) has
# hand-made Endpoints pointing at it, so pods reach it through kube-proxy like any Service.
: >"$DIR/dns/hosts"
log "starting cluster DNS (dnsmasq on $NODE_IP:$DNS_PORT)"
launch dnsmasq "$(command -v dnsmasq)" \
  --keep-in-foreground --log-facility=- --conf-file=/dev/null --pid-file= --user=root \
  --listen-address="$NODE_IP" --bind-interfaces --port="$DNS_PORT" \
  --no-hosts --addn-hosts="$DIR/dns/hosts" --local="/$CLUSTER_DOMAIN/" --domain-needed --no-negcache
DNSMASQ_PID=$(awk '$1 == "dnsmasq" {print $2}' "$DIR/pids")
launch cluster-dns python3 "$HERE/cluster-dns.py" watch \
  --server="$APISERVER_URL" --ca="$PKI/ca.crt" --cert="$PKI/admin.crt" --key="$PKI/admin.key" \
  --hosts="$DIR/dns/hosts" --dnsmasq-pid="$DNSMASQ_PID" --domain="$CLUSTER_DOMAIN"
kubectl_ apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Service
metadata:
  name: kube-dns
  namespace: kube-system
  labels: {k8s-app: kube-dns, kubernetes.io/name: CoreDNS}
spec:
  clusterIP: $CLUSTER_DNS_IP
  ports:
  - {name: dns, port: 53, protocol: UDP, targetPort: $DNS_PORT}
  - {name: dns-tcp, port: 53, protocol: TCP, targetPort: $DNS_PORT}
---
apiVersion: v1
kind: Endpoints
metadata:
  name: kube-dns
  namespace: kube-system
  labels: {k8s-app: kube-dns}
subsets:
- addresses: [{ip: $NODE_IP}]
  ports:
  - {name: dns, port: $DNS_PORT, protocol: UDP}
  - {name: dns-tcp, port: $DNS_PORT, protocol: TCP}
---
# PVCs without a class get host-path volumes (the controller-manager's provisioner; the patched
# kubelet applies the pod's fsGroup to them as to a CSI volume).
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: standard
  annotations: {storageclass.kubernetes.io/is-default-class: "true"}
provisioner: kubernetes.io/host-path
reclaimPolicy: Delete
volumeBindingMode: Immediate
EOF

# ---------------------------------------------------------------------------------------------
node_ready() {
  [[ "$(kubectl_ get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" == True ]]
}
wait_for "node $NODE_NAME Ready" "$DIR/kubelet.log" node_ready
# The whole path a pod's lookup takes: kube-proxy's rules for 10.96.0.10, dnsmasq, the records.
dns_answers() {
  [[ "$(python3 "$HERE/cluster-dns.py" query "$CLUSTER_DNS_IP" 53 "kubernetes.default.svc.$CLUSTER_DOMAIN")" == 10.96.0.1 ]]
}
wait_for "cluster DNS to answer kubernetes.default.svc.$CLUSTER_DOMAIN" "$DIR/cluster-dns.log" dns_answers
# Pods are refused until their ServiceAccount has its token Secret (1.20's ServiceAccount admission).
default_token() { [[ -n "$(kubectl_ -n default get serviceaccount default -o jsonpath='{.secrets[0].name}')" ]]; }
wait_for "ServiceAccount default with its token" "$DIR/kube-controller-manager.log" default_token

cat >>"$DIR/env" <<EOF
DOCKER_HOST=$DOCKER_HOST_VALUE
PIRATE_NODE_NAME=$NODE_NAME
PIRATE_NODE_IP=$NODE_IP
PIRATE_CLUSTER_DIR=$DIR
EOF
trap - EXIT
log "node $NODE_NAME Ready in $((SECONDS - T0))s: export KUBECONFIG=$DIR/kubeconfig  (stop with: $HERE/stop.sh $DIR)"
