// Package batchpb is the Go code of Gatehouse's batched game-service
// contract, generated from proto/batch.proto (not committed: build.sh
// generates it in its build tree, `go generate ./...` here).
package batchpb

//go:generate protoc -I../../../proto --go_out=. --go_opt=paths=source_relative --go_opt=Mbatch.proto=gatehouse.dev/sdk/go/batchpb --go-grpc_out=. --go-grpc_opt=paths=source_relative --go-grpc_opt=Mbatch.proto=gatehouse.dev/sdk/go/batchpb batch.proto
