#!/usr/bin/env bash
# Rust side: formatting, lints, docs, unit and integration tests.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== rust: fmt, clippy, doc"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc -p cotyledon --no-deps --locked --quiet
echo "== rust: tests"
cargo test -p cotyledon --locked
