#!/usr/bin/env bash
# Runs the libFuzzer targets of tests/fuzz one after the other (docs/fuzzing.md).
#
#   tests/fuzz/run.sh [target...]            make fuzz: FUZZ_SECONDS (default 600) in
#                                            total, split by each target's weight
#   tests/fuzz/run.sh --each SECONDS target  ctest (make test): one target that long
#
# Each target starts from its committed seeds (tests/fuzz/corpus/<t>) and the inputs
# that once failed (tests/fuzz/regressions/<t>), every one of which runs first; what
# it finds new goes to build-fuzz/fuzz/corpus/<t> (kept between runs, not committed).
# A crash, a sanitizer report, a leak or a timeout stops that target, leaves the input
# in build-fuzz/fuzz/crashes/<t>/ and makes the run fail; the other targets still run.
# Prints executions per target and in total. Needs the fuzz build (make fuzz-build).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${FUZZ_BUILD_DIR:-$root/build-fuzz}
out=$build/fuzz

# name, share of FUZZ_SECONDS (weights), libFuzzer options. The HTTP target makes a
# TCP connection per input (a few thousand a second where the others make tens or
# hundreds of thousands), so its share is smaller. -timeout: the HTTP target's own
# wait (5 s) fails first; anything slower than that on one input is a finding.
targets=(
    "json_pb     3 -max_len=2048 -dict=$here/dict/json.dict"
    "http        3 -max_len=4096 -dict=$here/dict/http.dict"
    "saga_event  2 -max_len=2048 -dict=$here/dict/saga_event.dict"
    "page_token  1 -max_len=512"
    "router      1 -max_len=512 -dict=$here/dict/http.dict"
)

each=
if [ "${1:-}" = "--each" ]; then
    each=$2
    shift 2
fi
want=("$@")
[ ${#want[@]} -gt 0 ] || want=(${FUZZ_TARGETS:-})

selected=()
total_weight=0
for t in "${targets[@]}"; do
    read -r name weight _ <<<"$t"
    if [ ${#want[@]} -eq 0 ] || [[ " ${want[*]} " == *" $name "* ]]; then
        selected+=("$t")
        total_weight=$((total_weight + weight))
    fi
done
if [ ${#selected[@]} -eq 0 ]; then
    echo "fuzz: no target named ${want[*]}; targets: json_pb http saga_event page_token router" >&2
    exit 2
fi
seconds=${FUZZ_SECONDS:-600}
if [ -z "$each" ] && [ "$seconds" -lt "${#selected[@]}" ]; then
    echo "fuzz: FUZZ_SECONDS=$seconds is less than a second per target" >&2
    exit 2
fi

failed=()
total_runs=0
printf '%-12s %8s %14s %10s  %s\n' target seconds executions exec/s result
for t in "${selected[@]}"; do
    read -r name weight opts <<<"$t"
    bin=$build/tests/fuzz/fuzz_$name
    [ -x "$bin" ] || { echo "fuzz: $bin is missing (make fuzz-build)" >&2; exit 2; }
    secs=${each:-$((seconds * weight / total_weight))}
    ((secs > 0)) || secs=1
    mkdir -p "$out/corpus/$name" "$out/crashes/$name" "$out/logs"
    log=$out/logs/$name.log
    dirs=("$out/corpus/$name" "$here/corpus/$name")
    [ -d "$here/regressions/$name" ] && dirs+=("$here/regressions/$name")
    rc=0
    # shellcheck disable=SC2086 # opts are words
    "$bin" -max_total_time="$secs" -timeout=10 -print_final_stats=1 \
        -artifact_prefix="$out/crashes/$name/" $opts "${dirs[@]}" >"$log" 2>&1 || rc=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    runs=${runs:-0}
    total_runs=$((total_runs + runs))
    if ((rc == 0)); then
        result=ok
    else
        result="FAILED (exit $rc): $log"
        failed+=("$name")
    fi
    printf '%-12s %8s %14s %10s  %s\n' "$name" "$secs" "$runs" "$((runs / secs))" "$result"
    if ((rc != 0)); then
        grep -E '^(==[0-9]+==ERROR|SUMMARY|fuzz_[a-z_]+:|.*Test unit written to)' "$log" | head -20 >&2 || true
    fi
done
printf '%-12s %8s %14s\n' total "${each:-$seconds}" "$total_runs"

if ((${#failed[@]})); then
    echo "fuzz: failed: ${failed[*]}; inputs in $out/crashes/<target>/, logs in $out/logs/" >&2
    echo "      reproduce: $build/tests/fuzz/fuzz_<target> <input>" >&2
    exit 1
fi
