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
	sh scripts/fuzz-smoke.sh

test: build
	cd $(BUILD) && ctest --output-on-failure
	sh scripts/fuzz-smoke.sh
	PYLON_BIN=$(CURDIR)/$(BUILD)/pylon python3 -m pytest -q tests/blackbox

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
	sh bench/run.sh $(BUILD)/pylon

clean:
	rm -rf $(BUILD) build-asan build-tsan build-fuzz
