#!/usr/bin/env bash
# Builds the Python face's wheel as it is shipped: abi3 (CPython 3.9 and
# later), manylinux2014 (glibc 2.17 and later: RHEL 8, Ubuntu 20.04,
# Debian 11 and newer), linked by zig from PyPI's `ziglang` against glibc
# 2.17's symbols. With --sdist, the source distribution too.
#   bash scripts/build-wheel.sh VENV OUTDIR [--sdist]
# VENV: a virtualenv, given maturin and ziglang here if it lacks them.
set -euo pipefail
cd "$(dirname "$0")/.."
# Absolute: the interpreter's path is part of what cargo rebuilds on.
venv=$(cd "$1" && pwd)
out=$2
# Checked with maturin 1.16 and Rust 1.95.
ZIGLANG_VERSION=0.15.2
if [[ ! -x $venv/bin/maturin ]] ||
    [[ "$("$venv/bin/python" -m ziglang version 2>/dev/null || true)" != "$ZIGLANG_VERSION" ]]; then
    "$venv/bin/python" -m pip install -q "maturin>=1.5,<2" "ziglang==$ZIGLANG_VERSION"
fi
# maturin finds zig as `python3 -m ziglang`: the venv first on PATH.
PATH="$venv/bin:$PATH" "$venv/bin/maturin" build --release --zig \
    --compatibility manylinux2014 -o "$out" --interpreter "$venv/bin/python"
if [[ ${3:-} == --sdist ]]; then
    "$venv/bin/maturin" sdist -o "$out"
fi
