# shellcheck shell=bash
# Shared by the benchmark scripts of tools/bench (sourced, run from the project
# root): medians over gatehouse-bench's JSON lines, a gateway started and
# stopped, and the Go original (gonet2's agent, built and run by
# ../shared/go-original) started behind a game service of the caller's.

# values_of FIELD FILE: the numeric values of a JSON field in FILE's lines
# (nulls and a missing file give none), sorted.
values_of() {
  { grep -oE "\"$1\":-?[0-9.]+" "$2" 2>/dev/null || true; } | cut -d: -f2 | sort -g
}

# median_of FIELD FILE [DECIMALS]: "median [min..max]" of a numeric JSON field
# ("-" if none), the numbers as printed or rounded to DECIMALS. The median of
# an even count is the lower middle value.
median_of() {
  values_of "$1" "$2" | awk -v d="${3:-}" '
    function f(x) { return d == "" ? x : sprintf("%." d "f", x) }
    {v[NR]=$1}
    END {if (NR==0) {print "-"; exit} printf "%s [%s..%s]", f(v[int((NR+1)/2)]), f(v[1]), f(v[NR])}'
}

# median FIELD FILE: the median alone (nothing if none).
median() {
  values_of "$1" "$2" | awk '{v[NR]=$1} END {if (NR) print v[int((NR+1)/2)]}'
}

# gateway_start READY_FILE LOG COMMAND...: runs COMMAND (a gateway:
# [taskset ...] build/bin/gatehouse ARGS) in the background with
# --ready-file READY_FILE, appending its output to LOG, and returns once every
# child process has attached, so that a memory baseline taken next is a whole
# gateway's. Its pid is left in $gw. Exits the script if it does not get there.
gateway_start() {
  local ready=$1 log=$2
  shift 2
  rm -f "$ready"
  "$@" --ready-file "$ready" >>"$log" 2>&1 &
  gw=$!
  for _ in $(seq 300); do
    [ -f "$ready" ] && break
    kill -0 "$gw" 2>/dev/null || break
    sleep 0.1
  done
  if [ ! -f "$ready" ]; then
    echo "$0: the gateway (pid $gw) did not get ready in 30 s; $log: $(tail -3 "$log" | tr '\n' ' ')" >&2
    exit 1
  fi
  sleep 0.5
}

# gateway_stop PID: SIGTERM (the gateway drains) and wait for it.
gateway_stop() {
  kill -TERM "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

# --- the Go original ---------------------------------------------------------
# ../shared/go-original/build.sh puts the agent in $GO_ORIG_DIR/bin (default
# ${TMPDIR:-/tmp}/gonet2-agent, as there); start.sh runs etcd, a game service
# of its own and the agent; its logs go to $GO_ORIG_LOGS (set it to keep them
# with a run's results).
go_orig=../shared/go-original
go_orig_dir() { echo "${GO_ORIG_DIR:-${TMPDIR:-/tmp}/gonet2-agent}"; }
go_orig_built() { [ -x "$(go_orig_dir)/bin/agent" ]; }

# go_orig_require HINT: exits with how to build the Go original unless it is
# built; HINT says how to do without it.
go_orig_require() {
  go_orig_built && return
  local scripts
  scripts=$(cd "$go_orig" 2>/dev/null && pwd) || scripts=$go_orig
  cat >&2 <<EOF
$0: no Go original built in $(go_orig_dir) (GO_ORIG_DIR).
Build it first (go, etcd, curl are installed if missing; see its --help):
  GO_ORIG_DIR=$(go_orig_dir) $scripts/build.sh SNAPSHOT_GIT_DIR
where SNAPSHOT_GIT_DIR is a git dir (bare or not) of github.com/gonet2/agent;
$1.
EOF
  exit 2
}

# go_orig_start GAME_ADDR: starts the Go original (start.sh), then moves the
# agent onto the game service at GAME_ADDR (HOST:PORT), the one the gateways
# use, so that all of them are measured behind the same game process. start.sh
# always starts a game service of its own (GAME_CMD, by default a second demo
# game) and registers it as /backends/game-10000/game1 before the agent
# starts; the agent watches that directory in etcd, so deleting the key and
# putting GAME_ADDR under the same name makes it drop that connection and dial
# GAME_ADDR (its own game then stays idle, outside what is measured). Sets
# $go_pid and $go_port; exits the script on failure.
go_orig_start() {
  local game=$1 line log key
  GO_ORIG_DIR=$(go_orig_dir)
  export GO_ORIG_DIR
  go_orig_started=1
  # start.sh's own game: the demo game of the tree measured (BUILD_DIR).
  GAME_CMD=${GAME_CMD:-${BUILD_DIR:-build}/examples/gatehouse-demo-game --listen 127.0.0.1:\{port\}}
  export GAME_CMD
  line=$("$go_orig/start.sh") || { echo "$0: the Go original did not start" >&2; exit 1; }
  # shellcheck disable=SC2034  # go_port: for the caller
  read -r go_pid go_port <<<"$line"
  log=${GO_ORIG_LOGS:-$GO_ORIG_DIR/run}/agent.log
  key=http://127.0.0.1:${ETCD_PORT:-23790}/v2/keys/backends/game-10000/game1
  if ! curl -fsS -m 5 -XDELETE "$key" >/dev/null || ! curl -fsS -m 5 -XPUT "$key" -d "value=$game" >/dev/null; then
    echo "$0: could not move the Go original's game1 to $game in etcd" >&2
    exit 1
  fi
  for _ in $(seq 100); do
    grep -qF "service added: /backends/game-10000/game1 --> $game" "$log" && break
    sleep 0.1
  done
  if ! grep -qF "service removed: /backends/game-10000/game1" "$log" ||
    ! grep -qF "service added: /backends/game-10000/game1 --> $game" "$log"; then
    echo "$0: the Go original (pid $go_pid) did not move to the game service at $game; $log: $(tail -3 "$log" | tr '\n' ' ')" >&2
    exit 1
  fi
}

# go_orig_stop: stops what go_orig_start started (stop.sh), if anything.
go_orig_stop() {
  if [ -n "${go_orig_started:-}" ]; then "$go_orig/stop.sh" >/dev/null 2>&1 || true; fi
  go_pid=
}

# go_orig_restart GAME_ADDR: a fresh agent (and game service of start.sh's),
# etcd kept.
go_orig_restart() {
  "$go_orig/stop.sh" --keep-etcd >/dev/null 2>&1 || true
  go_orig_start "$1"
}
