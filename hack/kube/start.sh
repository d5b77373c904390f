#!/usr/bin/env bash
# Start a throw-away Kubernetes 1.20 control plane on loopback for e2e tests:
#   etcd  ->  kube-apiserver (TLS, client-cert admin, RBAC+Node authz)  ->  kube-controller-manager
# No kubelet runs: Pods are created and scheduled by nobody, so they stay Pending (the e2e
# harness plays kubelet where a test needs Running pods).
#
# Usage: hack/kube/start.sh DIR
#   DIR gets: kubeconfig (admin), env (KUBECONFIG=... etc., sourceable), pids, *.log,
#   pki/, etcd/ (data). Ports are picked free at start, so several instances can coexist.
#   Exits 0 once /readyz is ok and namespace default + ServiceAccount default (with its token
#   Secret) exist; the processes keep running in their own session until hack/kube/stop.sh DIR.
#
# Node mode (hack/cluster/start.sh): with PIRATE_KUBE_NODE_NAME and PIRATE_KUBE_NODE_IP (the
#   host's own non-loopback address) the control plane is made for one real node: the apiserver
#   listens on all addresses and advertises NODE_IP (its certificate names it and 10.96.0.1, so
#   pods reach it through the `kubernetes` Service), it talks to the kubelet with a client
#   certificate of the cluster CA; the controller-manager also runs nodelifecycle and the hostpath
#   provisioner; and DIR gets the node's credentials: kubelet.kubeconfig + kubelet-serving.{crt,key},
#   kube-proxy.kubeconfig, scheduler.kubeconfig. Without them (the fast tiers) nothing changes.
#
# Prerequisite: hack/kube/build.sh (builds/caches the binaries; fast when already cached).
set -euo pipefail

KUBE_VERSION=1.20.2
CACHE_ROOT="${PIRATE_CACHE_DIR:-$HOME/.cache/pirate-workers}"
BIN_DIR="$CACHE_ROOT/kube-$KUBE_VERSION/bin"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# Same ranges kind uses. Nothing routes to them: they are only bookkeeping for ClusterIPs.
SERVICE_CIDR=10.96.0.0/12
READY_TIMEOUT=${PIRATE_KUBE_READY_TIMEOUT:-120}
NODE_NAME=${PIRATE_KUBE_NODE_NAME:-}
NODE_IP=${PIRATE_KUBE_NODE_IP:-}

log() { printf '[kube-start %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf '[kube-start] ERROR: %s\n' "$*" >&2; exit 1; }

[[ $# == 1 ]] || die "usage: $0 DIR"
mkdir -p "$1"
DIR="$(cd "$1" && pwd)"
[[ $DIR != *[[:space:]]* ]] || die "DIR must not contain whitespace (it goes into kubeconfig/env files): $DIR"

APISERVER="$BIN_DIR/kube-apiserver"
CONTROLLER_MANAGER="$BIN_DIR/kube-controller-manager"
for b in "$APISERVER" "$CONTROLLER_MANAGER"; do
  [[ -x $b ]] || die "$b missing: run hack/kube/build.sh first"
done
ETCD="$(command -v etcd || true)"
[[ -n $ETCD ]] || die "etcd not found: run hack/kube/build.sh (installs Debian's etcd-server)"
KUBECTL="$(command -v kubectl || true)"
[[ -n $KUBECTL ]] || KUBECTL="$BIN_DIR/kubectl"
[[ -x $KUBECTL ]] || die "kubectl not found: run hack/kube/build.sh"
command -v openssl >/dev/null || die "openssl not found (apt-get install openssl)"
[[ -z $NODE_NAME && -z $NODE_IP || -n $NODE_NAME && -n $NODE_IP ]] \
  || die "PIRATE_KUBE_NODE_NAME and PIRATE_KUBE_NODE_IP go together (node mode)"
[[ -z $NODE_IP || $NODE_IP != 127.* ]] || die "PIRATE_KUBE_NODE_IP must not be a loopback address: pods could not reach it"

# Refuse to clobber a running instance; otherwise start from a clean slate (only files we own).
if [[ -f $DIR/pids ]]; then
  while read -r name pid; do
    if [[ -n ${pid:-} ]] && kill -0 "$pid" 2>/dev/null; then
      die "$name (pid $pid) from a previous start is still running in $DIR: run hack/kube/stop.sh $DIR"
    fi
  done <"$DIR/pids"
fi
rm -rf "$DIR/etcd" "$DIR/pki" "$DIR/run"
rm -f "$DIR/kubeconfig" "$DIR"/*.kubeconfig "$DIR/env" "$DIR/pids" "$DIR"/*.log
mkdir -p "$DIR/pki" "$DIR/run"
chmod 700 "$DIR/pki"

# If anything below fails, don't leave half a cluster running.
started=0
cleanup_on_failure() {
  local rc=$?
  if [[ $rc != 0 && $started == 1 ]]; then
    "$HERE/stop.sh" "$DIR" >/dev/null 2>&1 || true
  fi
}
trap cleanup_on_failure EXIT

# ---------------------------------------------------------------------------------------------
# Ports. Ask the kernel for free loopback ports (bind to port 0). Tiny race with other
# processes grabbing them before our servers bind, acceptable for tests; all three at once so
# they are distinct.
read -r ETCD_CLIENT_PORT ETCD_PEER_PORT APISERVER_PORT < <(python3 - <<'EOF'
import socket
socks = []
for _ in range(3):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(*(s.getsockname()[1] for s in socks))
EOF
)
APISERVER_URL="https://127.0.0.1:$APISERVER_PORT"
ETCD_URL="http://127.0.0.1:$ETCD_CLIENT_PORT"

# ---------------------------------------------------------------------------------------------
# PKI with openssl: one CA per instance (client CA + serving CA + CSR signer), an apiserver
# serving cert, client certs for the admin (O=system:masters) and the controller-manager
# (CN=system:kube-controller-manager, which RBAC's bootstrap policy already grants), and an RSA
# key pair for signing/verifying ServiceAccount tokens.
log "generating certificates in $DIR/pki"
PKI="$DIR/pki"
openssl_quiet() { openssl "$@" 2>>"$PKI/openssl.log" || die "openssl $1 failed (see $PKI/openssl.log)"; }
openssl_quiet req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 \
  -keyout "$PKI/ca.key" -out "$PKI/ca.crt" -subj "/CN=pirate-workers-test-ca" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature"

# sign NAME SUBJECT EXTENSIONS
sign() {
  openssl_quiet req -new -newkey rsa:2048 -nodes -sha256 \
    -keyout "$PKI/$1.key" -out "$PKI/$1.csr" -subj "$2"
  printf '%b\n' "$3" >"$PKI/$1.ext"
  openssl_quiet x509 -req -sha256 -days 3650 -in "$PKI/$1.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" \
    -set_serial "0x$(openssl rand -hex 16)" -extfile "$PKI/$1.ext" -out "$PKI/$1.crt"
  rm -f "$PKI/$1.csr"
}
SERVER_EXT="basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth"
sign apiserver "/CN=kube-apiserver" \
  "$SERVER_EXT\nsubjectAltName=IP:127.0.0.1,IP:10.96.0.1,${NODE_IP:+IP:$NODE_IP,}DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
CLIENT_EXT="basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth"
sign admin "/O=system:masters/CN=kubernetes-admin" "$CLIENT_EXT"
sign controller-manager "/CN=system:kube-controller-manager" "$CLIENT_EXT"
if [[ -n $NODE_NAME ]]; then
  # The names RBAC's bootstrap policy and the Node authorizer already know: no bindings to make.
  sign kubelet "/O=system:nodes/CN=system:node:$NODE_NAME" "$CLIENT_EXT"
  sign kube-proxy "/CN=system:kube-proxy" "$CLIENT_EXT"
  sign scheduler "/CN=system:kube-scheduler" "$CLIENT_EXT"
  # apiserver -> kubelet (logs, exec, port-forward): the kubelet's webhook authorizer asks the
  # apiserver about this user, and system:masters may do everything.
  sign apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "$CLIENT_EXT"
  sign kubelet-serving "/O=system:nodes/CN=system:node:$NODE_NAME" \
    "$SERVER_EXT\nsubjectAltName=IP:$NODE_IP,IP:127.0.0.1,DNS:$NODE_NAME,DNS:localhost"
fi
openssl_quiet genrsa -out "$PKI/sa.key" 2048
openssl_quiet rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub"

# write_kubeconfig FILE USER — certificates embedded so the file is self-contained (copyable,
# and readable by the Python kubernetes client without path resolution issues).
write_kubeconfig() {
  local b64='base64 -w0'
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: pirate-test
  cluster:
    server: $APISERVER_URL
    certificate-authority-data: $($b64 <"$PKI/ca.crt")
users:
- name: $2
  user:
    client-certificate-data: $($b64 <"$PKI/$2.crt")
    client-key-data: $($b64 <"$PKI/$2.key")
contexts:
- name: $2@pirate-test
  context:
    cluster: pirate-test
    user: $2
    namespace: default
current-context: $2@pirate-test
EOF
  chmod 600 "$1"
}
write_kubeconfig "$DIR/kubeconfig" admin
write_kubeconfig "$DIR/controller-manager.kubeconfig" controller-manager
if [[ -n $NODE_NAME ]]; then
  for component in kubelet kube-proxy scheduler; do write_kubeconfig "$DIR/$component.kubeconfig" "$component"; done
fi

# ---------------------------------------------------------------------------------------------
# launch NAME CMD... — runs CMD in its own session (setsid: a Ctrl-C or SIGHUP aimed at the
# caller's process group does not take the cluster down half-way) with stdin from /dev/null and
# stdout/stderr to DIR/NAME.log. The redirections matter: a caller that captures our output
# (subprocess.run(capture_output=True)) would otherwise hang until the servers exit. The child
# writes its own pid before exec, because setsid may fork and $! would then be the wrong pid.
launch() {
  local name=$1; shift
  local pidfile="$DIR/run/$name.pid"
  # shellcheck disable=SC2016 # $$, $0 and $@ are for the inner sh
  setsid sh -c 'echo $$ >"$0"; exec "$@"' "$pidfile" "$@" </dev/null >"$DIR/$name.log" 2>&1 &
  local _
  for _ in $(seq 50); do [[ -s $pidfile ]] && break; sleep 0.1; done
  [[ -s $pidfile ]] || die "$name did not start (see $DIR/$name.log)"
  echo "$name $(cat "$pidfile")" >>"$DIR/pids"
  started=1
}

# wait_for WHAT TIMEOUT LOG CMD... — poll CMD until it succeeds; on timeout show the log tail.
wait_for() {
  local what=$1 timeout=$2 logf=$3; shift 3
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      [[ -f $logf ]] && tail -n 20 "$logf" >&2
      die "timed out after ${timeout}s waiting for $what (see $logf)"
    fi
    # A crashed process will never become ready: fail fast instead of waiting out the timeout.
    while read -r name pid; do
      if ! kill -0 "$pid" 2>/dev/null; then
        tail -n 20 "$DIR/$name.log" >&2
        die "$name exited while waiting for $what (see $DIR/$name.log)"
      fi
    done <"$DIR/pids"
    sleep 0.5
  done
}

# ---------------------------------------------------------------------------------------------
# etcd: single member, loopback only, plain HTTP (it is reachable only from this machine).
log "starting etcd on $ETCD_URL"
launch etcd "$ETCD" \
  --name=pirate-test \
  --data-dir="$DIR/etcd" \
  --listen-client-urls="$ETCD_URL" --advertise-client-urls="$ETCD_URL" \
  --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster="pirate-test=http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster-state=new \
  --logger=zap --log-level=warn
etcd_healthy() { curl -fsS "$ETCD_URL/health" | grep -q '"health":"true"'; }
wait_for "etcd health" 30 "$DIR/etcd.log" etcd_healthy

# ---------------------------------------------------------------------------------------------
# kube-apiserver. Flag notes (1.20):
#  * --insecure-port=0: 1.20 still has the unauthenticated 8080 port; it would also collide
#    between instances.
#  * --service-account-issuer / -signing-key-file / -key-file: required since 1.20 (TokenRequest).
#  * --advertise-address=127.0.0.1 with --endpoint-reconciler-type=none: otherwise the apiserver
#    advertises the host's network address in the `kubernetes` Endpoints (and Endpoints may not
#    hold loopback IPs), so nothing off-loopback ever appears.
#  * admission: the 1.20 defaults (NamespaceLifecycle, ServiceAccount, ResourceQuota, webhooks,
#    ...) plus NodeRestriction, as kubeadm/kind run it; none of them needs a kubelet.
#  * node mode: bound to all addresses and advertising the node's address with the default
#    (lease) reconciler, so the `kubernetes` Service's endpoint is NODE_IP:port and pods reach
#    the apiserver at 10.96.0.1:443 through kube-proxy; the kubelet is called by InternalIP with
#    a client certificate, and its serving certificate is checked against the cluster CA.
APISERVER_ADDRESSES=(--bind-address=127.0.0.1 --advertise-address=127.0.0.1 --endpoint-reconciler-type=none)
if [[ -n $NODE_IP ]]; then
  APISERVER_ADDRESSES=(
    --bind-address=0.0.0.0 --advertise-address="$NODE_IP"
    --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt"
    --kubelet-client-key="$PKI/apiserver-kubelet-client.key"
    --kubelet-certificate-authority="$PKI/ca.crt"
    "--kubelet-preferred-address-types=InternalIP,Hostname"
  )
fi
log "starting kube-apiserver on $APISERVER_URL${NODE_IP:+ and https://$NODE_IP:$APISERVER_PORT}"
launch kube-apiserver "$APISERVER" \
  --etcd-servers="$ETCD_URL" \
  --secure-port="$APISERVER_PORT" --insecure-port=0 "${APISERVER_ADDRESSES[@]}" \
  --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
  --client-ca-file="$PKI/ca.crt" \
  --authorization-mode=Node,RBAC \
  --enable-admission-plugins=NodeRestriction \
  --service-cluster-ip-range="$SERVICE_CIDR" \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-signing-key-file="$PKI/sa.key" \
  --service-account-key-file="$PKI/sa.pub" \
  --api-audiences=https://kubernetes.default.svc.cluster.local \
  --allow-privileged=true \
  --profiling=false \
  --v=1
kubectl_() { "$KUBECTL" --kubeconfig="$DIR/kubeconfig" "$@"; }
apiserver_ready() { [[ "$(kubectl_ get --raw /readyz 2>/dev/null)" == ok ]]; }
wait_for "kube-apiserver /readyz" "$READY_TIMEOUT" "$DIR/kube-apiserver.log" apiserver_ready

# ---------------------------------------------------------------------------------------------
# kube-controller-manager. Flag notes (1.20):
#  * --controllers: everything except what needs a cloud provider (cloud-node-lifecycle, route,
#    service LB) and nodelifecycle: with no kubelet heartbeats it would taint the harness's fake
#    Nodes unreachable and flip their Pods to NotReady/evict them behind the tests' back.
#  * --use-service-account-credentials: each controller runs as its own ServiceAccount, as in
#    kubeadm/kind clusters, so the token controller and RBAC bootstrap roles are exercised.
#  * --service-account-private-key-file + --root-ca-file: the token controller signs the
#    ServiceAccount token Secrets (1.20 still creates them) and puts ca.crt in them.
#  * --secure-port=0 --port=0: no HTTP(S) serving (not needed, and fixed ports 10257/10252
#    would collide between instances).
#  * --leader-elect=false: single instance; avoids waiting for a lease on restart.
#  * --flex-volume-plugin-dir: the default is /usr/libexec/kubernetes/..., which it would
#    create on the host.
#  * node mode: nodelifecycle on (a real kubelet heartbeats, and a node that stops must go
#    NotReady as anywhere else) and the hostpath provisioner (PVCs of the default StorageClass
#    hack/cluster creates become directories under /tmp/hostpath_pv on the node).
CONTROLLERS='*,bootstrapsigner,tokencleaner,-cloud-node-lifecycle,-route,-service,-nodelifecycle'
NODE_CONTROLLER_ARGS=()
if [[ -n $NODE_NAME ]]; then
  CONTROLLERS='*,bootstrapsigner,tokencleaner,-cloud-node-lifecycle,-route,-service'
  NODE_CONTROLLER_ARGS=(--enable-hostpath-provisioner=true)
fi
log "starting kube-controller-manager"
launch kube-controller-manager "$CONTROLLER_MANAGER" \
  --kubeconfig="$DIR/controller-manager.kubeconfig" \
  --controllers="$CONTROLLERS" "${NODE_CONTROLLER_ARGS[@]}" \
  --use-service-account-credentials=true \
  --service-account-private-key-file="$PKI/sa.key" \
  --root-ca-file="$PKI/ca.crt" \
  --cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
  --service-cluster-ip-range="$SERVICE_CIDR" \
  --secure-port=0 --port=0 \
  --leader-elect=false \
  --flex-volume-plugin-dir="$DIR/run/flexvolume" \
  --v=1

# The default namespace is made by the apiserver, the default ServiceAccount by the
# controller-manager's serviceaccount controller and its token Secret by the token controller.
# Waiting for the Secret too means a test can create Pods at once: the ServiceAccount admission
# plugin rejects Pods whose ServiceAccount has no token yet.
default_sa_ready() {
  kubectl_ get namespace default &&
    [[ -n "$(kubectl_ -n default get serviceaccount default -o jsonpath='{.secrets[0].name}')" ]]
}
# PIRATE_KUBE_WAIT_FOR_SA=0: hack/cluster/start.sh starts the node meanwhile and waits itself.
if [[ ${PIRATE_KUBE_WAIT_FOR_SA:-1} == 1 ]]; then
  wait_for "namespace default + ServiceAccount default with token" "$READY_TIMEOUT" \
    "$DIR/kube-controller-manager.log" default_sa_ready
fi

cat >"$DIR/env" <<EOF
KUBECONFIG=$DIR/kubeconfig
PIRATE_KUBE_APISERVER=$APISERVER_URL
PIRATE_KUBE_ETCD=$ETCD_URL
PIRATE_KUBE_DIR=$DIR
EOF
[[ -z $NODE_IP ]] || echo "PIRATE_KUBE_NODE_IP=$NODE_IP" >>"$DIR/env"
log "ready: export KUBECONFIG=$DIR/kubeconfig  (stop with: $HERE/stop.sh $DIR)"
