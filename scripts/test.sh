#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, Rust unit and integration tests,
# then the conformance suite driving the real binary with the official Python SDKs.
#
#   ./scripts/test.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n== %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test"
cargo test --workspace --locked

step "build the server binary"
cargo build --locked -p ens-images
export ENS_IMAGES_BIN="$PWD/target/debug/ens-images"

step "conformance: official Python SDKs against the real binary"
conformance/run.sh
