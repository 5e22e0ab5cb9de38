#!/usr/bin/env bash
# Builds h2spec (github.com/summerwind/h2spec, the HTTP/2 conformance tester)
# through the Go module proxy into $PYLON_CACHE/bin (default ~/.cache/pylon/bin)
# and prints the binary's path. Cached: a second run only prints the path.
# Exit 2 (with a message on stderr) when Go is missing or the build fails,
# so callers can skip rather than fail.
set -euo pipefail

CACHE=${PYLON_CACHE:-$HOME/.cache/pylon}
BIN=$CACHE/bin
VERSION=${H2SPEC_VERSION:-v2.2.1+incompatible}
OUT=$BIN/h2spec-$VERSION

if [ -x "$OUT" ]; then
	echo "$OUT"
	exit 0
fi
command -v go >/dev/null || { echo "h2spec.sh: go not found" >&2; exit 2; }
mkdir -p "$BIN"
export GOMODCACHE=${GOMODCACHE:-$CACHE/gomod}
export GOFLAGS=-mod=mod
TMP=$(mktemp -d "${TMPDIR:-/tmp}/pylon-h2spec.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
if ! GOBIN=$TMP go install "github.com/summerwind/h2spec/cmd/h2spec@$VERSION" >"$TMP/log" 2>&1; then
	echo "h2spec.sh: building h2spec $VERSION failed:" >&2
	tail -20 "$TMP/log" >&2
	exit 2
fi
mv "$TMP/h2spec" "$OUT"
echo "$OUT"
