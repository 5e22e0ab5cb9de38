#!/usr/bin/env bash
# Stop the test cluster: the node agent first (it stops its pods), then the control plane; remove
# leftover pod namespaces, the bridge and the cluster state (logs are kept in $PYLON_CLUSTER_DIR/logs).
# Only processes recorded in our pid files, and processes inside our pod namespaces, are signalled.
set -euo pipefail
. "$(dirname "$0")/env.sh"
quiet=${1:-}
D=$PYLON_CLUSTER_DIR
BRIDGE=${PYLON_BRIDGE:-pylon0}

stop() {	# name grace-seconds
	local f=$D/pids/$1.pid pid
	[ -f "$f" ] || return 0
	pid=$(cat "$f")
	if kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid" 2>/dev/null || true
		for _ in $(seq 1 $(( $2 * 10 ))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$pid" 2>/dev/null || true
		[ "$quiet" = --quiet ] || log "stopped $1 ($pid)"
	fi
	rm -f "$f"
}
stop nodeagent 15
stop kube-controller-manager 5
stop kube-apiserver 10
stop etcd 5

# Pod processes left by a node agent that was killed hard.
for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep '^pylon-pod-' || true); do
	for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
	ip netns del "$ns" 2>/dev/null || true
done
for l in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | sed 's/@.*//' | grep '^plv' || true); do
	ip link del "$l" 2>/dev/null || true
done
ip link del "$BRIDGE" 2>/dev/null || true
if [ -d "$D" ]; then
	rm -rf "$D/etcd" "$D/node" "$D/pki" "$D/pids" "$D/ports" "$D/admin.kubeconfig" "$D/kubectl"
fi
[ "$quiet" = --quiet ] || log "cluster down"
