#!/usr/bin/env bash
# The whole test suite, as CI runs it: install dependencies, check formatting, fetch the test
# models, build the sanitized debug preset (ASan+UBSan, libFuzzer targets) and the release preset,
# run the unit tests (ctest), the Python tests (pytest) against the sanitized binary, and every
# fuzz target for FUZZ_SECONDS (default 60) each.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-$(nproc)}
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/tests/lsan.supp}

step() { printf '\n=== %s ===\n' "$*"; }
failures=()
passed=0

step "install"
./scripts/install.sh

step "format check"
./scripts/format.sh --check

step "models"
python3 scripts/fetch_models.py smollm2 gemma3

step "build: debug (clang, ASan+UBSan, fuzzers)"
cmake --preset debug >/dev/null
cmake --build --preset debug -j "$JOBS"

step "build: release"
cmake --preset release >/dev/null
cmake --build --preset release -j "$JOBS"

step "unit tests (debug, sanitized)"
if ctest --preset debug -j "$JOBS"; then passed=$((passed + 1)); else failures+=("ctest debug"); fi

step "unit tests (release)"
if ctest --preset release -j "$JOBS"; then passed=$((passed + 1)); else failures+=("ctest release"); fi

step "xpu kernels compile for Intel Arc (dg2-g10) and Data Center GPU Max (pvc) with ocloc"
if ./scripts/check_xpu_kernels.sh; then passed=$((passed + 1)); else failures+=("xpu kernels (ocloc)"); fi

step "python tests (sanitized binary)"
if PAGODA_BIN="$PWD/build/debug/tools/pagoda/pagoda" python3 -m pytest tests -q -p no:cacheprovider; then
  passed=$((passed + 1))
else
  failures+=("pytest")
fi

step "fuzzing (${FUZZ_SECONDS}s per target)"
mkdir -p fuzz-artifacts
for fuzzer in build/debug/tests/fuzz_*; do
  [ -x "$fuzzer" ] || continue
  name=$(basename "$fuzzer")
  seeds="tests/fuzz/corpus/${name#fuzz_}"
  work=$(mktemp -d)
  [ -d "$seeds" ] && cp -r "$seeds"/. "$work"/
  echo "-- $name"
  if "$fuzzer" -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=4096 -print_final_stats=1 \
      -artifact_prefix="fuzz-artifacts/$name-" "$work" 2>"fuzz-artifacts/$name.log"; then
    grep -E "stat::number_of_executed_units|stat::peak_rss_mb" "fuzz-artifacts/$name.log" || true
    passed=$((passed + 1))
  else
    tail -n 40 "fuzz-artifacts/$name.log"
    failures+=("$name")
  fi
  rm -rf "$work"
done

step "summary"
echo "stages: ${passed} passed, ${#failures[@]} failed"
if [ ${#failures[@]} -gt 0 ]; then
  printf 'failed: %s\n' "${failures[@]}"
  exit 1
fi
