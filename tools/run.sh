#!/usr/bin/env bash
# The run command (README): installs what is missing, builds, and runs
# Gatehouse so a newcomer sees it work. Until the gateway processes land this
# runs the shared-memory ring benchmark, the transport everything sits on.
set -euo pipefail
cd "$(dirname "$0")/.."

tools/setup.sh
cmake -S . -B build -G Ninja >/dev/null
cmake --build build -j "$(nproc)" --target gatehouse-ring-bench
echo "Cross-process shared-memory ring: throughput and ping-pong latency"
exec build/tools/gatehouse-ring-bench "$@"
