#!/usr/bin/env bash
# Installs every Debian 12 package Gatehouse needs to build, test, fuzz and run.
# Idempotent: a second run only checks. Must run as root (or with sudo available).
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git
  libboost1.81-dev libboost-program-options1.81-dev
  libboost-json1.81-dev   # etcd: the v2 keys API's replies, the gateway's own key (docs/discovery.md)
  libprotobuf-dev protobuf-compiler libgrpc++-dev protobuf-compiler-grpc
  prometheus-cpp-dev libsystemd-dev libssl-dev libsodium-dev libspdlog-dev libnghttp2-dev
  libgtest-dev libgmock-dev googletest libbenchmark-dev
  clang-14 libclang-rt-14-dev lld-14   # the sanitizer and fuzz builds (lld: links in a fifth of the time)
  clang-format-14 clang-tidy-14   # tools/lint.sh, part of the test command
  prometheus   # promtool and a Prometheus server for the metrics tests
  systemd libseccomp-dev   # systemd-analyze for the unit tests; the unit's seccomp filters, applied in a test
  groff-base man-db dpkg-dev   # manual pages (checked with groff, the unit's man: links); the .deb (CPack)
  python3 python3-cryptography   # the independent client of docs/protocol-modern.md (a test)
  golang-go golang-github-xtaci-kcp-dev   # a real kcp-go peer for the KCP interop test (docs/kcp.md)
  # the Go SDK (sdk/go), built offline in GOPATH mode from /usr/share/gocode;
  # gRPC's codec needs golang/protobuf 1.5 (1.3 cannot marshal APIv2 messages)
  protoc-gen-go protoc-gen-go-grpc golang-google-grpc-dev golang-google-protobuf-dev
  golang-github-golang-protobuf-1-5-dev
  etcd-server   # a real etcd for the discovery tests (docs/discovery.md; they start their own)
  chromium      # a real browser for the WebSocket test (docs/websocket.md)
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# The TypeScript SDK (sdk/typescript) builds and tests with Node >= 18 and
# npm: Debian's nodejs and npm, unless a node and npm are there already (a
# NodeSource nodejs ships its own npm, which Debian's npm would conflict with).
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)

# Then the SDK's pinned packages (package-lock.json), once per change of it.
sdk_packages() {
  local sdk stamp
  sdk=$(dirname "$0")/../sdk/typescript
  stamp=$sdk/node_modules/.installed-lock
  cmp -s "$sdk/package-lock.json" "$stamp" 2>/dev/null && return 0
  echo "setup: npm ci in $sdk" >&2
  (cd "$sdk" && npm ci --ignore-scripts --no-audit --no-fund) && cp "$sdk/package-lock.json" "$stamp"
}

if [ ${#missing[@]} -eq 0 ]; then
  sdk_packages
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
echo "setup: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}"

# The prometheus and etcd-server packages enable servers (:9090, :2379); the
# tests start their own on free ports, so the packaged services must not run.
for service in prometheus:prometheus etcd-server:etcd; do
  if printf '%s\n' "${missing[@]}" | grep -qx "${service%%:*}" && command -v systemctl >/dev/null &&
     [ -d /run/systemd/system ]; then
    $sudo systemctl disable --now "${service#*:}" >/dev/null 2>&1 || true
  fi
done

sdk_packages
