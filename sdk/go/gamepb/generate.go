// Package gamepb is the Go code of gonet2's game-service contract (one
// stream per session), generated from proto/game.proto (not committed:
// build.sh generates it in its build tree, `go generate ./...` here).
package gamepb

//go:generate protoc -I../../../proto --go_out=. --go_opt=paths=source_relative --go_opt=Mgame.proto=gatehouse.dev/sdk/go/gamepb --go-grpc_out=. --go-grpc_opt=paths=source_relative --go-grpc_opt=Mgame.proto=gatehouse.dev/sdk/go/gamepb game.proto
