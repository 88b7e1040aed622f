# The front door. Every target installs what it needs first (deploy/local/deps.sh).
#
#   make run           build, start the whole local stack in the foreground; Ctrl-C stops it
#   make up / down     the same stack in the background / stop it
#                      (HA=1 on run/up/chaos: the high-availability topology, docs/ha.md)
#   make test          sanitizer build, own infrastructure on its own ports, all CTest suites
#   make build         debug build with ASan+UBSan into build/ (what `ctest --test-dir build` reads)
#   make release       optimized build into build-release/ (what run/up use)
#   make chaos         fault-injection run (tests/chaos): SIGKILLs under load, then the saga invariants;
#                      RUNS=N runs it N times in a row (make chaos HA=1 RUNS=3)
#   make bench         the docs/architecture.md §8 benchmarks next to their baselines (bench/); BENCH_QUICK=1 for a smoke run
#   make fuzz          the libFuzzer targets (tests/fuzz), FUZZ_SECONDS in total (default 600)
#   make peers-test    the project's black-box tests against the bench peers (bench/peers), own stack
#   make helm-test     the Helm chart (deploy/helm): lint, render, strict check against the API types and the programs
#   make compose-test  deploy/docker-compose.yml built and run in Docker (tests/deploy/compose_e2e.sh; root);
#                      HA=1: with deploy/docker-compose.ha.yml, and a Kafka node, order's
#                      PostgreSQL primary and the Redis master killed in turn
#   make format        clang-format every C file; make format-check fails on a difference

SHELL := /bin/bash
JOBS  ?= $(shell nproc)
CMAKE_FLAGS ?=
FUZZ_SECONDS ?= 600
FUZZ_TARGETS ?=

C_FILES = $(shell git ls-files '*.c' '*.h' 2>/dev/null)

.PHONY: all deps build release fuzz-build fuzz test run up down status wipe chaos bench compose-test format format-check clean

all: build

deps:
	@deploy/local/deps.sh

build: deps
	@cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Debug -DSHOP_SANITIZE=ON $(CMAKE_FLAGS) >/dev/null
	@cmake --build build -j $(JOBS)

release: deps
	@cmake -S . -B build-release -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSHOP_SANITIZE=OFF $(CMAKE_FLAGS) >/dev/null
	@cmake --build build-release -j $(JOBS)

# The fuzz targets (tests/fuzz, docs/fuzzing.md): clang with libFuzzer, ASan and UBSan,
# in build-fuzz/. make fuzz runs them for FUZZ_SECONDS in total (FUZZ_TARGETS: some of
# json_pb http saga_event page_token router); make test runs each for a few seconds.
fuzz-build: deps
	@cmake -S . -B build-fuzz -G Ninja -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug -DSHOP_FUZZ=ON $(CMAKE_FLAGS) >/dev/null
	@cmake --build build-fuzz -j $(JOBS)

fuzz: fuzz-build
	@FUZZ_SECONDS=$(FUZZ_SECONDS) tests/fuzz/run.sh $(FUZZ_TARGETS)

# The release build is part of the test: gcc -O2 sees warnings (-Werror) that -O0 does
# not, and make run uses it. CTEST_ARGS passes through, e.g. make test CTEST_ARGS='-L unit'
test: build release fuzz-build
	@tests/run.sh $(CTEST_ARGS)

run: release
	@deploy/local/stack.sh run

up: release
	@deploy/local/stack.sh up

down:
	@deploy/local/stack.sh down

status:
	@deploy/local/stack.sh status

wipe:
	@deploy/local/stack.sh wipe

chaos: release
	@tests/chaos/run.sh

bench: release
	@python3 bench/bench.py

# The project's tests against the bench peers (issue 17; never part of make test: they
# need node/npm and go, and prove the peers, not the product).
.PHONY: peers-test
peers-test: build
	@bench/peers/test.sh

# The Helm chart against the release binaries (also part of make test: test_deploy_helm).
.PHONY: helm-test
helm-test: release
	@tests/deploy/helm/run.sh build-release/services/order/order-svc build-release/services/product/product-svc \
		build-release/services/user/user-svc build-release/gateway/gateway

# Builds the images, runs the stack, scales it, removes everything (tests/deploy/compose_e2e.sh);
# exit 77 = skipped (no root or no Docker engine), with the reason.
compose-test:
	@COMPOSE_HA=$(or $(HA),0) tests/deploy/compose_e2e.sh

format:
	@clang-format -i $(C_FILES)

format-check:
	@clang-format --dry-run --Werror $(C_FILES)

clean:
	rm -rf build build-release build-fuzz
