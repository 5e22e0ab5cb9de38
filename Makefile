# The two commands: `make run` and `make test`. Everything else is a helper.
BUILD ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: all deps build run test unit blackbox fuzz-smoke asan tsan bench clean

all: build

deps:
	@sh scripts/deps.sh

$(BUILD)/build.ninja:
	cmake -S . -B $(BUILD) -G Ninja $(CMAKE_FLAGS)

build: deps $(BUILD)/build.ninja
	cmake --build $(BUILD) -j $(JOBS)

run: build
	sh scripts/run-quickstart.sh $(BUILD)/pylon

unit: build
	cd $(BUILD) && ctest --output-on-failure

blackbox: build
	PYLON_BIN=$(CURDIR)/$(BUILD)/pylon python3 -m pytest -q tests/blackbox

fuzz-smoke: deps
	bash scripts/fuzz-smoke.sh

test: build
	cd $(BUILD) && ctest --output-on-failure
	bash scripts/fuzz-smoke.sh
	PYLON_BIN=$(CURDIR)/$(BUILD)/pylon python3 -m pytest -q tests/blackbox
	$(MAKE) controller-test

# Sanitizer runs of the unit and black-box tests (docs/testing.md).
asan: deps
	cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DPYLON_ASAN=ON
	cmake --build build-asan -j $(JOBS)
	cd build-asan && ctest --output-on-failure
	PYLON_BIN=$(CURDIR)/build-asan/pylon PYLON_SANITIZER=asan python3 -m pytest -q tests/blackbox

tsan: deps
	cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DPYLON_TSAN=ON
	cmake --build build-tsan -j $(JOBS)
	cd build-tsan && ctest --output-on-failure
	PYLON_BIN=$(CURDIR)/build-tsan/pylon PYLON_SANITIZER=tsan python3 -m pytest -q tests/blackbox

bench: build
	bash bench/run.sh $(BUILD)/pylon

clean:
	rm -rf $(BUILD) build-asan build-tsan build-fuzz

# ---- Local Kubernetes cluster and upstream conformance suite (issue 3; docs/conformance.md) ----
# Not part of `make test`: the first run builds Kubernetes from source (tens of minutes), and the
# cluster needs root and network namespaces.
.PHONY: cluster-up cluster-down conformance cluster-test conformance-selftest

cluster-up:
	bash conformance/scripts/cluster-up.sh

cluster-down:
	bash conformance/scripts/cluster-down.sh

conformance: build
	PYLON_BIN=$(abspath $(BUILD))/pylon bash conformance/scripts/conformance.sh

# The harness's own tests: the node agent's pod lifecycle against the real apiserver.
cluster-test:
	bash conformance/scripts/cluster-up.sh
	cd conformance && PYLON_CLUSTER_TESTS=1 KUBECONFIG=$${PYLON_CLUSTER_DIR:-/tmp/pylon-cluster}/admin.kubeconfig \
		GOMODCACHE=$${PYLON_CACHE:-$$HOME/.cache/pylon}/gomod go test -count=1 -v -timeout 10m ./harness/ ./nodeagent/

# The Helm chart in real pods of the local cluster (docs/conformance.md, "make helm-test"): helm
# install, pylon --in-cluster Ready, Gateway Programmed, traffic through it, leader hand-over,
# helm uninstall. The agent runs pylon images as $(BUILD)/pylon.
.PHONY: helm-test
helm-test: build
	PYLON_BIN=$(abspath $(BUILD))/pylon bash conformance/scripts/cluster-up.sh
	cd conformance && PYLON_CLUSTER_TESTS=1 PYLON_HELM_TESTS=1 KUBECONFIG=$${PYLON_CLUSTER_DIR:-/tmp/pylon-cluster}/admin.kubeconfig \
		GOMODCACHE=$${PYLON_CACHE:-$$HOME/.cache/pylon}/gomod GOTOOLCHAIN=local GOFLAGS=-buildvcs=false \
		go test -count=1 -v -timeout 10m -run 'TestHelmChart' ./harness/

# Harness self-test: the suite through setup to a written report, with a status-only fake
# controller in place of pylon (the report says nothing about pylon).
conformance-selftest: build
	PYLON_CONF_SELFTEST=1 PYLON_BIN=$(abspath $(BUILD))/pylon bash conformance/scripts/conformance.sh

# ---- Kubernetes controller (issue 4; docs/kubernetes.md) ----
# Controller tests against a private etcd + kube-apiserver (cached binaries from `make cluster-up`;
# ~45 s): watch resumption after an apiserver restart, 410 relist, Secret rotation, status of our
# parents only, no status write when nothing changed. Not part of `make test` (needs the binaries).
.PHONY: controller-test bench-kube
controller-test: build
	bash conformance/scripts/build-k8s.sh all
	cd conformance && PYLON_BIN=$(abspath $(BUILD))/pylon GOMODCACHE=$${PYLON_CACHE:-$$HOME/.cache/pylon}/gomod \
		GOTOOLCHAIN=local GOFLAGS=-buildvcs=false go test -count=1 -v -timeout 10m ./controllertest/

# Propagation and scale benchmark (bench/kube-propagation.sh); results in docs/kubernetes.md.
bench-kube: build
	sh bench/kube-propagation.sh $(abspath $(BUILD))/pylon
