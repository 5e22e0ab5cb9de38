#!/usr/bin/env bash
# Build (once per version) kube-apiserver, kube-controller-manager, kubectl and etcd into the cache.
#
# k8s.io/kubernetes requires its staging modules (k8s.io/api, k8s.io/client-go, ...) at v0.0.0 and
# points them at ./staging/src/... with replace directives, which a consumer module does not inherit
# (kubernetes/kubernetes#79384). So we build from a generated wrapper module: its replace block is
# derived from the kubernetes go.mod itself, mapping every "k8s.io/X => ./staging/..." line to the
# published k8s.io/X v0.<minor>.<patch> of the same release.
#
# Usage: build-k8s.sh [all|k8s|etcd]     (idempotent: cached binaries are reused)
set -euo pipefail
. "$(dirname "$0")/env.sh"

what=${1:-all}

stamp_ok() {	# dir, binaries...: true when every binary and the stamp are present
	local d=$1; shift
	[ -f "$d/.complete" ] || return 1
	for b in "$@"; do [ -x "$d/$b" ] || return 1; done
}

build_k8s() {
	if stamp_ok "$K8S_BIN" kube-apiserver kube-controller-manager kubectl; then
		log "kubernetes $K8S_VERSION: cached in $K8S_BIN"
		return
	fi
	local src=$PYLON_CACHE/k8s/src-$K8S_VERSION
	local staging_ver="v0.${K8S_VERSION#v1.}"
	mkdir -p "$src" "$K8S_BIN"
	log "kubernetes $K8S_VERSION: preparing wrapper module in $src (staging modules at $staging_ver)"
	cd "$src"
	rm -f go.mod go.sum
	go mod init pylon.local/k8sbuild >/dev/null 2>&1
	# The kubernetes go.mod, fetched through the module proxy like any other module.
	local kmod
	kmod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
	[ -f "$kmod" ] || die "cannot download k8s.io/kubernetes@$K8S_VERSION go.mod"
	# Lines look like "	k8s.io/api => ./staging/src/k8s.io/api" inside "replace ( ... )".
	local reps
	reps=$(sed -n 's#^[[:space:]]*\(k8s\.io/[A-Za-z0-9._/-]*\)[[:space:]]*=>[[:space:]]*\./staging/.*#\1#p' "$kmod" | sort -u)
	[ -n "$reps" ] || die "no staging replace directives found in $kmod"
	{
		echo
		echo "require k8s.io/kubernetes $K8S_VERSION"
		echo
		echo "// Generated from k8s.io/kubernetes@$K8S_VERSION go.mod by conformance/scripts/build-k8s.sh."
		echo "replace ("
		for m in $reps; do printf '\t%s => %s %s\n' "$m" "$m" "$staging_ver"; done
		echo ")"
	} >>go.mod
	log "kubernetes $K8S_VERSION: $(echo "$reps" | wc -l) staging modules replaced"
	cat >tools.go <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
	go mod tidy -e >/dev/null 2>tidy.log || { cat tidy.log >&2; die "go mod tidy failed"; }
	local major=${K8S_VERSION#v}; major=${major%%.*}
	local minor=${K8S_VERSION#v*.}; minor=${minor%%.*}
	local ld="-s -w"
	for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		ld="$ld -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=$major -X $p.gitMinor=$minor"
		ld="$ld -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
	done
	for b in kube-apiserver kube-controller-manager kubectl; do
		log "kubernetes $K8S_VERSION: building $b (slow the first time)"
		CGO_ENABLED=0 nice -n 10 go build -p "$GO_BUILD_P" -trimpath -ldflags "$ld" \
			-o "$K8S_BIN/$b.tmp" "k8s.io/kubernetes/cmd/$b"
		mv "$K8S_BIN/$b.tmp" "$K8S_BIN/$b"
	done
	touch "$K8S_BIN/.complete"
	log "kubernetes $K8S_VERSION: done"
}

build_etcd() {
	if stamp_ok "$ETCD_BIN" etcd; then
		log "etcd $ETCD_VERSION: cached in $ETCD_BIN"
		return
	fi
	local src=$PYLON_CACHE/etcd/src-$ETCD_VERSION
	mkdir -p "$src" "$ETCD_BIN"
	cd "$src"
	rm -f go.mod go.sum
	go mod init pylon.local/etcdbuild >/dev/null 2>&1
	printf '\nrequire go.etcd.io/etcd/server/v3 %s\n' "$ETCD_VERSION" >>go.mod
	cat >tools.go <<'GO'
//go:build tools

package tools

import _ "go.etcd.io/etcd/server/v3"
GO
	go mod tidy -e >/dev/null 2>tidy.log || { cat tidy.log >&2; die "go mod tidy failed"; }
	log "etcd $ETCD_VERSION: building"
	CGO_ENABLED=0 nice -n 10 go build -p "$GO_BUILD_P" -trimpath -ldflags "-s -w" \
		-o "$ETCD_BIN/etcd.tmp" go.etcd.io/etcd/server/v3
	mv "$ETCD_BIN/etcd.tmp" "$ETCD_BIN/etcd"
	touch "$ETCD_BIN/.complete"
	log "etcd $ETCD_VERSION: done"
}

case $what in
all) build_etcd; build_k8s ;;
k8s) build_k8s ;;
etcd) build_etcd ;;
*) die "usage: $0 [all|k8s|etcd]" ;;
esac
