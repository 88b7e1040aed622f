#!/usr/bin/env bash
# Builds the Go order-svc peer (bench/peers/README.md, "Go order-svc peer") into
# $GO_ORDER_BUILD (default: <repo>/build-peers/go-order-svc): the protobuf/gRPC code is
# generated from proto/ and the migrations copied from migrations/ at build time, then
# `go build -trimpath`. Idempotent: skips everything when the binary is newer than
# every input. Prints the binary's path on its last line.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
out="${GO_ORDER_BUILD:-$repo/build-peers/go-order-svc}"
bin="$out/order-svc-go"
mkdir -p "$out"
export GOBIN="$out/gobin" GOTOOLCHAIN=local
export PATH="$GOBIN:/usr/local/go/bin:$PATH"

inputs=$(find "$here" "$repo/proto" "$repo/migrations/common" "$repo/migrations/order" \
    -type f \( -name '*.go' -o -name '*.proto' -o -name '*.sql' -o -name go.mod -o -name go.sum \
    -o -name build.sh \) -not -path "$here/gen/*" -not -path "$here/migrations/*" -newer "$bin" \
    2>/dev/null | head -1 || true)
if [[ -x "$bin" && -z "$inputs" ]]; then
    echo "$bin"
    exit 0
fi

command -v protoc >/dev/null || { apt-get install -y protobuf-compiler >/dev/null || {
    echo "build.sh: protoc is missing (apt-get install protobuf-compiler)" >&2; exit 1; }; }
[[ -x "$GOBIN/protoc-gen-go" ]] || go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
[[ -x "$GOBIN/protoc-gen-go-grpc" ]] || go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.5.1

mod=github.com/shop-fleet/bench/peers/go-order-svc
rm -rf "$here/gen" "$here/migrations"
mkdir -p "$here/gen" "$here/migrations/common" "$here/migrations/order"
maps=""
for p in shop/common/v1/common.proto:shop/common/v1 shop/order/v1/order_service.proto:shop/order/v1 \
         shop/product/v1/product_service.proto:shop/product/v1 shop/events/v1/events.proto:shop/events/v1; do
    maps="$maps,M${p%%:*}=$mod/gen/${p##*:}"
done
maps="${maps#,}"
protoc -I "$repo/proto" --go_out="$here/gen" --go_opt=paths=source_relative,"$maps" \
    --go-grpc_out="$here/gen" --go-grpc_opt=paths=source_relative,"$maps" \
    shop/common/v1/common.proto shop/order/v1/order_service.proto \
    shop/product/v1/product_service.proto shop/events/v1/events.proto
cp "$repo"/migrations/common/*.sql "$here/migrations/common/"
cp "$repo"/migrations/order/*.sql "$here/migrations/order/"
(cd "$here" && go build -trimpath -o "$bin" .)
echo "$bin"
