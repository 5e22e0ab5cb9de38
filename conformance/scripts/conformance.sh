#!/usr/bin/env bash
# make conformance: bring the cluster up, create pylon's GatewayClass, start pylon against the
# cluster, run the upstream Gateway API conformance suite (profiles GATEWAY-HTTP, GATEWAY-TLS,
# GATEWAY-GRPC) and print a one-screen summary of the report written to conformance/reports/.
#
# Environment:
#   PYLON_BIN                    the pylon binary (make passes build/pylon)
#   PYLON_K8S_ARGS               arguments that start pylon against the cluster; default below
#   PYLON_GATEWAY_ADDRESS_POOL   loopback range pylon hands Gateway addresses from (default 127.0.10.0/24)
#   PYLON_CONF_*                 suite knobs, see conformance/suite/conformance_test.go
#                                (PYLON_CONF_SETUP_TIMEOUT: upstream setup wait, default 300 s)
# Exit status: 0 when a report was written (whatever it says), 1 when the run stopped before that.
set -euo pipefail
. "$(dirname "$0")/env.sh"

PYLON_BIN=${PYLON_BIN:-$REPO_DIR/build/pylon}
POOL=${PYLON_GATEWAY_ADDRESS_POOL:-127.0.10.0/24}
CLASS=${PYLON_CONF_CLASS:-pylon}
CONTROLLER=${PYLON_CONTROLLER_NAME:-pylon.dev/gateway-controller}
D=$PYLON_CLUSTER_DIR
stamp=$(date -u +%Y%m%d-%H%M%S)
REPORTS=$CONF_DIR/reports
mkdir -p "$REPORTS"
prefix=pylon
if [ "${PYLON_CONF_SELFTEST:-}" = 1 ]; then prefix=selftest-fakecontroller; fi
report=$REPORTS/$prefix-$stamp.yaml
runlog=$REPORTS/$prefix-$stamp.log
stopfile=$D/conformance-stop.txt
t0=$(date +%s)

[ -x "$PYLON_BIN" ] || die "pylon binary $PYLON_BIN not found (make build)"
"$CONF_DIR/scripts/cluster-up.sh"
export KUBECONFIG=$KUBECONFIG_PATH
KUBECTL=$K8S_BIN/kubectl

log "creating GatewayClass $CLASS (controllerName $CONTROLLER)"
"$KUBECTL" apply -f - >/dev/null <<YAML
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata:
  name: $CLASS
spec:
  controllerName: $CONTROLLER
  description: pylon, run by make conformance
YAML
# Reset the status so that an Accepted left by an earlier run (or by the self-test's fake
# controller) does not pass the pre-flight check: the controller under test must accept it anew.
"$KUBECTL" patch gatewayclass "$CLASS" --subresource=status --type=merge -p \
	'{"status":{"supportedFeatures":null,"conditions":[{"type":"Accepted","status":"Unknown","reason":"Pending","message":"Waiting for controller","lastTransitionTime":"1970-01-01T00:00:00Z","observedGeneration":0}]}}' >/dev/null

pylon_pid=
cleanup() {
	if [ -n "$pylon_pid" ] && kill -0 "$pylon_pid" 2>/dev/null; then
		kill -TERM "$pylon_pid" 2>/dev/null || true
		wait "$pylon_pid" 2>/dev/null || true
	fi
}
trap cleanup EXIT

# Start pylon against the cluster. The Kubernetes controller is issue 4; until pylon has it, the
# suite's first pre-flight step (GatewayClass Accepted) waits in vain and says so.
# Gateway addresses: in this cluster pylon is expected to give each Gateway an address from $POOL
# (all of 127.0.0.0/8 is local on Linux, so no setup is needed) or the Gateway's spec.addresses, and
# bind that Gateway's listeners there. That is the hook: --gateway-address-pool.
# GatewayStaticAddresses: a usable static address outside the pool (any 127/8 address binds) and
# an unusable one (TEST-NET-1 is not local: bind fails, Programmed=False AddressNotUsable).
export PYLON_CONF_ADDRESSES=${PYLON_CONF_ADDRESSES:-127.0.11.1}
export PYLON_CONF_UNUSABLE_ADDRESSES=${PYLON_CONF_UNUSABLE_ADDRESSES:-192.0.2.1}
help=$("$PYLON_BIN" run --help 2>&1 || true)
if [ "${PYLON_CONF_SELFTEST:-}" = 1 ]; then
	# Harness self-test: a status-only fake controller instead of pylon (see fakecontroller/).
	export PYLON_CONF_RUN=${PYLON_CONF_RUN:-HTTPRouteSimpleSameNamespace}
	(cd "$CONF_DIR" && go build -o "$TOOLS_BIN/fakecontroller" ./fakecontroller)
	log "self-test: starting the status-only fakecontroller instead of pylon (not a pylon result)"
	"$TOOLS_BIN/fakecontroller" --controller-name "$CONTROLLER" >"$REPORTS/$prefix-$stamp.fake.log" 2>&1 &
	pylon_pid=$!
elif [ -n "${PYLON_K8S_ARGS:-}" ] || grep -q -- '--kubeconfig' <<<"$help"; then
	args=${PYLON_K8S_ARGS:-run --kubeconfig $KUBECONFIG --controller-name $CONTROLLER --admin off}
	if [ -z "${PYLON_K8S_ARGS:-}" ] && grep -q -- '--gateway-address-pool' <<<"$help"; then
		args="$args --gateway-address-pool $POOL"
	fi
	log "starting pylon: $PYLON_BIN $args"
	# shellcheck disable=SC2086
	"$PYLON_BIN" $args >"$REPORTS/$prefix-$stamp.pylon.log" 2>&1 &
	pylon_pid=$!
	sleep 1
	kill -0 "$pylon_pid" 2>/dev/null || { tail -20 "$REPORTS/$prefix-$stamp.pylon.log" >&2; die "pylon exited at start"; }
else
	log "pylon has no Kubernetes mode yet (no --kubeconfig in 'pylon run --help'; issue 4): not started"
fi

log "running the Gateway API $GWAPI_VERSION conformance suite (log: $runlog)"
rm -f "$stopfile"
set +e
(cd "$CONF_DIR" && PYLON_CONFORMANCE=1 PYLON_CONF_REPORT="$report" PYLON_CONF_STOPFILE="$stopfile" \
	PYLON_CONF_CLASS="$CLASS" PYLON_VERSION="${PYLON_VERSION:-$("$PYLON_BIN" --version 2>/dev/null | awk '{print $NF; exit}')}" \
	nice -n 5 go test -p 1 -count=1 -timeout 4h -v ./suite -run '^TestConformance$') >"$runlog" 2>&1
rc=$?
set -e
secs=$(( $(date +%s) - t0 ))

echo
if [ -f "$report" ]; then
	"$TOOLS_BIN/summary" "$report" | tee "$REPORTS/$prefix-$stamp.summary.txt"
	echo
	echo "report: $report  (go test exit $rc, ${secs}s; log $runlog)"
	exit 0
fi
echo "conformance run stopped before a report was written (${secs}s):"
if [ -f "$stopfile" ]; then
	sed 's/^/  /' "$stopfile"
elif grep -q 'namespaces to be ready' "$runlog"; then
	# The upstream setup (NamespacesMustBeReady) timed out: say which object it last waited for.
	echo "  setup step \"base Gateways Accepted and Programmed, base pods Ready\" waited in vain" \
		"(${PYLON_CONF_SETUP_TIMEOUT:-300}s):"
	grep -E ' not (Accepted|Programmed|ready) yet|No pods deployed yet' "$runlog" | tail -1 | sed 's/^.*Z: /    /'
	grep -E 'condition set to Status|was not in conditions list' "$runlog" | tail -2 | sed 's/^.*Z: /    /' | cut -c1-300
else
	grep -E -- '--- FAIL|Error:|Messages:|panic' "$runlog" | head -15 | sed 's/^/  /'
fi
echo "full log: $runlog"
exit 1
