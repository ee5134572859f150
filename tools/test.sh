#!/usr/bin/env bash
# The test command (README, .ci/run): installs what is missing, then builds
# and runs every test, warnings as errors:
#   build/asan/   clang, ASan + UBSan, -O0: all tests (the gateway's
#                 processes run instrumented under every integration test),
#                 and the Go SDK's (-DGATEHOUSE_GO_SDK=ON: its build, each
#                 Go test function, the Go demo game behind the gateway)
#   build/tsan/   GCC, TSan: the tests labelled "tsan" (concurrent code);
#                 built, with build/fuzz, niced during the ASan tests
#   build/fuzz/   clang libFuzzer + ASan: each fuzz target for
#                 GATEHOUSE_FUZZ_SECONDS (default 20) from its seed corpus,
#                 as many at once as there are cores
#   lint          tools/lint.sh: clang-format over the tree; clang-tidy over
#                 the sources that changed since the recorded clean pass
#                 (.ci/tidy-clean), niced, during the tests
# Ends with one line "tests: N passed, N failed" over all of them.
#
# One instrumented build runs every test: on the two cores CI has, a plain
# build, a sanitizer build and a whole clang-tidy pass took an hour; clang at
# -O0 compiles instrumented code four times faster than GCC at -O1.
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
  # A build directory configured with another compiler starts afresh (CMake
  # keeps the first compiler it was given).
  if [ -f "$dir/CMakeCache.txt" ] &&
     ! grep -qx "CMAKE_CXX_COMPILER:[A-Z]*=.*/${CXX:-c++}" "$dir/CMakeCache.txt"; then
    rm -rf "$dir"
  fi
  # A suite whose build fails runs no test: it counts as one failed.
  cmake -S . -B "$dir" -G Ninja -DGATEHOUSE_WERROR=ON "$@" >"$logs/$name.cmake" ||
    { cat "$logs/$name.cmake"; builds_failed=$((builds_failed + 1)); return 1; }
  cmake --build "$dir" -j "$jobs" --target "$target" ||
    { builds_failed=$((builds_failed + 1)); return 1; }
  stage_time
}
builds_failed=0

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

# Lint: each check counts as one test. clang-tidy reads the sanitizer
# build's compile database; it runs, niced, while the tests run (they spend
# much of their time waiting on sockets and processes, and must hold on a
# busy machine anyway).
lint_passed=0
lint_failed=0
lint_result() {
  if [ "$1" -eq 0 ]; then lint_passed=$((lint_passed + 1)); else lint_failed=$((lint_failed + 1)); fi
}
echo "=== lint: format"
tools/lint.sh format && lint_result 0 || lint_result 1
asan_built=0
CC=clang-14 CXX=clang++-14 build_suite asan build/asan all -DGATEHOUSE_SANITIZE=address -DGATEHOUSE_GO_SDK=ON \
  -DCMAKE_BUILD_TYPE=Debug "-DCMAKE_CXX_FLAGS_DEBUG=-O0 -g1" -DCMAKE_EXE_LINKER_FLAGS=-fuse-ld=lld \
  && asan_built=1 || status=1
# The TSan and fuzz builds run niced beside the ASan tests, as clang-tidy
# does: the tests spend most of their time waiting on sockets and processes
# (about a third of the two cores busy), so the builds take the rest.
side_builds() {
  build_suite tsan build/tsan gatehouse_tsan_tests -DGATEHOUSE_SANITIZE=thread \
    -DCMAKE_BUILD_TYPE=Debug "-DCMAKE_CXX_FLAGS_DEBUG=-O1 -g1" && touch "$logs/tsan.built"
  echo "=== fuzz: configure and build (build/fuzz)"
  if CC=clang-14 CXX=clang++-14 cmake -S . -B build/fuzz -G Ninja -DGATEHOUSE_WERROR=ON \
       -DGATEHOUSE_FUZZ=ON -DGATEHOUSE_SANITIZE=address -DCMAKE_EXE_LINKER_FLAGS=-fuse-ld=lld \
       >"$logs/fuzz.cmake" &&
     cmake --build build/fuzz -j "$jobs" --target gatehouse_fuzz_targets; then
    touch "$logs/fuzz.built"
  else
    cat "$logs/fuzz.cmake"
  fi
}
# (Its own shell: `started` shifted so that its stage times count from ours.)
nice -n 10 bash -c "set -uo pipefail; $(declare -f build_suite stage_time side_builds); \
  started=$((started - SECONDS)); logs='$logs'; jobs=$jobs; builds_failed=0; side_builds" \
  >"$logs/side-builds.out" 2>&1 &
side_pid=$!

tidy_pid=
if [ "$asan_built" -eq 1 ]; then
  echo "=== lint: tidy (changed sources, in the background, during the tests)"
  nice -n 10 tools/lint.sh tidy build/asan --changed >"$logs/tidy.out" 2>&1 &
  tidy_pid=$!
  test_suite asan build/asan || status=1
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
wait "$side_pid" || true
cat "$logs/side-builds.out"
if [ -f "$logs/tsan.built" ]; then
  test_suite tsan build/tsan -L tsan || status=1
else
  builds_failed=$((builds_failed + 1))
fi

# Fuzzing: each target from a copy of its seed corpus, bounded in time, as
# many at once as there are cores.
fuzz_seconds=${GATEHOUSE_FUZZ_SECONDS:-20}
fuzz_passed=0
fuzz_failed=0
if [ -f "$logs/fuzz.built" ]; then
  fuzz_targets=(build/fuzz/tests/fuzz/*_fuzz)
  echo "=== fuzz: ${#fuzz_targets[@]} targets for ${fuzz_seconds}s each, $jobs at once"
  for target in "${fuzz_targets[@]}"; do
    name=$(basename "$target")
    corpus="$logs/corpus-$name"
    mkdir -p "$corpus"
    cp tests/fuzz/corpus/"${name%_fuzz}"/* "$corpus"/
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
    ( rc=0
      "$target" -max_total_time="$fuzz_seconds" -print_final_stats=1 "$corpus" \
        >"$logs/$name.out" 2>&1 || rc=$?
      echo "$rc" >"$logs/$name.rc" ) &
  done
  wait
  for target in "${fuzz_targets[@]}"; do
    name=$(basename "$target")
    echo "=== fuzz: $name"
    if [ "$(cat "$logs/$name.rc")" = 0 ]; then
      fuzz_passed=$((fuzz_passed + 1))
      grep -E "^Done|stat::number_of_executed_units" "$logs/$name.out" | head -2
    else
      fuzz_failed=$((fuzz_failed + 1))
      tail -40 "$logs/$name.out"
    fi
  done
else
  fuzz_failed=$((fuzz_failed + 1))
fi
stage_time

passed=$((fuzz_passed + lint_passed))
failed=$((fuzz_failed + lint_failed + builds_failed))
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
