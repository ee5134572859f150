#!/usr/bin/env bash
# Builds the Go SDK offline from Debian's Go packages, in GOPATH mode: the
# module's files are copied to OUT/gopath/src/gatehouse.dev/sdk/go, the
# contracts' Go code is generated there from ../../proto (protoc,
# protoc-gen-go, protoc-gen-go-grpc), and the rest comes from
# /usr/share/gocode (golang-google-grpc-dev, golang-google-protobuf-dev).
# Nothing is written to the source tree and nothing is downloaded.
#
# usage: sdk/go/build.sh OUT
# Leaves in OUT/bin: gatehouse-demo-game-go, readme-example, game.test (the
# SDK's unit tests: run it with -test.v), and fails when go vet or gofmt
# find anything or README.md's example is not examples/readme/main.go.
set -euo pipefail
out=${1:?usage: build.sh OUT}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
out=$(cd "$out" && pwd)
pkg=$out/gopath/src/gatehouse.dev/sdk/go

rm -rf "$pkg"
mkdir -p "$pkg" "$out/bin"
cp -R "$here"/. "$pkg"/
rm -f "$pkg"/batchpb/*.pb.go "$pkg"/gamepb/*.pb.go  # from a `go generate` in the source tree
for p in batch:batchpb game:gamepb; do
  proto=${p%%:*} dir=${p#*:}
  protoc -I"$here/../../proto" \
    --go_out="$pkg/$dir" --go_opt=paths=source_relative --go_opt="M$proto.proto=gatehouse.dev/sdk/go/$dir" \
    --go-grpc_out="$pkg/$dir" --go-grpc_opt=paths=source_relative \
    --go-grpc_opt="M$proto.proto=gatehouse.dev/sdk/go/$dir" "$proto.proto"
done

# Go's own build cache (content-addressed, shared by every build of the
# user): a second build compiles only what changed, not gRPC again (~50 s).
gocache=$(go env GOCACHE)
export GO111MODULE=off GOFLAGS= GOPROXY=off GOENV=off GOPATH=$out/gopath:/usr/share/gocode GOCACHE=$gocache
unformatted=$(cd "$here" && gofmt -l .)
if [ -n "$unformatted" ]; then
  echo "build.sh: not gofmt'd: $unformatted" >&2
  exit 1
fi
# The README's example is examples/readme/main.go, less its first comment line.
if ! diff <(sed -n '/^```go$/,/^```$/p' "$here/README.md" | sed '1d;$d') \
          <(sed '1d' "$here/examples/readme/main.go") >&2; then
  echo "build.sh: README.md's example and examples/readme/main.go differ" >&2
  exit 1
fi
cd "$pkg"
go vet ./game/... ./examples/...
go build -o "$out/bin/gatehouse-demo-game-go" ./examples/demo-game
go build -o "$out/bin/readme-example" ./examples/readme
go test -c -o "$out/bin/game.test" ./game
echo "build.sh: built $out/bin/{gatehouse-demo-game-go,readme-example,game.test}"
