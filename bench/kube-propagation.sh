#!/bin/sh
# Propagation and scale benchmark of pylon's Kubernetes controller, modelled on the public
# gateway-api-bench: 3000 HTTPRoutes attached, time from creating an HTTPRoute to the first 200
# through it (end to end) and from the watch event to the table swap (controller); time for
# attachedRoutes to reach 1000 after creating 1000 routes; failed requests while routes change
# under load; RSS at 5000 routes. Runs against a private etcd + kube-apiserver (the binaries
# `make cluster-up` caches), see conformance/controllertest/bench_test.go.
#
# usage: bench/kube-propagation.sh [PYLON_BIN]   (env PYLON_CTLBENCH_ROUTES=3000, PYLON_CTLBENCH_OUT=file)
set -eu
bin=${1:-$(pwd)/build/pylon}
case $bin in /*) ;; *) bin=$(pwd)/$bin ;; esac
out=${PYLON_CTLBENCH_OUT:-$(pwd)/bench/kube-propagation.md}
cd "$(dirname "$0")/../conformance"
PYLON_BIN=$bin PYLON_CTLBENCH=1 PYLON_CTLBENCH_OUT=$out \
	GOMODCACHE=${PYLON_CACHE:-$HOME/.cache/pylon}/gomod GOTOOLCHAIN=local GOFLAGS=-buildvcs=false \
	go test -count=1 -v -timeout 20m -run '^TestBenchPropagation$' ./controllertest/
echo "results: $out"
