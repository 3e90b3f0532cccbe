#!/usr/bin/env bash
# A short check of the Go validation harness (what .ci/run runs): vet and
# unit tests, a build against each grpc-go version, and a few thousand
# iterations each. v1.72.0 and v1.81.1 must not leak; v1.71.1 must run
# (its leaks are too rare to require in a short smoke).
set -euo pipefail
cd "$(dirname "$0")/.."
export GOTOOLCHAIN=local
BIN=target/validation
mkdir -p "$BIN"
go version
for v in v1.71.1 v1.72.0 v1.81.1; do
  (cd validation/go && go vet -modfile=go.$v.mod . && go build -modfile=go.$v.mod -o "../../$BIN/validate-$v" .)
done
(cd validation/go && test -z "$(gofmt -l .)" && go test -modfile=go.v1.81.1.mod -count=1 .)
for p in 1 2; do
  GOMAXPROCS=$p "$BIN/validate-v1.71.1" -version v1.71.1 -iters 2000 -delays 0,10us
  GOMAXPROCS=$p "$BIN/validate-v1.72.0" -version v1.72.0 -iters 3000 -delays 0,10us -max-leaks 0
  GOMAXPROCS=$p "$BIN/validate-v1.81.1" -version v1.81.1 -iters 3000 -delays 0,10us -max-leaks 0
done
echo "validation harness smoke: ok" >&2
