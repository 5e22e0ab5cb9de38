#!/usr/bin/env bash
# Builds helm (helm.sh/helm/v3) through the Go module proxy into
# $PYLON_CACHE/bin (default ~/.cache/pylon/bin) and prints the binary's path.
# Cached: a second run only prints the path. Exit 2 (message on stderr) when Go
# is missing or the build fails.
set -euo pipefail

CACHE=${PYLON_CACHE:-$HOME/.cache/pylon}
BIN=$CACHE/bin
VERSION=${HELM_VERSION:-v3.16.4}
OUT=$BIN/helm-$VERSION

if [ -x "$OUT" ]; then
	echo "$OUT"
	exit 0
fi
command -v go >/dev/null || { echo "helm.sh: go not found" >&2; exit 2; }
mkdir -p "$BIN"
export GOMODCACHE=${GOMODCACHE:-$CACHE/gomod}
export GOFLAGS=-mod=mod
TMP=$(mktemp -d "${TMPDIR:-/tmp}/pylon-helm.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
if ! GOBIN=$TMP nice go install "helm.sh/helm/v3/cmd/helm@$VERSION" >"$TMP/log" 2>&1; then
	echo "helm.sh: building helm $VERSION failed:" >&2
	tail -20 "$TMP/log" >&2
	exit 2
fi
mv "$TMP/helm" "$OUT"
echo "$OUT"
