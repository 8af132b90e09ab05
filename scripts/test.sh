#!/usr/bin/env bash
# Runs every test of the project on a fresh machine that has the Rust
# toolchain and Python 3.11 with pip: it installs what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/test-rust.sh
bash tests/c/run.sh
bash tests/python/run.sh
