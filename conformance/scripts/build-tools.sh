#!/usr/bin/env bash
# Build the harness programs: echo-basic (upstream, once per Gateway API version), the node agent
# and the report summary (ours: rebuilt each time, which the Go build cache makes cheap).
set -euo pipefail
. "$(dirname "$0")/env.sh"
mkdir -p "$TOOLS_BIN"
cd "$CONF_DIR"
if [ ! -x "$TOOLS_BIN/echo-basic" ]; then
	log "building echo-basic from sigs.k8s.io/gateway-api/conformance $GWAPI_VERSION"
	CGO_ENABLED=0 nice -n 10 go build -p "$GO_BUILD_P" -trimpath -o "$TOOLS_BIN/echo-basic.tmp" \
		sigs.k8s.io/gateway-api/conformance/echo-basic
	mv "$TOOLS_BIN/echo-basic.tmp" "$TOOLS_BIN/echo-basic"
fi
# Replace a binary only when its content changed: cluster-up restarts the node agent when its
# binary is newer than the running one.
for p in nodeagent summary; do
	CGO_ENABLED=0 nice -n 10 go build -p "$GO_BUILD_P" -trimpath -o "$TOOLS_BIN/$p.new" "./$p"
	if cmp -s "$TOOLS_BIN/$p.new" "$TOOLS_BIN/$p"; then
		rm -f "$TOOLS_BIN/$p.new"
	else
		mv -f "$TOOLS_BIN/$p.new" "$TOOLS_BIN/$p"
	fi
done
