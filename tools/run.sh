#!/usr/bin/env bash
# The run command (README): installs what is missing, builds, and runs the
# gateway in the foreground in front of the demo game service, so a newcomer
# sees it work. Ctrl-C drains the gateway (every session closed with reason
# "shutdown", game streams half-closed) and stops the demo game.
#
#   tools/run.sh [extra gatehouse flags...]     e.g. tools/run.sh --workers 4
#   GATEHOUSE_CONTRACT=batch tools/run.sh       the batched game-service contract
#                                               (proto/batch.proto) instead of gonet2
set -euo pipefail
cd "$(dirname "$0")/.."

tools/setup.sh
cmake -S . -B build -G Ninja >/dev/null
cmake --build build -j "$(nproc)" --target gatehouse gatehouse-demo-game gatehouse-client

port=${GATEHOUSE_PORT:-8888}
game_port=${GATEHOUSE_GAME_PORT:-50051}

# The gateway's key for the modern exchange (version 2: the gateway proves it
# holds it, clients pin run/gateway.key.pub), and a real login provider
# (docs/login.md): a token signing key pair, and a day's signed token for
# each demo player. A studio's login service holds the secret key and mints
# the tokens; the gateway holds only the public key. Made at the first run.
run_dir=${GATEHOUSE_RUN_DIR:-run}
mkdir -p "$run_dir"
[ -f "$run_dir/gateway.key" ] || build/bin/gatehouse keygen --out "$run_dir/gateway.key" >/dev/null
[ -f "$run_dir/login-token.key" ] || build/bin/gatehouse token-keygen --out "$run_dir/login-token"
token() { build/bin/gatehouse token --key "$run_dir/login-token.key" --uid "$1" --ttl 86400; }
alice=$(token 1001) bob=$(token 1002) dave=$(token 1003) carol=$(token 1004)

# The demo game runs in its own session so Ctrl-C reaches only the gateway;
# it is stopped once the gateway has drained.
setsid build/examples/gatehouse-demo-game --listen "127.0.0.1:$game_port" &
game=$!
trap 'kill "$game" 2>/dev/null; wait "$game" 2>/dev/null || true' EXIT

cat <<TXT

  Gatehouse is starting on 127.0.0.1:$port (demo game service on 127.0.0.1:$game_port).
  In another terminal, try:

    build/tools/gatehouse-client --udid alice --token $alice --echo hello 127.0.0.1:$port
    build/tools/gatehouse-client --modern --gateway-key $run_dir/gateway.key.pub --udid bob \\
        --token $bob --say "hi all" --listen 30 127.0.0.1:$port
    build/tools/gatehouse-client --encrypt --udid dave --token $dave --echo "legacy DH + RC4" 127.0.0.1:$port
    build/tools/gatehouse-client --udid carol --token $carol --kick-me 127.0.0.1:$port

  (Signed login tokens for users 1001-1004, valid a day; more with
   build/bin/gatehouse token --key $run_dir/login-token.key --uid N)

  Ctrl-C here drains and exits.

TXT
backend="127.0.0.1:$game_port"
[ "${GATEHOUSE_CONTRACT:-gonet2}" = batch ] && backend="batch:$backend"
build/bin/gatehouse --listen "127.0.0.1:$port" --backend "$backend" \
  --gateway-key "$run_dir/gateway.key" --login "signed:$run_dir/login-token.pub" "$@"
