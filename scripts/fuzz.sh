#!/usr/bin/env bash
# Coverage-guided fuzzing with libFuzzer on the stable toolchain (no nightly, no cargo-fuzz).
#
#   scripts/fuzz.sh                 check the harness (fmt, clippy, its unit tests), build, replay
#                                   the committed corpora, then fuzz every target for
#                                   ENS_IMAGES_FUZZ_SECONDS seconds each (default 20)
#   scripts/fuzz.sh check           the harness checks only
#   scripts/fuzz.sh replay          build and replay the committed corpora only (a regression run)
#   scripts/fuzz.sh run TARGET [ARG...]
#                                   fuzz one target until stopped, or as the libFuzzer ARGs say
#                                   (e.g. -max_total_time=600 -jobs=2)
#   scripts/fuzz.sh merge           fold what the runs found into the committed corpora: the
#                                   fewest inputs that reach what the corpus does not yet
#
# Targets: fuzz/fuzz_targets/*.rs; seeds: fuzz/corpus/TARGET/ (committed, only ever read by a
# run); what a run finds: fuzz/target/found/TARGET/; a failing input: fuzz/artifacts/TARGET/.
# Exits non-zero when a harness check fails, or an input panics, times out or runs out of memory.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../fuzz"

TARGETS=(request verify_v1 verify_v3 policy catalog)
SECONDS_PER_TARGET="${ENS_IMAGES_FUZZ_SECONDS:-20}"
HOST="$(rustc -vV | sed -n 's/^host: //p')"

# What cargo-fuzz passes, minus its nightly-only -Zsanitizer: SanitizerCoverage with inline
# 8-bit counters, the PC table and comparison tracing feed libFuzzer; `--cfg fuzzing` is what
# libfuzzer-sys expects; debug assertions and overflow checks make silent bugs panic. All of
# these are stable codegen options. The explicit --target keeps them off build scripts and
# proc macros, which run on the host and must not be instrumented. The forbidden `unsafe` in
# the code under test is why no AddressSanitizer is missed.
INSTRUMENTED="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
export CARGO_TARGET_DIR="$PWD/target"
BIN="$CARGO_TARGET_DIR/$HOST/release"
LOGS="$CARGO_TARGET_DIR/logs"

# The fuzz package is outside the main workspace, so the test command's own fmt, clippy and test
# steps do not see it: these keep the harness (the reference signers above all) honest.
check() {
    echo "fuzz: checking the harness: cargo fmt --check, clippy (warnings are errors), unit tests"
    cargo fmt --check
    cargo clippy --quiet --locked --all-targets -- -D warnings
    cargo test --quiet --locked --lib
}

build() {
    echo "fuzz: building ${TARGETS[*]} (release, instrumented, stable $(rustc --version | cut -d' ' -f2))"
    RUSTFLAGS="$INSTRUMENTED" cargo build --quiet --locked --release --target "$HOST" --bins
    mkdir -p "$LOGS"
    cat dict/request.dict dict/verify.dict >"$CARGO_TARGET_DIR/verify.dict"
}

dictionary() {
    case "$1" in
        request) echo dict/request.dict ;;
        verify_*) echo "$CARGO_TARGET_DIR/verify.dict" ;;
        *) echo "dict/$1.dict" ;;
    esac
}

passed=0
failed=0
failures=()

# Runs TARGET with libFuzzer ARGs, its output in the log; prints one line, or the log's end on a finding.
attempt() {
    local what="$1" target="$2"
    shift 2
    local log="$LOGS/$target-$what.log"
    mkdir -p "artifacts/$target"
    if "$BIN/$target" -artifact_prefix="artifacts/$target/" -timeout=10 -rss_limit_mb=2048 \
        -dict="$(dictionary "$target")" -print_final_stats=1 "$@" >"$log" 2>&1; then
        passed=$((passed + 1))
        local runs
        runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
        echo "fuzz: $target $what: ${runs:-?} inputs, no finding"
    else
        failed=$((failed + 1))
        failures+=("$target $what")
        echo "fuzz: $target $what FAILED; the end of $log:" >&2
        tail -n 40 "$log" >&2
    fi
}

replay() {
    local target
    for target in "${TARGETS[@]}"; do
        attempt replay "$target" -runs=0 "corpus/$target"
    done
}

explore() {
    local target
    for target in "${TARGETS[@]}"; do
        # New inputs go to the first directory only, so the committed corpus stays as it is.
        mkdir -p "$CARGO_TARGET_DIR/found/$target"
        attempt "${SECONDS_PER_TARGET}s" "$target" -max_total_time="$SECONDS_PER_TARGET" \
            "$CARGO_TARGET_DIR/found/$target" "corpus/$target"
    done
}

report() {
    echo "fuzz: crash inputs are kept in fuzz/artifacts/TARGET/; replay one with fuzz/target/$HOST/release/TARGET FILE"
    ((failed == 0)) || printf 'fuzz: finding in %s\n' "${failures[@]}" >&2
    echo "fuzz: $passed passed, $failed failed"
    ((failed == 0))
}

case "${1:-all}" in
    all)
        check
        build
        replay
        explore
        report
        ;;
    check)
        check
        ;;
    replay)
        build
        replay
        report
        ;;
    run)
        target="${2:?usage: scripts/fuzz.sh run TARGET [libFuzzer args...]}"
        shift 2
        build
        mkdir -p "$CARGO_TARGET_DIR/found/$target" "artifacts/$target"
        exec "$BIN/$target" -artifact_prefix="artifacts/$target/" -dict="$(dictionary "$target")" "$@" \
            "$CARGO_TARGET_DIR/found/$target" "corpus/$target"
        ;;
    merge)
        build
        for target in "${TARGETS[@]}"; do
            mkdir -p "$CARGO_TARGET_DIR/found/$target"
            "$BIN/$target" -set_cover_merge=1 "corpus/$target" "$CARGO_TARGET_DIR/found/$target" \
                >"$LOGS/$target-merge.log" 2>&1
            echo "fuzz: $target: $(find "corpus/$target" -type f | wc -l) inputs in fuzz/corpus/$target"
        done
        ;;
    *)
        echo "usage: scripts/fuzz.sh [check | replay | run TARGET [libFuzzer args...] | merge]" >&2
        exit 2
        ;;
esac
