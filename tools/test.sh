#!/usr/bin/env bash
# The test command (README, .ci/run): installs what is missing, then builds
# and runs every test three ways, warnings as errors:
#   build/        RelWithDebInfo: all tests
#   build/asan/   ASan + UBSan:   all tests
#   build/tsan/   TSan:           the tests labelled "tsan" (concurrent code)
# Ends with one line "tests: N passed, N failed" over all three.
set -euo pipefail
cd "$(dirname "$0")/.."

tools/setup.sh

jobs=$(nproc)
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
status=0

# run_suite <name> <build dir> <build target> <cmake args...> -- <ctest args...>
run_suite() {
  local name=$1 dir=$2 target=$3
  shift 3
  local cmake_args=() ctest_args=()
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do cmake_args+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  ctest_args=("$@")
  echo "=== $name: configure and build ($dir)"
  cmake -S . -B "$dir" -G Ninja -DGATEHOUSE_WERROR=ON "${cmake_args[@]}" >"$logs/$name.cmake" ||
    { cat "$logs/$name.cmake"; return 1; }
  cmake --build "$dir" -j "$jobs" --target "$target"
  echo "=== $name: test"
  ctest --test-dir "$dir" --output-on-failure -j "$jobs" "${ctest_args[@]}" 2>&1 |
    tee "$logs/$name.ctest"
  return "${PIPESTATUS[0]}"
}

export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}

run_suite release build all || status=1
run_suite asan build/asan all -DGATEHOUSE_SANITIZE=address || status=1
run_suite tsan build/tsan gatehouse_tsan_tests -DGATEHOUSE_SANITIZE=thread -- -L tsan || status=1

passed=0
failed=0
for f in "$logs"/*.ctest; do
  line=$(grep -E 'tests passed, [0-9]+ tests? failed out of [0-9]+' "$f" | tail -1 || true)
  [ -n "$line" ] || { status=1; echo "no ctest summary in $(basename "$f")"; continue; }
  total=$(sed -E 's/.*out of ([0-9]+).*/\1/' <<<"$line")
  bad=$(sed -E 's/.*passed, ([0-9]+) tests? failed.*/\1/' <<<"$line")
  passed=$((passed + total - bad))
  failed=$((failed + bad))
done
[ "$failed" -eq 0 ] || status=1
echo "tests: $passed passed, $failed failed"
exit "$status"
