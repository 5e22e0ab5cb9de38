#!/usr/bin/env bash
# Fuzz smoke test: builds every libFuzzer target (fuzz/fuzz_*.c) with clang
# into build-fuzz/ and runs each for FUZZ_SECONDS seconds on a scratch copy of
# its seed corpus (fuzz/corpus/<name>/; the repository copy is never written).
# Fails if any target fails to build, crashes, hangs or runs out of memory;
# the reproducer is kept in build-fuzz/artifacts/<name>/.
#
# Environment: FUZZ_SECONDS (default 20), FUZZ_BUILD_DIR (default
# <repo>/build-fuzz), FUZZ_JOBS (build parallelism, default 2).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${FUZZ_BUILD_DIR:-$ROOT/build-fuzz}
SECONDS_PER=${FUZZ_SECONDS:-20}
JOBS=${FUZZ_JOBS:-2}

command -v clang >/dev/null || { echo "fuzz-smoke: clang not found" >&2; exit 1; }

shopt -s nullglob
srcs=("$ROOT"/fuzz/fuzz_*.c)
if [ ${#srcs[@]} -eq 0 ]; then
	echo "fuzz-smoke: no fuzz/fuzz_*.c targets" >&2
	exit 1
fi
targets=()
for s in "${srcs[@]}"; do
	targets+=("$(basename "$s" .c)")
done

echo "fuzz-smoke: configuring $BUILD"
CC=clang cmake -S "$ROOT" -B "$BUILD" -G Ninja -DPYLON_FUZZ=ON >/dev/null
echo "fuzz-smoke: building ${targets[*]}"
cmake --build "$BUILD" --target "${targets[@]}" -j "$JOBS"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/pylon-fuzz.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

failed=()
for t in "${targets[@]}"; do
	work="$TMP/$t"
	mkdir -p "$work/corpus" "$work/artifacts"
	if [ -d "$ROOT/fuzz/corpus/$t" ]; then
		cp -R "$ROOT/fuzz/corpus/$t/." "$work/corpus/"
	else
		echo "fuzz-smoke: warning: no seed corpus fuzz/corpus/$t/" >&2
	fi
	extra=()
	[ -f "$ROOT/fuzz/$t.dict" ] && extra+=("-dict=$ROOT/fuzz/$t.dict")

	echo "fuzz-smoke: running $t for ${SECONDS_PER}s"
	rc=0
	"$BUILD/$t" -max_total_time="$SECONDS_PER" -timeout=10 -rss_limit_mb=2048 \
		-artifact_prefix="$work/artifacts/" -print_final_stats=1 "${extra[@]}" \
		"$work/corpus" >"$work/log" 2>&1 || rc=$?
	arts=("$work"/artifacts/*)
	if [ "$rc" -ne 0 ] || [ ${#arts[@]} -gt 0 ]; then
		echo "fuzz-smoke: $t FAILED (exit $rc)" >&2
		tail -n 40 "$work/log" >&2
		keep="$BUILD/artifacts/$t"
		mkdir -p "$keep"
		[ ${#arts[@]} -gt 0 ] && cp "${arts[@]}" "$keep/"
		cp "$work/log" "$keep/log"
		echo "fuzz-smoke: reproducer and log kept in $keep" >&2
		failed+=("$t")
	else
		grep -E '^stat::number_of_executed_units|^Done' "$work/log" | sed "s/^/  $t: /" || true
	fi
done

if [ ${#failed[@]} -gt 0 ]; then
	echo "fuzz-smoke: FAILED: ${failed[*]}" >&2
	exit 1
fi
echo "fuzz-smoke: ok (${targets[*]})"
