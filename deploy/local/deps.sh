#!/usr/bin/env bash
# Installs everything the build, the tests and the local stack need, once.
# Idempotent: when all is present it only checks and returns in seconds.
#   - Debian packages (apt-get, as root or through sudo)
#   - the Apache Kafka broker from Maven Central, pinned, into a cache outside git
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

packages=(
    # build
    build-essential cmake ninja-build pkg-config clang-format
    protobuf-c-compiler libprotobuf-c-dev libgrpc-dev libmicrohttpd-dev libjansson-dev
    # google/protobuf/any.proto, imported by proto/google/rpc/status.proto
    libprotobuf-dev
    libjwt-dev libhiredis-dev libpq-dev librdkafka-dev libargon2-dev uuid-dev check libssl-dev
    # fuzzing (make fuzz, tests/fuzz): clang, and libFuzzer with the sanitizer runtimes
    # (libclang_rt.fuzzer-x86_64.a), which clang only recommends
    clang libclang-rt-14-dev
    # local infrastructure
    postgresql-15 postgresql-client-15 redis-server redis-tools openjdk-17-jre-headless maven
    # real external clients used by tests
    python3 python3-grpcio python3-protobuf python3-venv python3-yaml kcat curl jq openssl procps iproute2
    # high availability (HA=1, docs/ha.md): PostgreSQL failover (pg_auto_failover);
    # Redis Sentinel is redis-server --sentinel
    postgresql-15-auto-failover pg-auto-failover-cli
    # benchmarks (make bench; pgbench comes with postgresql-15, ghz is installed by bench/bench.py)
    wrk
    # observability: Prometheus for make run, promtool for the alert rule tests
    prometheus
)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
    log "installing Debian packages: ${missing[*]}"
    sudo_cmd=()
    [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
    export DEBIAN_FRONTEND=noninteractive
    "${sudo_cmd[@]}" apt-get update -q
    "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# Kafka broker: the runtime classpath of org.apache.kafka:kafka_2.13 (plus kafka-tools
# for topic administration and a log4j2 backend), resolved by Maven into $KAFKA_LIBS.
if [ ! -f "$KAFKA_LIBS/.complete" ]; then
    log "fetching Kafka $KAFKA_VERSION from Maven Central into $KAFKA_LIBS"
    rm -rf "$KAFKA_LIBS"
    mkdir -p "$KAFKA_LIBS"
    mvn -q -B -f "$here/kafka/pom.xml" -Dkafka.version="$KAFKA_VERSION" \
        dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$KAFKA_LIBS"
    touch "$KAFKA_LIBS/.complete"
fi

# Jaeger, the trace backend of the local stack: built once from the Go module proxy, at
# the version deploy/local/jaeger/go.mod pins (go.sum checks every module).
if [ ! -x "$JAEGER_BIN" ]; then
    command -v go >/dev/null || die "Jaeger is built with Go (1.24 or newer): put go on PATH"
    log "building Jaeger $JAEGER_VERSION into $JAEGER_BIN (once; a few minutes)"
    mkdir -p "$(dirname "$JAEGER_BIN")"
    (cd "$here/jaeger" && go build -mod=readonly -trimpath -o "$JAEGER_BIN.partial" \
        github.com/jaegertracing/jaeger/cmd/jaeger)
    mv "$JAEGER_BIN.partial" "$JAEGER_BIN"
fi
