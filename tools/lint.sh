#!/usr/bin/env bash
# The tree's lint, warnings as errors (part of the test command, tools/test.sh):
#
#   tools/lint.sh format            clang-format-14 --dry-run on every C++ file
#   tools/lint.sh tidy BUILD_DIR    clang-tidy-14 (.clang-tidy) on every C++
#                                   source in BUILD_DIR's compile_commands.json
#   tools/lint.sh fix-format        rewrites the files clang-format would change
#
# Both read the checked-in configurations (.clang-format, .clang-tidy) and
# print "lint: <what>: passed" or the findings, exiting 1 on any.
set -euo pipefail
cd "$(dirname "$0")/.."

# Every C++ file of ours (tracked or new), never generated code.
sources() {
  git ls-files --cached --others --exclude-standard -- "$@" | grep -v '^build/' |
    while read -r f; do [ -f "$f" ] && echo "$f"; done
}

# A missing tool is a failure, never a silent pass.
need() {
  command -v "$1" >/dev/null || { echo "lint: $1 is not installed (tools/setup.sh installs it)" >&2; exit 1; }
}

case ${1:-} in
  format)
    need clang-format-14
    mapfile -t files < <(sources '*.h' '*.cc')
    if ! clang-format-14 --dry-run --Werror "${files[@]}"; then
      echo "lint: format: failed (tools/lint.sh fix-format rewrites them)" >&2
      exit 1
    fi
    echo "lint: format: passed (${#files[@]} files)"
    ;;
  fix-format)
    need clang-format-14
    mapfile -t files < <(sources '*.h' '*.cc')
    clang-format-14 -i "${files[@]}"
    ;;
  tidy)
    need clang-tidy-14
    build=${2:?usage: tools/lint.sh tidy BUILD_DIR}
    [ -f "$build/compile_commands.json" ] || { echo "lint: no $build/compile_commands.json" >&2; exit 1; }
    # The sources the build compiles (a fuzz target is built by the fuzz
    # build only, with clang).
    mapfile -t files < <(sources '*.cc' | while read -r f; do
      grep -q "\"file\": \"$PWD/$f\"" "$build/compile_commands.json" && echo "$f"; done)
    log=$(mktemp)
    trap 'rm -f "$log"' EXIT
    # One clang-tidy per file, as many at once as there are cores.
    printf '%s\n' "${files[@]}" |
      xargs -P "$(nproc)" -I{} sh -c 'clang-tidy-14 -p "$0" --quiet "$1" 2>/dev/null' "$build" {} \
        >"$log" || true
    if grep -qE '(warning|error):' "$log"; then
      grep -E '(warning|error):' -A3 "$log" >&2
      echo "lint: tidy: failed ($(grep -cE '(warning|error):' "$log") findings)" >&2
      exit 1
    fi
    echo "lint: tidy: passed (${#files[@]} files)"
    ;;
  *)
    sed -n '2,10p' "$0" >&2
    exit 2
    ;;
esac
