#!/usr/bin/env bash
# The test command (README, .ci/run): installs what is missing, then builds
# and runs every test, warnings as errors:
#   build/        RelWithDebInfo: all tests
#   build/asan/   ASan + UBSan:   all tests
#   build/tsan/   TSan:           the tests labelled "tsan" (concurrent code)
#   build/fuzz/   clang libFuzzer + ASan: each fuzz target for
#                 GATEHOUSE_FUZZ_SECONDS (default 20) from its seed corpus
#   lint          tools/lint.sh: clang-format and clang-tidy over the tree
#                 (checked-in .clang-format/.clang-tidy, any finding fails);
#                 clang-tidy runs niced during the release tests
# Ends with one line "tests: N passed, N failed" over all of them.
set -euo pipefail
cd "$(dirname "$0")/.."

tools/setup.sh

jobs=$(nproc)
started=$SECONDS
stage_time() { echo "    ($(( SECONDS - started )) s since the start)"; }
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
status=0

# build_suite <name> <build dir> <build target> <cmake args...>
build_suite() {
  local name=$1 dir=$2 target=$3
  shift 3
  echo "=== $name: configure and build ($dir)"
  cmake -S . -B "$dir" -G Ninja -DGATEHOUSE_WERROR=ON "$@" >"$logs/$name.cmake" ||
    { cat "$logs/$name.cmake"; return 1; }
  cmake --build "$dir" -j "$jobs" --target "$target" || return 1
  stage_time
}

# test_suite <name> <build dir> <ctest args...>
test_suite() {
  local name=$1 dir=$2
  shift 2
  echo "=== $name: test"
  ctest --test-dir "$dir" --output-on-failure -j "$jobs" "$@" 2>&1 | tee "$logs/$name.ctest"
  local rc=${PIPESTATUS[0]}
  stage_time
  return "$rc"
}

# run_suite <name> <build dir> <build target> <cmake args...> -- <ctest args...>
run_suite() {
  local name=$1 dir=$2 target=$3
  shift 3
  local cmake_args=() ctest_args=()
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do cmake_args+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  ctest_args=("$@")
  build_suite "$name" "$dir" "$target" "${cmake_args[@]}" || return 1
  test_suite "$name" "$dir" "${ctest_args[@]}"
}

export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}

# Lint: each check counts as one test. clang-tidy reads the release build's
# compile database; it runs, niced, while the release tests run (they spend
# much of their time waiting on sockets and processes, and must hold on a
# busy machine anyway), which saves its minutes from the whole run.
lint_passed=0
lint_failed=0
lint_result() {
  if [ "$1" -eq 0 ]; then lint_passed=$((lint_passed + 1)); else lint_failed=$((lint_failed + 1)); fi
}
echo "=== lint: format"
tools/lint.sh format && lint_result 0 || lint_result 1
release_built=0
build_suite release build all && release_built=1 || status=1
tidy_pid=
if [ "$release_built" -eq 1 ]; then
  echo "=== lint: tidy (in the background, during the release tests)"
  nice -n 10 tools/lint.sh tidy build >"$logs/tidy.out" 2>&1 &
  tidy_pid=$!
  test_suite release build || status=1
fi
if [ -n "$tidy_pid" ]; then
  tidy_rc=0
  wait "$tidy_pid" || tidy_rc=$?
  echo "=== lint: tidy"
  cat "$logs/tidy.out"
  lint_result "$tidy_rc"
else
  lint_result 1
fi
stage_time
# -O1 -g1: sanitizer builds compile a third faster and still symbolize.
run_suite asan build/asan all -DGATEHOUSE_SANITIZE=address -DCMAKE_BUILD_TYPE=Debug \
  "-DCMAKE_CXX_FLAGS_DEBUG=-O1 -g1" || status=1
run_suite tsan build/tsan gatehouse_tsan_tests -DGATEHOUSE_SANITIZE=thread -DCMAKE_BUILD_TYPE=Debug \
  "-DCMAKE_CXX_FLAGS_DEBUG=-O1 -g1" -- -L tsan || status=1

# Fuzzing: each target from a copy of its seed corpus, bounded in time.
fuzz_seconds=${GATEHOUSE_FUZZ_SECONDS:-20}
fuzz_passed=0
fuzz_failed=0
echo "=== fuzz: configure and build (build/fuzz)"
if CC=clang-14 CXX=clang++-14 cmake -S . -B build/fuzz -G Ninja -DGATEHOUSE_WERROR=ON \
     -DGATEHOUSE_FUZZ=ON -DGATEHOUSE_SANITIZE=address >"$logs/fuzz.cmake" &&
   cmake --build build/fuzz -j "$jobs" --target gatehouse_fuzz_targets; then
  for target in build/fuzz/tests/fuzz/*_fuzz; do
    name=$(basename "$target")
    corpus="$logs/corpus-$name"
    mkdir -p "$corpus"
    cp tests/fuzz/corpus/"${name%_fuzz}"/* "$corpus"/
    echo "=== fuzz: $name for ${fuzz_seconds}s"
    if "$target" -max_total_time="$fuzz_seconds" -print_final_stats=1 "$corpus" \
         >"$logs/$name.out" 2>&1; then
      fuzz_passed=$((fuzz_passed + 1))
      grep -E "^Done|stat::number_of_executed_units" "$logs/$name.out" | head -2
    else
      fuzz_failed=$((fuzz_failed + 1))
      tail -40 "$logs/$name.out"
    fi
  done
else
  cat "$logs/fuzz.cmake"
  fuzz_failed=$((fuzz_failed + 1))
fi

passed=$((fuzz_passed + lint_passed))
failed=$((fuzz_failed + lint_failed))
for f in "$logs"/*.ctest; do
  line=$(grep -E 'tests passed, [0-9]+ tests? failed out of [0-9]+' "$f" | tail -1 || true)
  [ -n "$line" ] || { status=1; echo "no ctest summary in $(basename "$f")"; continue; }
  total=$(sed -E 's/.*out of ([0-9]+).*/\1/' <<<"$line")
  bad=$(sed -E 's/.*passed, ([0-9]+) tests? failed.*/\1/' <<<"$line")
  passed=$((passed + total - bad))
  failed=$((failed + bad))
done
[ "$failed" -eq 0 ] || status=1
stage_time
echo "tests: $passed passed, $failed failed"
exit "$status"
