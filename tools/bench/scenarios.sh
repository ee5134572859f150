#!/usr/bin/env bash
# The benchmark scenarios of docs/benchmarks.md, against the Go original and
# the gateway in the same run: starts the demo game service, a gateway per
# Gatehouse contract (gonet2: one gRPC stream per session; batch: the batched
# contract) and gonet2's agent (the Go original, ../shared/go-original), all
# side by side on loopback and behind that same game process; runs every
# scenario RUNS rounds with build/tools/gatehouse-bench, the targets
# alternating (round 1: go, gonet2, batch, round 2: go, gonet2, ...) so that
# the medians of each target share the machine's phases; then prints per
# scenario and target the median (and range) of msgs/s, p50 and p99, the CPU
# time per message of the gateway's processes (--rss-tree: for the Go
# original the agent process alone, not etcd nor a game) and of the bench,
# the raw JSON lines in $OUT_DIR, and a markdown table of it all with the
# ratios of each contract to the Go original. Also measures the same-run
# baseline: gRPC echo alone against the demo game
# (build/tests/demo-game/game_server_bench), the ceiling of the gonet2
# contract on this machine.
#
#   tools/bench/scenarios.sh [RUNS]        (default 3; needs a built tree)
#   SECONDS_PER_RUN=4 CONTRACTS="go gonet2 batch" SCENARIOS="pp1-enc w16-1000-enc" ...
#     (-enc: legacy DH + RC4; -modern: X25519 + ChaCha20-Poly1305, -modern-aes
#     with AES-256-GCM; -clear: none; idle-N: memory per idle logged-in
#     connection, PSS growth over N held connections)
#   GATEWAY_CPUS=0 GAME_CPUS=1 BENCH_CPUS=1 ...   pin each side (taskset
#     lists; GATEWAY_CPUS pins the Go agent too)
#   BUILD_DIR=build-rel ...   the built tree to run (default build); without
#     its tests (GATEHOUSE_TESTS=OFF) the gRPC baseline is skipped
#   CONTRACTS="go gonet2 gonet2:f2 gonet2:b2" ...   a Gatehouse target
#     CONTRACT:fN runs N frontends (--frontends N), CONTRACT:bN N bridges
#     (--bridges N), side by side with the others
#   SOURCES=16 ...   the bench connects from 127.0.0.1 .. 127.0.0.SOURCES (its
#     --source-addresses, for every target): clients that look like SOURCES
#     hosts, so that the frontends' spread by address has addresses to spread
#     (default 16 when a target runs several frontends, else 1)
#
# The go target needs the Go original built first (the script says how if it
# is not): ../shared/go-original/build.sh SNAPSHOT_GIT_DIR, into GO_ORIG_DIR
# (default ${TMPDIR:-/tmp}/gonet2-agent, as build.sh's), its logs going to
# $OUT_DIR/go-original. start.sh always starts a second demo game of its own;
# the agent is moved off it onto this script's demo game through etcd (see
# go_orig_start in tools/bench/lib.sh), so that second instance stays idle and
# every target is measured behind the same game process. The Go original
# speaks the legacy crypto only: the -modern scenarios have no go column.
# idle-N runs get a fresh target each (stopped and started again before the
# run): memory a process freed stays with it.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=tools/bench/lib.sh
. tools/bench/lib.sh

runs=${1:-3}
build=${BUILD_DIR:-build}
secs=${SECONDS_PER_RUN:-4}
contracts=${CONTRACTS:-"go gonet2 batch"}
scenarios=${SCENARIOS:-"pp1-enc pp1-modern pp1-clear pp100-enc w16-1000-enc w16-1000-modern w16-1000-modern-aes w16-1000-clear idle-10000"}
port=${GATEHOUSE_BENCH_PORT:-18888}
game_port=${GATEHOUSE_BENCH_GAME_PORT:-15051}
# Each Gatehouse contract's gateway listens on a port of its own.
declare -A gw_pid=() gw_port=()
i=0
has_go=
several_frontends=
for c in $contracts; do
  case $c in
    go) has_go=1 ;;
    gonet2 | batch) gw_port[$c]=$((port + i)); i=$((i + 1)) ;;
    gonet2:f[1-8] | batch:f[1-8])
      gw_port[$c]=$((port + i)); i=$((i + 1))
      [ "${c#*:f}" -gt 1 ] && several_frontends=1 ;;
    gonet2:b[1-8] | batch:b[1-8]) gw_port[$c]=$((port + i)); i=$((i + 1)) ;;
    *) echo "unknown contract $c (go, gonet2, batch; gonet2:fN, batch:fN, gonet2:bN, batch:bN)" >&2
       exit 2 ;;
  esac
done
sources=${SOURCES:-$([ -n "$several_frontends" ] && echo 16 || echo 1)}
source_args=
if [ "$sources" -gt 1 ]; then
  source_args="--source-addresses $(seq -s, -f '127.0.0.%g' 1 "$sources")"
fi
if [ -n "$has_go" ]; then go_orig_require 'or leave go out of CONTRACTS (CONTRACTS="gonet2 batch")'; fi

out=${OUT_DIR:-$(mktemp -d /tmp/gatehouse-bench.XXXXXX)}
mkdir -p "$out"
# Optional CPU placement: "taskset -c LIST" prefixes.
pin() { if [ -n "$1" ]; then echo "taskset -c $1"; fi; }
gateway_pin=$(pin "${GATEWAY_CPUS:-}")
game_pin=$(pin "${GAME_CPUS:-}")
bench="$(pin "${BENCH_CPUS:-}") $build/tools/gatehouse-bench $source_args"

args_of() {
  case $1 in
    pp1-enc) echo "-c 1 --encrypt" ;;
    pp1-modern) echo "-c 1 --crypto modern --gateway-key $out/gateway.key.pub" ;;
    pp1-clear) echo "-c 1" ;;
    pp100-enc) echo "-c 100 --encrypt" ;;
    w16-1000-enc) echo "-c 1000 -w 16 --encrypt" ;;
    w16-1000-modern) echo "-c 1000 -w 16 --crypto modern --gateway-key $out/gateway.key.pub" ;;
    w16-1000-modern-aes)
      echo "-c 1000 -w 16 --crypto modern --gateway-key $out/gateway.key.pub --aead aes-256-gcm" ;;
    w16-1000-clear) echo "-c 1000 -w 16" ;;
    idle-[0-9]*) echo "--idle ${1#idle-}" ;;
    *) echo "unknown scenario $1" >&2; exit 2 ;;
  esac
}
for s in $scenarios; do args_of "$s" >/dev/null; done
is_idle() { [ "${1#idle-}" != "$1" ]; }
# The Go original has the legacy key exchange (DH + RC4) or none.
go_can() { case $1 in *-modern*) return 1 ;; esac; }

cleanup() {
  local c
  for c in "${!gw_pid[@]}"; do gateway_stop "${gw_pid[$c]}" || true; done
  if [ -n "${game:-}" ]; then kill "$game" 2>/dev/null || true; wait "$game" 2>/dev/null || true; fi
  go_orig_stop
}
trap cleanup EXIT

# shellcheck disable=SC2086
setsid $game_pin "$build/examples/gatehouse-demo-game" --listen "127.0.0.1:$game_port" >"$out/game.log" 2>&1 &
game=$!
sleep 0.5

echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(uname -r), $(date -u '+%F %H:%M UTC')"
echo "runs: $runs x ${secs}s per scenario and target ($contracts), alternating; raw results in $out"
echo "cpus: gateway ${GATEWAY_CPUS:-any}, game ${GAME_CPUS:-any}, bench ${BENCH_CPUS:-any}; bench source addresses: $sources"

echo "== baseline: gRPC echo alone (game_server_bench -> demo game), same run"
baselines="1 1 4000,100 16 400,1000 16 100"
[ -x "$build/tests/demo-game/game_server_bench" ] || { echo "(skipped: $build has no tests)"; baselines=; }
IFS=, read -ra baselines <<<"$baselines"
for spec in "${baselines[@]}"; do
  # shellcheck disable=SC2086
  set -- $spec
  for r in $(seq "$runs"); do
    # (It has been seen to crash on its way out, after its line: noted, not fatal.)
    # shellcheck disable=SC2086
    $(pin "${BENCH_CPUS:-}") "$build/tests/demo-game/game_server_bench" --target "127.0.0.1:$game_port" --streams "$1" \
      --window "$2" --messages "$3" >>"$out/grpc-$1x$2.json" || echo "  (run $r of grpc $1x$2 exited $?)"
  done
  echo "grpc streams=$1 window=$2: echoes/s $(median_of echoes_per_second "$out/grpc-$1x$2.json")"
done

# The modern scenarios pin this key (version 2 of the exchange).
[ -f "$out/gateway.key" ] || "$build/bin/gatehouse" keygen --out "$out/gateway.key" >/dev/null
# The agent's threads where the gateway's processes go (threads it makes later
# inherit it).
pin_go() { if [ -n "${GATEWAY_CPUS:-}" ]; then taskset -a -p -c "$GATEWAY_CPUS" "$go_pid" >/dev/null; fi; }
start_target() {
  if [ "$1" = go ]; then
    go_orig_start "127.0.0.1:$game_port"
    pin_go
    return
  fi
  local backend="127.0.0.1:$game_port" frontends=1 bridges=1
  [ "${1%%:*}" = batch ] && backend="batch:$backend"
  case $1 in *:f*) frontends=${1#*:f} ;; *:b*) bridges=${1#*:b} ;; esac
  # shellcheck disable=SC2086
  gateway_start "$out/ready-$1" "$out/gateway-$1.log" $gateway_pin "$build/bin/gatehouse" \
    --instance "bench-$$-${1/:/-}" --listen "127.0.0.1:${gw_port[$1]}" --backend "$backend" \
    --frontends "$frontends" --bridges "$bridges" \
    --gateway-key "$out/gateway.key" --rpm-limit 0 --connect-rate 0 --connect-rate-per-ip 0 \
    --max-connections 20000 --metrics-listen 127.0.0.1:0 --log-level warn
  gw_pid[$1]=$gw
}
restart_target() {
  if [ "$1" = go ]; then
    go_orig_restart "127.0.0.1:$game_port"
    pin_go
  else
    gateway_stop "${gw_pid[$1]}"
    unset "gw_pid[$1]"
    start_target "$1"
  fi
}
export GO_ORIG_LOGS=$out/go-original
for c in $contracts; do start_target "$c"; done

for r in $(seq "$runs"); do
  echo "== round $r of $runs"
  for s in $scenarios; do
    for c in $contracts; do
      if [ "$c" = go ] && ! go_can "$s"; then continue; fi
      # Memory per connection is measured on a fresh target each run: one
      # that served earlier runs keeps their slot pages and allocator caches.
      if is_idle "$s"; then restart_target "$c"; fi
      if [ "$c" = go ]; then pid=$go_pid p=$go_port; else pid=${gw_pid[$c]} p=${gw_port[$c]}; fi
      # shellcheck disable=SC2046,SC2086
      $bench -q $(args_of "$s") -d "$secs" --rss-tree "$pid" "127.0.0.1:$p" >>"$out/$c-$s.json" ||
        echo "  (round $r of $c $s reported errors)"
    done
  done
done

for s in $scenarios; do
  for c in $contracts; do
    f="$out/$c-$s.json"
    [ -f "$f" ] || continue
    if is_idle "$s"; then
      echo "$s $c: bytes per connection: RSS summed over the measured processes $(median_of rss_per_connection_bytes "$f"), PSS $(median_of pss_per_connection_bytes "$f"); errors $(median_of errors "$f")"
    else
      echo "$s $c: msgs/s $(median_of msgs_per_s "$f") p50_us $(median_of p50_us "$f") p99_us $(median_of p99_us "$f") errors $(median_of errors "$f")"
      echo "  CPU us per message: gateway (or agent) $(median_of gateway_cpu_us_per_msg "$f"), bench $(median_of bench_cpu_us_per_msg "$f")"
    fi
  done
done

# The summary: medians [ranges] per scenario and target, then each contract's
# ratio to the Go original (its median over the Go original's).
# ratio_of FIELD: the median of FIELD in $f over that in $g ("-" if either
# has none, or $g's is 0).
ratio_of() {
  awk -v a="$(median "$1" "$f")" -v b="$(median "$1" "$g")" \
    'BEGIN {if (a == "" || b == "" || b + 0 == 0) print "-"; else printf "%.2fx", a / b}'
}
echo
echo "## Summary: medians [min..max] of $runs runs (go: gonet2's agent, the Go original)"
echo
echo "| scenario | target | msgs/s | p50 us | p99 us | CPU us/msg (gateway or agent) | PSS bytes/conn | errors |"
echo "|---|---|---|---|---|---|---|---|"
for s in $scenarios; do
  for c in $contracts; do
    f="$out/$c-$s.json"
    [ -f "$f" ] || continue
    if is_idle "$s"; then
      echo "| $s | $c | - | - | - | - | $(median_of pss_per_connection_bytes "$f") | $(median_of errors "$f") |"
    else
      echo "| $s | $c | $(median_of msgs_per_s "$f" 0) | $(median_of p50_us "$f") | $(median_of p99_us "$f") | $(median_of gateway_cpu_us_per_msg "$f") | - | $(median_of errors "$f") |"
    fi
  done
  g="$out/go-$s.json"
  [ -f "$g" ] || continue
  for c in $contracts; do
    f="$out/$c-$s.json"
    if [ "$c" = go ] || [ ! -f "$f" ]; then continue; fi
    if is_idle "$s"; then
      echo "| $s | $c / go | - | - | - | - | $(ratio_of pss_per_connection_bytes) | |"
    else
      echo "| $s | $c / go | $(ratio_of msgs_per_s) | $(ratio_of p50_us) | $(ratio_of p99_us) | $(ratio_of gateway_cpu_us_per_msg) | - | |"
    fi
  done
done
if [ -n "$has_go" ]; then
  echo
  echo "Ratios: the contract's median over the Go original's (msgs/s: higher is better; p50, p99, CPU and bytes: lower is better)."
fi
