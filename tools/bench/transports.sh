#!/usr/bin/env bash
# Every transport in the same run (docs/benchmarks.md, "Transports"): starts
# the demo game service and the gateway listening with transport=tcp+kcp
# (gonet2's KCP defaults) on PORT and tls, ws and wss on PORT+1..3 (an
# ECDSA P-256 certificate made here with openssl) and, when GO_ORIG_DIR holds
# a Go original built with GO_ORIG_KEEP_UDP=1 (../shared/go-original/build.sh),
# gonet2's agent serving KCP on its TCP port too (tcp and kcp only; moved onto
# the same demo game, see go_orig_start in tools/bench/lib.sh); then runs
# each scenario over each transport against each target, alternating, RUNS
# rounds, and prints the median [min..max] of msgs/s, p50, p99 and the
# gateway's CPU time per message (--rss-tree), raw JSON lines in $OUT_DIR.
# The idle-N scenarios hold N logged-in connections instead: the gateway's
# CPU per connection set up (accept, TLS handshake, upgrade, login, game
# stream), connections set up per second, and its memory per connection
# (PSS growth of all its processes; a fresh gateway for each such run).
#
#   tools/bench/transports.sh [RUNS]     (default 3; needs a built tree)
#   SECONDS_PER_RUN=3 SCENARIOS="pp1-enc pp100-enc w16-100-enc w16-100-clear idle-2000" \
#     TRANSPORTS="tcp kcp tls ws wss" ...
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=tools/bench/lib.sh
. tools/bench/lib.sh

runs=${1:-3}
secs=${SECONDS_PER_RUN:-3}
scenarios=${SCENARIOS:-"pp1-enc pp100-enc w16-100-enc idle-2000"}
transports=${TRANSPORTS:-"tcp kcp tls ws wss"}
out=${OUT_DIR:-$(mktemp -d /tmp/gatehouse-transports.XXXXXX)}
mkdir -p "$out"
port=${GATEHOUSE_BENCH_PORT:-18898}
game_port=${GATEHOUSE_BENCH_GAME_PORT:-15061}

args_of() {
  case $1 in
    pp1-enc) echo "-c 1 --encrypt" ;;
    pp100-enc) echo "-c 100 --encrypt" ;;
    w16-100-enc) echo "-c 100 -w 16 --encrypt" ;;
    w16-100-clear) echo "-c 100 -w 16" ;;
    # As fast as both sides can set them up, then held for the memory sample.
    idle-*) echo "--idle ${1#idle-} --connect-rate 1000000 --timeout 30" ;;
    *) echo "unknown scenario $1" >&2; exit 2 ;;
  esac
}

cleanup() {
  if [ -n "${gw:-}" ]; then gateway_stop "$gw"; fi
  if [ -n "${game:-}" ]; then kill "$game" 2>/dev/null; wait "$game" 2>/dev/null || true; fi
  go_orig_stop
}
trap cleanup EXIT

# The listener of each transport, and what the bench needs to trust it.
port_of() {
  case $1 in
    tcp | kcp) echo "$port" ;;
    tls) echo $((port + 1)) ;;
    ws) echo $((port + 2)) ;;
    wss) echo $((port + 3)) ;;
  esac
}
tls_args_of() {
  case $1 in
    tls | wss) echo "--tls-ca $out/cert.pem --tls-name localhost" ;;
  esac
}
(umask 077 && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -keyout "$out/key.pem" -out "$out/cert.pem" -days 2 -subj /CN=localhost \
  -addext subjectAltName=DNS:localhost 2>/dev/null)

setsid build/examples/gatehouse-demo-game --listen "127.0.0.1:$game_port" >"$out/game.log" 2>&1 &
game=$!
start_gateway() {
  gateway_start "$out/ready" "$out/gateway.log" build/bin/gatehouse --instance "transports-$$" \
    --listen "127.0.0.1:$port,transport=tcp+kcp" --listen "127.0.0.1:$(port_of tls),transport=tls" --listen "127.0.0.1:$(port_of ws),transport=ws" \
    --listen "127.0.0.1:$(port_of wss),transport=wss" --tls-cert "$out/cert.pem" \
    --tls-key "$out/key.pem" --backend "127.0.0.1:$game_port" --rpm-limit 0 --connect-rate 0 \
    --connect-rate-per-ip 0 --udp-pending-sessions 100000 --metrics-listen 127.0.0.1:0 \
    --log-level warn
}
start_gateway

targets="gateway:$port"
if [ -n "${GO_ORIG_DIR:-}" ] && go_orig_built; then
  export GO_ORIG_LOGS=$out/go-original
  go_orig_start "127.0.0.1:$game_port"
  targets="$targets go:$go_port"
fi
sleep 0.5

echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(uname -r), $(date -u '+%F %H:%M UTC')"
echo "runs: $runs x ${secs}s per scenario, transport and target, alternating; raw results in $out"
for r in $(seq "$runs"); do
  for s in $scenarios; do
    for t in $targets; do
      IFS=: read -r name p <<<"$t"
      for tr in $transports; do
        case $name:$tr in go:tls | go:ws | go:wss) continue ;; esac
        pid=${go_pid:-}
        if [ "$name" = gateway ]; then
          p=$(port_of "$tr")
          # Memory per connection is the growth of a gateway that has not
          # held connections before (freed memory stays with the processes).
          case $s in idle-*)
            gateway_stop "$gw"
            start_gateway
            ;;
          esac
          pid=$gw
        fi
        # shellcheck disable=SC2046
        build/tools/gatehouse-bench -q --transport "$tr" -d "$secs" $(args_of "$s") \
          $(tls_args_of "$tr") --rss-tree "$pid" "127.0.0.1:$p" >>"$out/$name-$tr-$s.json" ||
          echo "  (round $r of $name $tr $s reported errors)"
      done
    done
  done
done
for s in $scenarios; do
  for t in $targets; do
    name=${t%%:*}
    for tr in $transports; do
      f="$out/$name-$tr-$s.json"
      [ -f "$f" ] || continue
      case $s in
        idle-*) echo "$s $name $tr: connects/s $(median_of connects_per_s "$f") cpu_us/connect $(median_of gateway_cpu_us_per_connect "$f") pss_bytes/conn $(median_of pss_per_connection_bytes "$f") rss_bytes/conn $(median_of rss_per_connection_bytes "$f") errors $(median_of errors "$f")" ;;
        *) echo "$s $name $tr: msgs/s $(median_of msgs_per_s "$f") p50_us $(median_of p50_us "$f") p99_us $(median_of p99_us "$f") cpu_us/msg $(median_of gateway_cpu_us_per_msg "$f") errors $(median_of errors "$f")" ;;
      esac
    done
  done
done
