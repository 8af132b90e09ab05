#!/usr/bin/env bash
# Builds our wheel and installs it into the virtualenv .venv (made if
# missing), with what the demo needs. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip >/dev/null
.venv/bin/python -m pip install --quiet setproctitle
rm -rf target/wheels
bash scripts/build-wheel.sh .venv target/wheels
.venv/bin/python -m pip install --quiet --force-reinstall --no-deps target/wheels/cotyledon-*.whl
echo "cotyledon installed into .venv"
