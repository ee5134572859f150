#!/usr/bin/env bash
# The benchmark scenarios of docs/benchmarks.md: starts the demo game service
# and the gateway (both contracts in turn), runs every scenario RUNS times with
# build/tools/gatehouse-bench, and prints one line per scenario with the
# median (and range) of msgs/s, p50 and p99, plus the raw JSON lines in
# $OUT_DIR, and the CPU time per message of the gateway's processes and of
# the bench (steadier than the rate on a shared machine). Also measures the
# same-run baseline: gRPC echo alone against the
# demo game (build/tests/demo-game/game_server_bench), the ceiling of the gonet2
# contract on this machine.
#
#   tools/bench/scenarios.sh [RUNS]        (default 3; needs a built tree)
#   SECONDS_PER_RUN=4 CONTRACTS="gonet2 batch" SCENARIOS="pp1-enc w16-1000-enc" ...
#     (-enc: legacy DH + RC4; -modern: X25519 + ChaCha20-Poly1305, -modern-aes
#     with AES-256-GCM; -clear: none)
#   GATEWAY_CPUS=0 GAME_CPUS=1 BENCH_CPUS=1 ...   pin each side (taskset lists)
set -euo pipefail
cd "$(dirname "$0")/../.."

runs=${1:-3}
secs=${SECONDS_PER_RUN:-4}
contracts=${CONTRACTS:-"gonet2 batch"}
scenarios=${SCENARIOS:-"pp1-enc pp1-modern pp1-clear pp100-enc w16-1000-enc w16-1000-modern w16-1000-modern-aes w16-1000-clear idle-10000"}
out=${OUT_DIR:-$(mktemp -d /tmp/gatehouse-bench.XXXXXX)}
mkdir -p "$out"
port=${GATEHOUSE_BENCH_PORT:-18888}
game_port=${GATEHOUSE_BENCH_GAME_PORT:-15051}
# Optional CPU placement: "taskset -c LIST" prefixes.
pin() { if [ -n "$1" ]; then echo "taskset -c $1"; fi; }
gateway_pin=$(pin "${GATEWAY_CPUS:-}")
game_pin=$(pin "${GAME_CPUS:-}")
bench="$(pin "${BENCH_CPUS:-}") build/tools/gatehouse-bench"

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
    idle-10000) echo "--idle 10000" ;;
    *) echo "unknown scenario $1" >&2; exit 2 ;;
  esac
}

# median_of FIELD FILE: "median [min..max]" of a numeric JSON field.
median_of() {
  grep -oE "\"$1\":[0-9.]+" "$2" | cut -d: -f2 | sort -g |
    awk '{v[NR]=$1} END {if (NR==0) {print "-"; exit} m=v[int((NR+1)/2)]; printf "%s [%s..%s]", m, v[1], v[NR]}'
}

cleanup() {
  if [ -n "${gw:-}" ]; then kill -TERM "$gw" 2>/dev/null; wait "$gw" 2>/dev/null || true; fi
  if [ -n "${game:-}" ]; then kill "$game" 2>/dev/null; wait "$game" 2>/dev/null || true; fi
}
trap cleanup EXIT

# shellcheck disable=SC2086
setsid $game_pin build/examples/gatehouse-demo-game --listen "127.0.0.1:$game_port" >"$out/game.log" 2>&1 &
game=$!
sleep 0.5

echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(uname -r)"
echo "runs: $runs x ${secs}s per scenario; raw results in $out"
echo "cpus: gateway ${GATEWAY_CPUS:-any}, game ${GAME_CPUS:-any}, bench ${BENCH_CPUS:-any}"

echo "== baseline: gRPC echo alone (game_server_bench -> demo game), same run"
for spec in "1 1 4000" "100 16 400" "1000 16 100"; do
  set -- $spec
  for r in $(seq "$runs"); do
    # shellcheck disable=SC2086
    $(pin "${BENCH_CPUS:-}") build/tests/demo-game/game_server_bench --target "127.0.0.1:$game_port" --streams "$1" \
      --window "$2" --messages "$3" >>"$out/grpc-$1x$2.json"
  done
  echo "grpc streams=$1 window=$2: echoes/s $(median_of echoes_per_second "$out/grpc-$1x$2.json")"
done

# The modern scenarios pin this key (version 2 of the exchange).
[ -f "$out/gateway.key" ] || build/bin/gatehouse keygen --out "$out/gateway.key" >/dev/null
start_gateway() {
  # shellcheck disable=SC2086
  $gateway_pin build/bin/gatehouse --instance "bench-$$" --listen "127.0.0.1:$port" --backend "$backend" \
    --gateway-key "$out/gateway.key" \
    --rpm-limit 0 --connect-rate 0 --connect-rate-per-ip 0 --max-connections 20000 --metrics-listen 127.0.0.1:0 --log-level warn \
    >>"$out/gateway-$contract.log" 2>&1 &
  gw=$!
  for _ in $(seq 100); do ss -ltn | grep -q ":$port " && break; sleep 0.1; done
  sleep 0.5
}
stop_gateway() {
  kill -TERM "$gw"
  wait "$gw" || true
  gw=
}

for contract in $contracts; do
  backend="127.0.0.1:$game_port"
  [ "$contract" = batch ] && backend="batch:$backend"
  echo "== contract: $contract"
  start_gateway
  for s in $scenarios; do
    file="$out/$contract-$s.json"
    for r in $(seq "$runs"); do
      # Memory per connection is measured on a fresh gateway each run: one
      # that served earlier runs keeps their slot pages and allocator caches.
      if [ "${s#idle}" != "$s" ]; then stop_gateway; start_gateway; fi
      # shellcheck disable=SC2046,SC2086
      $bench -q $(args_of "$s") -d "$secs" --rss-tree "$gw" "127.0.0.1:$port" >>"$file" ||
        echo "  (run $r of $s reported errors)"
    done
    if [ "${s#idle}" != "$s" ]; then
      echo "$s: bytes per connection: RSS summed over the gateway's processes $(median_of rss_per_connection_bytes "$file"), PSS $(median_of pss_per_connection_bytes "$file"); errors $(median_of errors "$file")"
    else
      echo "$s: msgs/s $(median_of msgs_per_s "$file") p50_us $(median_of p50_us "$file") p99_us $(median_of p99_us "$file") errors $(median_of errors "$file")"
      echo "  CPU us per message: gateway $(median_of gateway_cpu_us_per_msg "$file"), bench $(median_of bench_cpu_us_per_msg "$file")"
    fi
  done
  stop_gateway
done
