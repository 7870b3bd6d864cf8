#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, Rust unit and integration tests,
# then the conformance suite driving the real binary with the official Python SDKs, and last
# a time-bounded fuzzing run (scripts/fuzz.sh).
#
#   ./scripts/test.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n== %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "qemu-img (the qcow2 unit tests and the import/export conformance tests make and read qcow2 files with it)"
if ! command -v qemu-img >/dev/null 2>&1; then
    if [[ "$(id -u)" -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
        echo "scripts/test.sh: qemu-img is missing; install qemu-utils (apt-get install qemu-utils, as root)" >&2
        exit 1
    fi
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y qemu-utils
    if ! command -v qemu-img >/dev/null 2>&1; then
        echo "scripts/test.sh: qemu-utils was installed but qemu-img is still not on PATH" >&2
        exit 1
    fi
fi
qemu-img --version | head -n 1

step "cargo test"
cargo test --workspace --locked

if [[ -n "${ENS_IMAGES_TEST_DATABASE_URL:-}" ]]; then
    # The PostgreSQL cases of the storage suite are marked ignored, so that a run without a
    # database reports them as ignored instead of passing them unrun; here they run.
    step "cargo test: the PostgreSQL cases (ignored without a database)"
    cargo test --workspace --locked -- --ignored
else
    step "cargo test: the PostgreSQL cases stay ignored (set ENS_IMAGES_TEST_DATABASE_URL=postgres://... to run them)"
fi

step "build the server binary"
cargo build --locked -p ens-images
export ENS_IMAGES_BIN="$PWD/target/debug/ens-images"

step "conformance: official Python SDKs against the real binary, embedded SQLite store"
conformance/run.sh

if [[ -n "${ENS_IMAGES_TEST_DATABASE_URL:-}" ]]; then
    step "conformance again, every server on its own PostgreSQL database"
    # The replica tests ran in the pass above (they always use PostgreSQL).
    ENS_IMAGES_TEST_BACKEND=postgres conformance/run.sh -k "not test_replicas"
else
    step "conformance on PostgreSQL: skipped (set ENS_IMAGES_TEST_DATABASE_URL=postgres://... to run it)"
fi

step "python testing package (pip install ./python): its fixture and control API against the real binary"
python/run-tests.sh

step "fuzz: replay the committed corpora, then ${ENS_IMAGES_FUZZ_SECONDS:-20} s of coverage-guided fuzzing per target (scripts/fuzz.sh)"
scripts/fuzz.sh
