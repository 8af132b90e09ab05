#!/usr/bin/env bash
# Profile experiment behind BENCHMARKS.md's "where the time goes": our
# wheel with one line changed (python/cotyledon/_forking.py imports
# multiprocessing.util at module level, i.e. once in the master, instead
# of in every new worker), run side by side with the reference, our
# unchanged wheel and the pure-Python fork floor (floor_app.py).
#
#   bash benches/profile/preimport_experiment.sh   (after benches/run.sh)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target/bench}
WHEEL=$(ls "$CARGO_TARGET_DIR"/bench-wheels/cotyledon-*.whl | head -n1)
[ -x .venv-bench-exp/bin/python ] || python3 -m venv .venv-bench-exp
.venv-bench-exp/bin/pip install -q --force-reinstall "$WHEEL"
F=$(.venv-bench-exp/bin/python -c 'import cotyledon._forking as f; print(f.__file__)')
.venv-bench-exp/bin/python - "$F" <<'EOF'
import sys
path = sys.argv[1]
src = open(path).read()
line = "import multiprocessing.util  # noqa: F401  (experiment: once, in the master)\n"
if line not in src:
    src = src.replace("import typing\n", "import typing\n\n" + line, 1)
    open(path, "w").write(src)
EOF
exec python3 benches/driver.py --mode quick \
    --face "ref=$ROOT/.venv-bench-ref/bin/python $ROOT/benches/app.py" \
    --face "py=$ROOT/.venv-bench-ours/bin/python $ROOT/benches/app.py" \
    --face "exp=$ROOT/.venv-bench-exp/bin/python $ROOT/benches/app.py" \
    --face "floor=$ROOT/.venv-bench-ref/bin/python $ROOT/benches/profile/floor_app.py" \
    --only startup_n16_wi0,startup_n128_wi0,respawn_n16_wi0,reload_restart,footprint \
    --out benches/results/preimport-experiment.json
