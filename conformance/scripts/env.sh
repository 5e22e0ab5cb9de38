# Shared settings for the conformance cluster scripts. Sourced, never run.
#
# Everything expensive lives under $PYLON_CACHE (default ~/.cache/pylon) so that a CI machine that
# keeps ~/.cache keeps the built binaries and the Go module cache between runs:
#   $PYLON_CACHE/k8s/<k8s-version>/   kube-apiserver, kube-controller-manager, kubectl
#   $PYLON_CACHE/etcd/<etcd-version>/ etcd
#   $PYLON_CACHE/tools/<gwapi-version>/ echo-basic, nodeagent, conformance test binary
#   $PYLON_CACHE/gomod                GOMODCACHE used by every Go build here
# Per-cluster state (PKI, etcd data, logs, pids, kubeconfig) lives under $PYLON_CLUSTER_DIR.

K8S_VERSION=${K8S_VERSION:-v1.36.3}
ETCD_VERSION=${ETCD_VERSION:-v3.6.16}
GWAPI_VERSION=${GWAPI_VERSION:-v1.6.1}

PYLON_CACHE=${PYLON_CACHE:-$HOME/.cache/pylon}
K8S_BIN=$PYLON_CACHE/k8s/$K8S_VERSION
ETCD_BIN=$PYLON_CACHE/etcd/$ETCD_VERSION
TOOLS_BIN=$PYLON_CACHE/tools/$GWAPI_VERSION

PYLON_CLUSTER_DIR=${PYLON_CLUSTER_DIR:-/tmp/pylon-cluster}
KUBECONFIG_PATH=$PYLON_CLUSTER_DIR/admin.kubeconfig

export GOMODCACHE=${GOMODCACHE_OVERRIDE:-$PYLON_CACHE/gomod}
export GOFLAGS="${GOFLAGS:+$GOFLAGS }-buildvcs=false"
export GOTOOLCHAIN=local
# Builds compete with C builds on a small machine: one or two packages at a time, low priority.
GO_BUILD_P=${GO_BUILD_P:-2}

CONF_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REPO_DIR=$(cd "$CONF_DIR/.." && pwd)

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
