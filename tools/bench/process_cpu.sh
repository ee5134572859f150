#!/usr/bin/env bash
# CPU per message of each gateway process, for the capacity model in
# docs/benchmarks.md: starts the demo game service and a gateway, loads it
# with gatehouse-bench (1000 connections x window 16, legacy-encrypted 64 B
# echoes, from SOURCES loopback addresses), and while the load runs measures
# each process's CPU time (perf stat task-clock, with its context switches
# and syscalls) over the same seconds; each is divided by the messages the
# bench echoed in those seconds (from the bench's own rate). Prints one line
# per process and round, then the median per process.
#
#   tools/bench/process_cpu.sh [ROUNDS]       (default 3; needs linux-perf)
#   BUILD_DIR=build-rel CONTRACT=gonet2|batch FRONTENDS=1 BRIDGES=1 WORKERS=1 SOURCES=16 ...
set -euo pipefail
cd "$(dirname "$0")/../.."

rounds=${1:-3}
build=${BUILD_DIR:-build}
contract=${CONTRACT:-gonet2}
frontends=${FRONTENDS:-1}
bridges=${BRIDGES:-1}
workers=${WORKERS:-1}
sources=${SOURCES:-16}
game_port=${GATEHOUSE_BENCH_GAME_PORT:-15071}
port=${GATEHOUSE_BENCH_PORT:-18871}
measure_s=4
command -v perf >/dev/null || { echo "$0: needs perf (Debian package linux-perf)" >&2; exit 2; }

out=$(mktemp -d /tmp/gatehouse-process-cpu.XXXXXX)
game=''
gw=''
cleanup() {
  [ -n "$gw" ] && { kill -TERM "$gw" 2>/dev/null || true; wait "$gw" 2>/dev/null || true; }
  [ -n "$game" ] && { kill "$game" 2>/dev/null || true; wait "$game" 2>/dev/null || true; }
}
trap cleanup EXIT

"$build/examples/gatehouse-demo-game" --listen "127.0.0.1:$game_port" >"$out/game.log" 2>&1 &
game=$!
backend="127.0.0.1:$game_port"
[ "$contract" = batch ] && backend="batch:$backend"
"$build/bin/gatehouse" --instance "cpu-$$" --listen "127.0.0.1:$port" --backend "$backend" \
  --workers "$workers" --frontends "$frontends" --bridges "$bridges" --rpm-limit 0 --connect-rate 0 \
  --connect-rate-per-ip 0 --max-connections 20000 --metrics-listen 127.0.0.1:0 \
  --log-level warn --ready-file "$out/ready" >"$out/gateway.log" 2>&1 &
gw=$!
for _ in $(seq 300); do [ -f "$out/ready" ] && break; sleep 0.1; done
[ -f "$out/ready" ] || { echo "$0: the gateway did not start: $(tail -3 "$out/gateway.log")" >&2; exit 1; }
sleep 0.5

# The gateway's children by role (frontends, workers, bridges) and the game.
processes() {
  local p
  for p in $(pgrep -P "$gw"); do
    case $(cat "/proc/$p/comm") in
      gatehouse-front*) echo "frontend:$p" ;;
      gatehouse-worke*) echo "worker:$p" ;;
      gatehouse-bridg*) echo "bridge:$p" ;;
    esac
  done
  echo "game:$game"
}

echo "machine: $(nproc) CPUs, $(uname -r), $(date -u '+%F %H:%M UTC'); $contract contract," \
  "$frontends frontend(s), $workers worker(s), $bridges bridge(s), bench from $sources addresses"
for r in $(seq "$rounds"); do
  "$build/tools/gatehouse-bench" -q -c 1000 -w 16 --encrypt -d $((measure_s + 6)) \
    --source-addresses "$(seq -s, -f '127.0.0.%g' 1 "$sources")" "127.0.0.1:$port" \
    >"$out/bench-$r.json" &
  bench=$!
  sleep 4
  perfs=()
  for entry in $(processes); do
    role=${entry%%:*} pid=${entry#*:}
    perf stat -x, -e task-clock,context-switches,raw_syscalls:sys_enter -p "$pid" \
      -o "$out/perf-$r-$role-$pid.csv" -- sleep "$measure_s" &
    perfs+=("$!")
  done
  wait "${perfs[@]}"
  wait "$bench"
  rate=$(sed -n 's/.*"msgs_per_s":\([0-9.]*\).*/\1/p' "$out/bench-$r.json")
  # Each role's processes summed (several frontends, workers or bridges).
  for f in "$out"/perf-"$r"-*.csv; do
    awk -F, -v role="$(basename "$f" .csv | cut -d- -f3)" '
      $3 == "task-clock" {cpu = $1} $3 == "context-switches" {cs = $1}
      $3 == "raw_syscalls:sys_enter" {sc = $1}
      END {print role, cpu, sc, cs}' "$f"
  done | awk -v r="$r" -v rate="$rate" -v s="$measure_s" '
      {cpu[$1] += $2; sc[$1] += $3; cs[$1] += $4}
      END {m = rate * s; for (role in cpu)
             printf "round %s %s: %.2f us CPU, %.2f syscalls, %.3f context switches per message (%.0f msgs/s)\n",
                    r, role, cpu[role] * 1000 / m, sc[role] / m, cs[role] / m, rate}' |
    sort -k3 | tee -a "$out/lines"
done
echo "medians of $rounds rounds (us CPU per message):"
awk '{sub(":", "", $3); v[$3] = v[$3] " " $4} END {for (r in v) print r, v[r]}' "$out/lines" |
  while read -r role values; do
    # shellcheck disable=SC2086
    printf '  %s: %s\n' "$role" "$(printf '%s\n' $values | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')"
  done
