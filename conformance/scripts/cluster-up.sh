#!/usr/bin/env bash
# Start the container-less test cluster: etcd, kube-apiserver, kube-controller-manager and the pylon
# node agent, all as local processes; install the Gateway API CRDs; write the admin kubeconfig to
# $PYLON_CLUSTER_DIR/admin.kubeconfig. Harmless on a running cluster. Needs root (network namespaces,
# a bridge, bind mounts).
#
# Environment: see env.sh (versions, cache and cluster directories); GWAPI_CHANNEL=experimental|standard;
# PYLON_BIN: the pylon binary that pods of an image named pylon run (default: the repo's build/pylon).
set -euo pipefail
. "$(dirname "$0")/env.sh"

GWAPI_CHANNEL=${GWAPI_CHANNEL:-experimental}
BRIDGE=${PYLON_BRIDGE:-pylon0}
POD_CIDR=10.244.0.0/16
NODE_IP=10.244.0.1
D=$PYLON_CLUSTER_DIR
P=$D/pki
KUBECTL=$K8S_BIN/kubectl
t0=$(date +%s)

[ "$(id -u)" = 0 ] || die "the cluster needs root (network namespaces, bridge, bind mounts)"
command -v ip >/dev/null || die "iproute2 (ip) is required"
command -v openssl >/dev/null || die "openssl is required"
command -v go >/dev/null || die "Go is required (binaries are built from Go modules)"

alive() { [ -f "$D/pids/$1.pid" ] && kill -0 "$(cat "$D/pids/$1.pid")" 2>/dev/null; }
kc() { "$KUBECTL" --kubeconfig "$KUBECONFIG_PATH" "$@"; }

"$CONF_DIR/scripts/build-k8s.sh" all
"$CONF_DIR/scripts/build-tools.sh"

start() {	# name binary args...
	local name=$1; shift
	setsid "$@" >>"$D/logs/$name.log" 2>&1 </dev/null &
	echo $! >"$D/pids/$name.pid"
}
waitfor() {	# what seconds command...
	local what=$1 secs=$2; shift 2
	local end=$(( $(date +%s) + secs ))
	until "$@" >/dev/null 2>&1; do
		[ "$(date +%s)" -lt "$end" ] || die "$what did not come up within ${secs}s (logs: $D/logs/)"
		sleep 0.2
	done
}
start_kcm() {
	start kube-controller-manager "$K8S_BIN/kube-controller-manager" \
		--kubeconfig "$KUBECONFIG_PATH" \
		--controllers deployment,replicaset,endpointslice,garbagecollector,namespace,serviceaccount \
		--leader-elect=false --use-service-account-credentials=false \
		--bind-address 127.0.0.1 --secure-port 0 \
		--root-ca-file "$P/ca.crt" \
		--v=1
}
# Pods of an image named pylon (the Helm chart's) run $D/node/pylon, a symlink repointed on every
# cluster-up: another PYLON_BIN takes effect at the next pod start, without restarting the agent.
link_pylon() {
	mkdir -p "$D/node"
	ln -sfn "$(realpath -m "${PYLON_BIN:-$REPO_DIR/build/pylon}")" "$D/node/pylon"
}
start_nodeagent() {
	rm -f "$D/node/ready"
	start nodeagent "$TOOLS_BIN/nodeagent" --kubeconfig "$KUBECONFIG_PATH" --state-dir "$D/node" \
		--bridge "$BRIDGE" --pod-cidr "$POD_CIDR" --echo-basic "$TOOLS_BIN/echo-basic" --ready-file "$D/node/ready" \
		--pylon-bin "$D/node/pylon"
	waitfor nodeagent 60 test -f "$D/node/ready"
}

if alive etcd && alive kube-apiserver && kc get --raw /readyz >/dev/null 2>&1; then
	# Running control plane: (re)start only what is missing or rebuilt; the cluster's objects stay.
	link_pylon
	if ! alive kube-controller-manager; then
		log "kube-controller-manager not running: starting it"
		start_kcm
	fi
	if alive nodeagent && [ "$TOOLS_BIN/nodeagent" -nt "$D/pids/nodeagent.pid" ]; then
		log "node agent binary changed: restarting the node agent (its pods restart)"
		kill -TERM "$(cat "$D/pids/nodeagent.pid")"
		for _ in $(seq 1 150); do alive nodeagent || break; sleep 0.1; done
		if alive nodeagent; then kill -KILL "$(cat "$D/pids/nodeagent.pid")"; sleep 0.2; fi
	fi
	if ! alive nodeagent; then
		log "starting the node agent"
		start_nodeagent
	fi
	log "cluster up (kubeconfig $KUBECONFIG_PATH)"
	exit 0
fi
"$CONF_DIR/scripts/cluster-down.sh" --quiet

mkdir -p "$D"/{pids,logs,pki,etcd,node}
for f in "$D"/logs/*.log; do if [ -f "$f" ]; then mv -f "$f" "$f.old"; fi; done
freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ETCD_PORT=$(freeport); ETCD_PEER=$(freeport); API_PORT=$(freeport)
while [ "$ETCD_PEER" = "$ETCD_PORT" ]; do ETCD_PEER=$(freeport); done
while [ "$API_PORT" = "$ETCD_PORT" ] || [ "$API_PORT" = "$ETCD_PEER" ]; do API_PORT=$(freeport); done
printf 'ETCD_PORT=%s\nAPI_PORT=%s\nSERVER=https://127.0.0.1:%s\n' "$ETCD_PORT" "$API_PORT" "$API_PORT" >"$D/ports"

"$CONF_DIR/scripts/pki.sh" "$D/pki" "https://127.0.0.1:$API_PORT" "$NODE_IP"
cp "$D/pki/admin.kubeconfig" "$KUBECONFIG_PATH"

# The bridge exists before the apiserver starts: it advertises the bridge address.
if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
	ip link add "$BRIDGE" type bridge
fi
ip addr replace "$NODE_IP/16" dev "$BRIDGE"
ip link set "$BRIDGE" up

log "starting etcd $ETCD_VERSION on 127.0.0.1:$ETCD_PORT"
start etcd "$ETCD_BIN/etcd" --name pylon --data-dir "$D/etcd" \
	--listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
	--listen-peer-urls "http://127.0.0.1:$ETCD_PEER" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER" \
	--initial-cluster "pylon=http://127.0.0.1:$ETCD_PEER" --unsafe-no-fsync --quota-backend-bytes 2147483648 \
	--log-level warn
waitfor etcd 30 curl -sf "http://127.0.0.1:$ETCD_PORT/health"

log "starting kube-apiserver $K8S_VERSION on 127.0.0.1:$API_PORT"
start kube-apiserver "$K8S_BIN/kube-apiserver" \
	--etcd-servers "http://127.0.0.1:$ETCD_PORT" \
	--bind-address 127.0.0.1 --secure-port "$API_PORT" --advertise-address "$NODE_IP" \
	--tls-cert-file "$P/apiserver.crt" --tls-private-key-file "$P/apiserver.key" \
	--client-ca-file "$P/ca.crt" \
	--service-account-issuer https://kubernetes.default.svc.cluster.local \
	--service-account-key-file "$P/sa.pub" --service-account-signing-key-file "$P/sa.key" \
	--service-cluster-ip-range 10.96.0.0/16 \
	--authorization-mode RBAC \
	--disable-admission-plugins ServiceAccount \
	--kubelet-client-certificate "$P/admin.crt" --kubelet-client-key "$P/admin.key" \
	--kubelet-preferred-address-types InternalIP \
	--allow-privileged=true --profiling=false --enable-priority-and-fairness=false \
	--v=1
waitfor kube-apiserver 90 kc get --raw /readyz

log "installing Gateway API $GWAPI_VERSION CRDs ($GWAPI_CHANNEL channel)"
(cd "$CONF_DIR" && go mod download sigs.k8s.io/gateway-api)
crd_dir=$(cd "$CONF_DIR" && go list -m -f '{{.Dir}}' sigs.k8s.io/gateway-api)/config/crd/$GWAPI_CHANNEL
[ -d "$crd_dir" ] || die "CRD directory $crd_dir not found"
crd_args=()
for f in "$crd_dir"/*.yaml; do
	[ "$(basename "$f")" = kustomization.yaml ] || crd_args+=(-f "$f")
done
kc apply --server-side --force-conflicts "${crd_args[@]}" >"$D/logs/crds.log" 2>&1 || { cat "$D/logs/crds.log" >&2; die "CRD install failed"; }

log "starting kube-controller-manager"
start_kcm

log "starting the node agent"
link_pylon
start_nodeagent
kc wait --for=condition=Established crd --all --timeout=60s >/dev/null
kc wait --for=condition=Ready node --all --timeout=60s >/dev/null

ln -sf "$KUBECTL" "$D/kubectl"
log "cluster up in $(( $(date +%s) - t0 ))s"
cat >&2 <<MSG

  export KUBECONFIG=$KUBECONFIG_PATH
  $D/kubectl get nodes,pods -A
  logs: $D/logs/   stop: make cluster-down
MSG
