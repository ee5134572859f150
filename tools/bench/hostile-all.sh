#!/usr/bin/env bash
# Re-measures issue 20's table (docs/security.md): for each row, starts the
# demo game and a gateway from BIN_DIR on free loopback ports (port 0, read
# back), with the default configuration plus only what the row needs (named
# below), runs the row's tools/bench/hostile.py mode and prints one summary
# line per measurement, labelled with its row (rows 6, 8 and 9 take several).
# Every mode's whole output and each gateway's log stay in OUT_DIR.
#
#   tools/bench/hostile-all.sh [BIN_DIR [ROW...]]   (default build/bin, rows 1-9)
#   OUT_DIR=/tmp/x tools/bench/hostile-all.sh /work/hostile-bin 6 7 8 9
#
# BIN_DIR holds gatehouse, gatehouse-frontend/-worker/-bridge,
# gatehouse-demo-game and gatehouse-client.
set -euo pipefail
cd "$(dirname "$0")/../.."

bin=$(realpath "${1:-build/bin}")
shift || true
rows=${*:-"1 2 3 4 5 6 7 8 9"}
out=${OUT_DIR:-$(mktemp -d /tmp/gatehouse-hostile.XXXXXX)}
mkdir -p "$out"
hostile="python3 tools/bench/hostile.py"

game='' gw='' mode=''
# stop: the mode's client, the gateway (it drains and ends its children),
# then the game.
stop() {
  local pid
  for pid in $mode $gw $game; do
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  mode='' gw='' game=''
}
trap stop EXIT
trap 'exit 130' INT TERM

# start NAME [GATEWAY OPTION...]: the demo game, then a gateway in front of it
# (instance hostile-<pid>-NAME: no collision with another run or a test);
# sets port, metrics, log. contract=batch start ...: the game on the batched
# contract (--backend batch:HOST:PORT), else the gonet2 one.
start() {
  local name=$1
  shift
  "$bin/gatehouse-demo-game" --listen 127.0.0.1:0 2>"$out/$name.game.log" &
  game=$!
  local game_port=''
  for _ in $(seq 100); do
    game_port=$(grep -o 'listening on [0-9.]*:[0-9]*' "$out/$name.game.log" | sed 's/.*://' || true)
    [ -n "$game_port" ] && break
    sleep 0.1
  done
  [ -n "$game_port" ] || { echo "demo game did not start: $out/$name.game.log" >&2; exit 1; }
  log=$out/$name.gateway.log
  rm -f "$out/$name.ready"
  [ -f "$out/gateway.key" ] || "$bin/gatehouse" keygen --out "$out/gateway.key" >/dev/null
  "$bin/gatehouse" --instance "hostile-$$-$name" --listen 127.0.0.1:0 \
    --metrics-listen 127.0.0.1:0 --ready-file "$out/$name.ready" \
    --gateway-key "$out/gateway.key" \
    --backend "${contract:+$contract:}127.0.0.1:$game_port" "$@" \
    2>"$log" &
  gw=$!
  for _ in $(seq 200); do
    grep -q '^metrics=' "$out/$name.ready" 2>/dev/null && break
    kill -0 "$gw" 2>/dev/null || { echo "gateway exited: $log" >&2; exit 1; }
    sleep 0.1
  done
  port=$(sed -n 's/^listen=.*://p' "$out/$name.ready")
  metrics=http://$(sed -n 's/^metrics=//p' "$out/$name.ready")/metrics
}

# child_pid NAME: the gateway's child process running $bin/NAME.
child_pid() {
  local p
  for p in $(pgrep -P "$gw"); do
    if [ "$(readlink "/proc/$p/exe")" = "$bin/$1" ]; then echo "$p"; return; fi
  done
}
# cpu_ms PID: user + system CPU time so far.
cpu_ms() { awk -v hz="$(getconf CLK_TCK)" '{print int(($14 + $15) * 1000 / hz)}' "/proc/$1/stat"; }

# run ROW NAME MODE-ARGS...: the mode against the running gateway; its
# summary is every line it printed but the indented detail ("  log: ...").
run() {
  local row=$1 name=$2
  shift 2
  # In the background: a signal's trap runs at once, not when the mode ends.
  $hostile "$@" --port "$port" >"$out/$name.out" 2>&1 &
  mode=$!
  wait "$mode" || echo "(exit $?)" >>"$out/$name.out"
  mode=''
  echo "row $row $name: $(grep -v '^ ' "$out/$name.out" |
    awk 'NR > 1 {printf " || "} {printf "%s", $0}')"
}

for row in $rows; do
  case $row in
    1) start hoard
       run 1 hoard hoard --seconds 30
       frontend=$(child_pid gatehouse-frontend)
       peak=$(awk '/VmHWM/ {printf "%.1f MB", $2 / 1024}' "/proc/$frontend/status") || peak=unknown
       echo "row 1 hoard: frontend peak RSS (VmHWM) $peak" ;;
    2) start kicked --rpm-limit 20
       run 2 kicked kicked --seconds 30 ;;
    3) start prelogin
       run 3 prelogin prelogin --conns 2000 --seconds 20 ;;
    4) start trickle
       run 4 trickle trickle --conns 300 --seconds 20 ;;
    5) start connect
       worker=$(child_pid gatehouse-worker)
       before=$(cpu_ms "$worker")
       run 5 connect connect --seconds 5 --gateway-key "$out/gateway.key.pub"
       echo "row 5 connect: worker CPU $(($(cpu_ms "$worker") - before)) ms" ;;
    6) start bigchat
       run 6 bigchat bigchat --metrics "$metrics" --bin-dir "$bin" --gateway-key "$out/gateway.key.pub"
       stop
       # The largest chat a client may send: its broadcast fits clear
       # receivers, not modern ones (dropped for each, never a kick).
       start bigchat-65519
       run 6 bigchat-65519 bigchat --say-bytes 65519 --metrics "$metrics" --bin-dir "$bin" \
         --gateway-key "$out/gateway.key.pub" ;;
    7) contract="batch" start broadcast
       run 7 broadcast broadcast --seconds 20 --metrics "$metrics" --log "$log" ;;
    8) echo "good-token 42" >"$out/tokens.plain"
       "$bin/gatehouse" token-hash "$out/tokens.plain" >"$out/tokens"  # hashes, not tokens
       # The pre-login budget (16384 bytes) would refuse the 60 KB login
       # before the worker logs it: the escaping must hold where it is raised.
       start udid --login "tokens:$out/tokens" --prelogin-bytes 65536
       run 8 udid udid --log "$log"
       stop
       start udid-default --login "tokens:$out/tokens"
       run 8 udid-default udid --log "$log"
       stop
       start limitflood --max-connections 3 --connect-rate 0
       run 8 limitflood limitflood --conns 2800 --log "$log" --metrics "$metrics" ;;
    9) start metrics-idle
       for k in 2 4 16; do
         run 9 "metrics-idle-$k" metrics-idle --conns "$k" --seconds 60 --metrics "$metrics"
       done ;;
    *) echo "unknown row $row (1-9)" >&2; exit 2 ;;
  esac
  stop
done
echo "outputs and logs: $out"
