#!/bin/sh
# The quickstart: two echo "pods" and pylon serving examples/quickstart/.
#   sh scripts/run-quickstart.sh PYLON_BIN      (what `make run` does)
# Ctrl-C stops everything this script started.
set -eu

PYLON=${1:-build/pylon}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
MANIFESTS="$ROOT/examples/quickstart"
GW_PORT=8080            # examples/quickstart/10-gateway.yaml
LEFT_PORT=9081          # examples/quickstart/30-backends.yaml
RIGHT_PORT=9082
ADMIN=127.0.0.1:9901

if [ ! -x "$PYLON" ]; then
	echo "run-quickstart: $PYLON is not an executable; build first (make build)" >&2
	exit 2
fi

# A clear message beats a bind error in the middle of the logs.
port_busy() {
	if command -v ss >/dev/null 2>&1; then
		[ -n "$(ss -Htln "sport = :$1" 2>/dev/null)" ]
	else
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
	fi
}
busy=""
for p in $GW_PORT $LEFT_PORT $RIGHT_PORT ${ADMIN##*:}; do
	port_busy "$p" && busy="$busy $p"
done
if [ -n "$busy" ]; then
	echo "run-quickstart: port(s)$busy already in use on this machine." >&2
	echo "  the quickstart needs $GW_PORT (gateway), $LEFT_PORT and $RIGHT_PORT (echo pods) and ${ADMIN##*:} (admin)." >&2
	echo "  stop whatever holds them (ss -ltnp shows it) and run again." >&2
	exit 1
fi

PIDS=""
cleanup() {
	trap - INT TERM EXIT
	for pid in $PIDS; do
		kill "$pid" 2>/dev/null || true
	done
	for pid in $PIDS; do
		wait "$pid" 2>/dev/null || true
	done
	echo
	echo "run-quickstart: stopped."
}
trap cleanup EXIT
trap 'exit 130' INT TERM

suffix=$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
POD_NAME="left-$suffix" NAMESPACE=default "$PYLON" echo --listen "127.0.0.1:$LEFT_PORT" &
PIDS="$PIDS $!"
POD_NAME="right-$suffix" NAMESPACE=default "$PYLON" echo --listen "127.0.0.1:$RIGHT_PORT" &
PIDS="$PIDS $!"
"$PYLON" run --manifests "$MANIFESTS" --admin "$ADMIN" &
PYLON_PID=$!
PIDS="$PIDS $PYLON_PID"

i=0
until curl -fs "http://$ADMIN/readyz" >/dev/null 2>&1; do
	i=$((i + 1))
	if ! kill -0 "$PYLON_PID" 2>/dev/null; then
		echo "run-quickstart: pylon exited; see its log above." >&2
		exit 1
	fi
	if [ $i -gt 100 ]; then
		echo "run-quickstart: pylon not ready after 10 s; see its log above." >&2
		exit 1
	fi
	sleep 0.1
done

cat <<MSG

pylon is serving examples/quickstart/ on port $GW_PORT. Try:

  curl localhost:$GW_PORT/left          # answered by pod left-$suffix
  curl localhost:$GW_PORT/right         # answered by pod right-$suffix
  curl -i localhost:$GW_PORT/nowhere    # 404: no route
  curl $ADMIN/metrics     # per-route counters, table generation
  curl $ADMIN/config      # the compiled routing table
  $PYLON check --manifests $MANIFESTS

Edit a file under examples/quickstart/ and pylon swaps its table live.
Ctrl-C stops everything.

MSG
wait "$PYLON_PID"
