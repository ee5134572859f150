#!/usr/bin/env bash
# The tree's lint, warnings as errors (part of the test command, tools/test.sh):
#
#   tools/lint.sh format            clang-format-14 --dry-run on every C++ file
#   tools/lint.sh tidy BUILD_DIR    clang-tidy-14 (.clang-tidy) on every C++
#                                   source in BUILD_DIR's compile_commands.json
#   tools/lint.sh tidy BUILD_DIR --record
#                                   the same; when it passes, records every
#                                   file's hash in .ci/tidy-clean (commit it)
#   tools/lint.sh tidy BUILD_DIR --changed
#                                   only the sources whose findings may differ
#                                   from the recorded clean pass: changed or
#                                   new sources, and those that include a
#                                   changed header, directly or not (all of
#                                   them when .clang-tidy changed). What the
#                                   test command runs: a whole pass costs half
#                                   an hour of CPU on two cores. With --record
#                                   too, a pass records the tree as clean
#                                   (the rest was clean already).
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

# The sources whose tidy findings may differ from the clean pass recorded
# in $1 (sha256sum lines): the changed or new ones, then every source that
# includes a changed header, directly or through other headers (by file
# name: a name two headers share costs extra files, never a missed one).
# Every source when the record or .clang-tidy is not as recorded.
tidy_changed() {
  local record=$1
  declare -A clean=()
  if [ -f "$record" ]; then
    while read -r sum path; do clean[$path]=$sum; done <"$record"
  fi
  local all changed=() sum path
  mapfile -t all < <(sources '*.h' '*.cc')
  while read -r sum path; do
    [ "${clean[$path]:-}" = "$sum" ] || changed+=("$path")
  done < <(sha256sum .clang-tidy "${all[@]}")
  if [ ! -f "$record" ] || [ "${changed[0]:-}" = .clang-tidy ]; then
    printf '%s\n' "${all[@]}" | grep '\.cc$'
    return
  fi
  declare -A seen=() out=()
  local queue=() f includer
  for f in "${changed[@]}"; do
    case $f in *.cc) out[$f]=1 ;; *.h) queue+=("$f") seen[$f]=1 ;; esac
  done
  while [ "${#queue[@]}" -gt 0 ]; do
    f=${queue[0]}
    queue=("${queue[@]:1}")
    while read -r includer; do
      case $includer in
        *.cc) out[$includer]=1 ;;
        *.h) [ -n "${seen[$includer]:-}" ] || { seen[$includer]=1; queue+=("$includer"); } ;;
      esac
    done < <(grep -lE "#include [\"<]([^\">]*/)?$(basename "$f")[\">]" "${all[@]}" || true)
  done
  [ "${#out[@]}" -eq 0 ] || printf '%s\n' "${!out[@]}" | sort
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
    build=${2:?usage: tools/lint.sh tidy BUILD_DIR [--changed] [--record]}
    shift 2
    changed=0 record_it=0
    for option in "$@"; do
      case $option in
        --changed) changed=1 ;;
        --record) record_it=1 ;;
        *) echo "lint: tidy: unknown option $option" >&2; exit 2 ;;
      esac
    done
    [ -f "$build/compile_commands.json" ] || { echo "lint: no $build/compile_commands.json" >&2; exit 1; }
    record=.ci/tidy-clean
    if [ "$changed" -eq 1 ]; then
      mapfile -t candidates < <(tidy_changed "$record")
    else
      mapfile -t candidates < <(sources '*.cc')
    fi
    # The sources the build compiles (a fuzz target is built by the fuzz
    # build only, with clang).
    mapfile -t files < <(for f in "${candidates[@]}"; do
      grep -q "\"file\": \"$PWD/$f\"" "$build/compile_commands.json" && echo "$f"; done)
    log=$(mktemp)
    hashes=$(mktemp)
    trap 'rm -f "$log" "$hashes"' EXIT
    # What a recorded pass checked: the files as they were when it started.
    [ "$record_it" -eq 0 ] || { echo .clang-tidy; sources '*.h' '*.cc'; } | xargs sha256sum >"$hashes"
    # One clang-tidy per file, as many at once as there are cores.
    if [ "${#files[@]}" -gt 0 ]; then
      printf '%s\n' "${files[@]}" |
        xargs -P "$(nproc)" -I{} sh -c 'clang-tidy-14 -p "$0" --quiet "$1" 2>/dev/null' "$build" {} \
          >"$log" || true
    fi
    if grep -qE '(warning|error):' "$log"; then
      grep -E '(warning|error):' -A3 "$log" >&2
      echo "lint: tidy: failed ($(grep -cE '(warning|error):' "$log") findings)" >&2
      exit 1
    fi
    if [ "$record_it" -eq 1 ]; then
      mkdir -p "$(dirname "$record")"
      cp "$hashes" "$record"
      echo "lint: tidy: recorded in $record"
    fi
    echo "lint: tidy: passed (${#files[@]} files$([ "$changed" -eq 0 ] || echo ", changed since the record"))"
    ;;
  *)
    sed -n '2,10p' "$0" >&2
    exit 2
    ;;
esac
