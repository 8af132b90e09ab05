#!/usr/bin/env bash
# Benchmarks: our engine against the reference Cotyledon 2.2.0, same
# machine, same run.
#
#   bash benches/run.sh [quick|full] [--only key1,key2]
#
# Creates (once) .venv-bench-ref (cotyledon==2.2.0 from PyPI) and
# .venv-bench-ours (our wheel, rebuilt each run with maturin), builds the
# Rust face (`bench_app` example) and the C face (benches/c_app.c on
# libcotyledon), then runs benches/driver.py: a table on stdout, JSON in
# benches/results/<mode>.json.
set -euo pipefail

MODE=${1:-quick}
shift || true
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
PY=${PYTHON:-python3}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target/bench}
OUT_WHEELS=$CARGO_TARGET_DIR/bench-wheels

log() { echo "== $*" >&2; }

if [ ! -x .venv-bench-ref/bin/python ]; then
    log "reference virtualenv (.venv-bench-ref, cotyledon==2.2.0)"
    "$PY" -m venv .venv-bench-ref
    .venv-bench-ref/bin/pip install -q cotyledon==2.2.0
fi

if [ ! -x .venv-bench-ours/bin/maturin ]; then
    log "our virtualenv (.venv-bench-ours)"
    "$PY" -m venv .venv-bench-ours
    .venv-bench-ours/bin/pip install -q maturin
fi
log "building our wheel (maturin build --release)"
rm -rf "$OUT_WHEELS"
.venv-bench-ours/bin/maturin build --release -o "$OUT_WHEELS" >&2
.venv-bench-ours/bin/pip install -q --force-reinstall --no-deps "$OUT_WHEELS"/cotyledon-*.whl
.venv-bench-ours/bin/pip install -q setproctitle >/dev/null 2>&1 || true

log "building the Rust face (cargo build --release --example bench_app)"
cargo build --release --example bench_app >&2
FACES=(
    --face "ref=$ROOT/.venv-bench-ref/bin/python $ROOT/benches/app.py"
    --face "py=$ROOT/.venv-bench-ours/bin/python $ROOT/benches/app.py"
    --face "rust=$CARGO_TARGET_DIR/release/examples/bench_app"
)

if [ -f include/cotyledon.h ] && [ -f bindings/c/Cargo.toml ] && command -v cc >/dev/null; then
    log "building the C face (libcotyledon + benches/c_app.c)"
    if cargo build --release -p cotyledon-c >&2 &&
        cc -O2 -std=c99 -Wall -Wextra -I include benches/c_app.c \
            "$CARGO_TARGET_DIR/release/libcotyledon.a" -lpthread -ldl -lm -lrt -lutil \
            -o "$CARGO_TARGET_DIR/release/bench_c_app" >&2; then
        FACES+=(--face "c=$CARGO_TARGET_DIR/release/bench_c_app")
    else
        log "C face skipped (build failed)"
    fi
fi

# The C floor (benches/profile/floor_app.c, a bare C fork supervisor): the
# bound of the Rust and C faces, measured in the same run.
if command -v cc >/dev/null &&
    cc -O2 -std=c99 -Wall -Wextra -pthread benches/profile/floor_app.c \
        -o "$CARGO_TARGET_DIR/release/bench_floor_c" >&2; then
    FACES+=(--face "cfloor=$CARGO_TARGET_DIR/release/bench_floor_c")
fi

# 10,000 workers (the big_ scenarios) need a process and an fd per worker
# and more: raise the soft limits as far as the hard ones allow.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
ulimit -u "$(ulimit -Hu)" 2>/dev/null || true

# The CPython floor (benches/floor_app.py, a bare fork supervisor on the
# same interpreter): what any engine with forked CPython workers pays here.
FACES+=(--face "floor=$ROOT/.venv-bench-ref/bin/python $ROOT/benches/floor_app.py")

mkdir -p benches/results
exec "$PY" benches/driver.py --mode "$MODE" "${FACES[@]}" --out "benches/results/$MODE.json" "$@"
