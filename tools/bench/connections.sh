#!/usr/bin/env bash
# The most-connections scenario of docs/benchmarks.md: TOTAL logged-in
# connections held at once by the gateway on this machine, with heartbeats,
# over the batched contract. One process may hold only `ulimit -Hn` fds, so
# when TOTAL is above that the gateway runs as several instances sharing one
# port (--reuse-port; the kernel spreads the connections) and the load comes
# from several gatehouse-bench processes, each from its own loopback source
# address (one address allows ~28k connections to one port). Prints every
# bench's JSON line, each instance's open connections while they are held,
# and the totals: connections, errors, gateway RSS and PSS per connection.
#
#   tools/bench/connections.sh [TOTAL]     (default 50000; needs a built tree)
#   HOLD_SECONDS=10 CONNECT_RATE=3000 ...
#   INSTANCES=N ...      instances (and bench processes) regardless of the fd limit
#   BUILD_DIR=build ...  the build tree to take the binaries from
set -euo pipefail
cd "$(dirname "$0")/../.."

total=${1:-50000}
hold=${HOLD_SECONDS:-10}
rate=${CONNECT_RATE:-3000}
port=${GATEHOUSE_BENCH_PORT:-18890}
game_port=${GATEHOUSE_BENCH_GAME_PORT:-15052}
out=${OUT_DIR:-$(mktemp -d /tmp/gatehouse-connections.XXXXXX)}
build=${BUILD_DIR:-build}

# Every process keeps ~1000 fds of headroom (rings, gRPC, logs).
fds=$(ulimit -Hn)
per_process=$((fds - 1000))
procs=$(((total + per_process - 1) / per_process))
# The kernel's split is a hash, not exact: room for 10 % more per instance.
max_connections=$((total / procs + total / procs / 10))
[ "$max_connections" -le "$per_process" ] || procs=$((procs + 1))
procs=${INSTANCES:-$procs}
max_connections=$((total / procs + total / procs / 10 + 100))

cleanup() {
  for pid in ${gateways:-} ${game:-}; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

echo "machine: $(nproc) CPUs, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -r); fd limit $fds per process"
echo "$total connections: $procs gateway instance(s) on port $port (--reuse-port), $procs bench process(es); raw results in $out"

setsid "$build/examples/gatehouse-demo-game" --listen "127.0.0.1:$game_port" >"$out/game.log" 2>&1 &
game=$!
# The game serves before any gateway starts: a bridge that finds nobody on
# the port kicks the sessions logging in meanwhile (backend_unavailable).
for _ in $(seq 600); do grep -q "listening on" "$out/game.log" && break; sleep 0.1; done
grep -q "listening on" "$out/game.log" || { echo "the demo game did not start:" >&2; cat "$out/game.log" >&2; exit 1; }
gateways=
metrics_ports=()
for i in $(seq "$procs"); do
  "$build/bin/gatehouse" --instance "connections-$$-$i" --listen "127.0.0.1:$port" --reuse-port \
    --backend "batch:127.0.0.1:$game_port" --rpm-limit 0 --connect-rate 0 --connect-rate-per-ip 0 --max-connections "$max_connections" \
    --metrics-listen 127.0.0.1:0 --ready-file "$out/ready-$i" --log-level warn \
    >"$out/gateway-$i.log" 2>&1 &
  gateways="$gateways $!"
  for _ in $(seq 600); do [ -s "$out/ready-$i" ] && break; sleep 0.1; done
  metrics_ports+=("$(grep '^metrics=' "$out/ready-$i" | sed 's/.*://')")
done
read -ra gateway_pids <<<"$gateways"

benches=()
for i in $(seq "$procs"); do
  n=$((total / procs + (i <= total % procs ? 1 : 0)))
  "$build/tools/gatehouse-bench" -q --idle "$n" -d "$hold" --connect-rate "$rate" \
    --source-addresses "127.0.1.$i" --udid-prefix "b$i-" --rss-tree "${gateway_pids[$((i - 1))]}" \
    "127.0.0.1:$port" >"$out/bench-$i.json" 2>"$out/bench-$i.log" &
  benches+=($!)
done

# While they are held: each instance's share, from its /metrics (bash's
# /dev/tcp, so that nothing beyond the build is needed).
open_of() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1" && printf 'GET /metrics HTTP/1.0\r\n\r\n' >&3 && cat <&3) 2>/dev/null |
    awk '/^gatehouse_connections_open / {print $2}'
}
peak=0
for _ in $(seq $((hold * 10 + 600))); do
  sum=0
  shares=
  for p in "${metrics_ports[@]}"; do
    o=$(open_of "$p")
    o=${o%.*}
    sum=$((sum + ${o:-0}))
    shares="$shares ${o:-0}"
  done
  if [ "$sum" -gt "$peak" ]; then peak=$sum; peak_shares=$shares; fi
  [ "$sum" -ge "$total" ] && break
  kill -0 "${benches[0]}" 2>/dev/null || break
  sleep 0.1
done
echo "open connections per instance at the peak:${peak_shares:-} (total $peak)"

status=0
for b in "${benches[@]}"; do wait "$b" || status=1; done
cat "$out"/bench-*.json
# Memory per connection: each instance's growth from before the first
# connect to the hold (each bench measures one instance's process tree),
# over every connection held.
awk -F'[:,}]' '
  { for (i = 1; i < NF; i++) {
      if ($i == "\"idle_connections\"") c += $(i + 1)
      if ($i == "\"errors\"") e += $(i + 1)
      if ($i == "\"gateway_rss_kib\"") r += $(i + 1)
      if ($i == "\"gateway_rss_baseline_kib\"") r -= $(i + 1)
      if ($i == "\"gateway_pss_kib\"") p += $(i + 1)
      if ($i == "\"gateway_pss_baseline_kib\"") p -= $(i + 1)
  } }
  END { printf "total: %d connections held, %d errors; gateway RSS %.0f B, PSS %.0f B per connection\n",
        c, e, (c ? r * 1024 / c : 0), (c ? p * 1024 / c : 0) }' "$out"/bench-*.json
exit "$status"
