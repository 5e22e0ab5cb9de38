#!/usr/bin/env bash
# Builds the test gRPC echo server and client (tests/grpc, google.golang.org/grpc
# through the Go module proxy) into $PYLON_CACHE/bin (default ~/.cache/pylon/bin)
# and prints the directory. Cached by a hash of the sources: a second run only
# prints it. Exit 2 (message on stderr) when Go is missing or the build fails,
# so callers can skip rather than fail.
set -euo pipefail

SRC=$(cd "$(dirname "$0")/../tests/grpc" && pwd)
CACHE=${PYLON_CACHE:-$HOME/.cache/pylon}
BIN=$CACHE/bin
HASH=$(cat "$SRC"/go.mod "$SRC"/*.go "$SRC"/server/*.go "$SRC"/client/*.go | sha256sum | cut -c1-12)
OUT=$BIN/grpc-$HASH

if [ -x "$OUT/grpc-echo-server" ] && [ -x "$OUT/grpc-echo-client" ]; then
	echo "$OUT"
	exit 0
fi
command -v go >/dev/null || { echo "grpc-tools.sh: go not found" >&2; exit 2; }
mkdir -p "$BIN"
export GOFLAGS=-mod=mod
TMP=$(mktemp -d "${TMPDIR:-/tmp}/pylon-grpc.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
# Build from a copy: -mod=mod writes go.sum, which stays out of the tree.
cp -r "$SRC"/. "$TMP/src"
if ! (cd "$TMP/src" && go build -o "$TMP/out/grpc-echo-server" ./server &&
	go build -o "$TMP/out/grpc-echo-client" ./client) >"$TMP/log" 2>&1; then
	echo "grpc-tools.sh: building the gRPC test tools failed:" >&2
	tail -20 "$TMP/log" >&2
	exit 2
fi
rm -rf "$OUT"
mv "$TMP/out" "$OUT"
echo "$OUT"
