#!/usr/bin/env bash
# A/B of ServiceManager(gc_freeze=...) in one run: our wheel with the
# freeze (the default) and without, and the CPython floor, on the events
# the freeze could move (start-up, respawn, footprint). Run benches/run.sh
# once first (it builds the virtualenvs and installs the wheel).
#   bash benches/gc_freeze_ab.sh [quick|full]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
PY=$ROOT/.venv-bench-ours/bin/python
exec python3 benches/driver.py --mode "${1:-quick}" \
    --face "py=/usr/bin/env BENCH_GC_FREEZE=1 $PY $ROOT/benches/app.py" \
    --face "nofreeze=/usr/bin/env BENCH_GC_FREEZE=0 $PY $ROOT/benches/app.py" \
    --face "floor=$ROOT/.venv-bench-ref/bin/python $ROOT/benches/floor_app.py" \
    --only startup_n128_wi0,startup_n1000_wi0,respawn_n16_wi0,mass_respawn_64,footprint \
    --out benches/results/gc_freeze_ab.json
