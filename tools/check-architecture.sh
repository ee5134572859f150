#!/usr/bin/env bash
# The architecture's nevers (docs/architecture.md, "Rooms and arrows"), checked
# on the source tree. Runs as the ctest test "architecture" in every build.
#
#   1. Each folder includes only the libraries its arrows allow: no process
#      folder includes another process folder; shm/, the codec and kcp
#      include nothing of ours.
#   2. Only contract/ (and shm/ itself) reaches into the segment's regions:
#      everyone else goes through GatewaySegment, so nothing but contract/
#      lays out a struct in shared memory.
#   3. No process library links another process library (CMake also refuses
#      it at configure time: cmake/GatehouseArchitecture.cmake).
#   4. Tests mirror the tree: each source folder has its tests/ folder (the
#      two micro-benchmark tools are benchmarks themselves).
#   5. The Go SDK (sdk/go) imports only Go's standard library, gRPC,
#      protobuf and its own packages: it knows the gateway only through
#      proto/, and builds offline from Debian's Go packages (sdk/go/build.sh).
#      Its tests are in tests/sdk.
#
#   tools/check-architecture.sh [ROOT]
set -uo pipefail
root=${1:-$(cd "$(dirname "$0")/.." && pwd)}
cd "$root" || exit 2
failures=0
fail() {
  echo "architecture: $*" >&2
  failures=$((failures + 1))
}

# folder -> the include prefixes (gatehouse/<prefix>/...) it may use.
declare -A allowed=(
  [shm]="shm"
  [common/codec]="codec"
  [common/crypto]="crypto"
  [common/net]="net"
  [common/base]="base"
  [common/token]="token"
  [common/kcp]="kcp"
  [contract]="contract shm codec crypto"
  [frontend]="frontend contract shm net base codec kcp"
  [agent-worker]="worker contract shm net codec crypto base token"
  [backend-bridge]="bridge contract shm net codec base"
  [supervisor]="supervisor contract shm net base crypto token kcp"
  [tools/client]="client codec crypto kcp net"
  [tools/bench]="bench client codec crypto kcp net token"
  [tools/crypto-bench]="crypto"
  [tools/kx-vectors]="crypto codec"
  [tools/ring-bench]="shm"
  [tools/conformance]="conformance codec"
  [examples/demo-game]="game codec base"
)

# 1. Includes.
for folder in "${!allowed[@]}"; do
  [ -d "$folder" ] || { fail "$folder: missing (update tools/check-architecture.sh)"; continue; }
  while IFS=: read -r file line text; do
    prefix=$(sed -E 's@.*#include "gatehouse/([A-Za-z0-9_-]+)/.*@\1@' <<<"$text")
    case " ${allowed[$folder]} " in
      *" $prefix "*) ;;
      *) fail "$file:$line includes gatehouse/$prefix/ (allowed in $folder: ${allowed[$folder]})" ;;
    esac
  done < <(grep -rnE --include='*.h' --include='*.cc' '^#include "gatehouse/' "$folder")
done

# Every source folder of ours is in the table, so a new one gets its rule.
while read -r dir; do
  folder=${dir%/include}
  [ -n "${allowed[$folder]+x}" ] || fail "$folder: no rule in tools/check-architecture.sh"
done < <(find . -path ./build -prune -o -path ./tests -prune -o -name node_modules -prune -o \
           -type d -name include -print |
         sed 's@^\./@@' | sort)

# 2. Region access: the segment's regions are reached only through contract/.
region_access='\.region\(|SpscRing::attach\(|SlotTable::attach|SessionTable<[^>]*>::attach|(^|[^A-Za-z])Segment::(create|attach)\('
while IFS= read -r hit; do
  fail "$hit: reaches into the segment directly (use GatewaySegment, contract/)"
done < <(grep -rnE --include='*.h' --include='*.cc' "$region_access" \
           frontend agent-worker backend-bridge supervisor common tools/client tools/bench \
           examples 2>/dev/null)

# 3. Links: a process library names no other process library.
declare -A own=([frontend]=frontend [agent-worker]=worker [backend-bridge]=bridge
                [supervisor]=supervisor)
for folder in "${!own[@]}"; do
  while IFS= read -r hit; do
    fail "$folder/CMakeLists.txt links another process: $hit"
  done < <(grep -nE 'gw::(frontend|worker|bridge|supervisor)\b' "$folder/CMakeLists.txt" |
           grep -vE "gw::${own[$folder]}\b" || true)
done

# 4. A test folder per source folder, named after the folder's last part.
untested="tools/crypto-bench tools/ring-bench"
for folder in "${!allowed[@]}"; do
  case " $untested " in *" $folder "*) continue ;; esac
  [ -d "tests/${folder##*/}" ] || fail "$folder: no tests/${folder##*/}/ (tests mirror the tree)"
done

# 5. The Go SDK's imports (a standard-library path has no dot in its first
# element).
while IFS=: read -r file path; do
  case "$path" in
    gatehouse.dev/sdk/go/* | google.golang.org/grpc | google.golang.org/grpc/* | \
      google.golang.org/protobuf/*) ;;
    *.*/*) fail "$file imports $path (sdk/go may use the standard library, gRPC and protobuf)" ;;
  esac
done < <(find sdk/go -name '*.go' ! -name '*.pb.go' -print0 | xargs -0 awk '
  /^import \(/ { block = 1; next }
  block && /^\)/ { block = 0 }
  block && /"/ || /^import "/ { match($0, /"[^"]+"/); print FILENAME ":" substr($0, RSTART + 1, RLENGTH - 2) }')
[ -d tests/sdk ] || fail "sdk/go: no tests/sdk/ (tests mirror the tree)"

if [ "$failures" -ne 0 ]; then
  echo "architecture: $failures violation(s)" >&2
  exit 1
fi
echo "architecture: every never holds (${#allowed[@]} folders checked)"
