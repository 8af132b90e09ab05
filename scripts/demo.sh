#!/usr/bin/env bash
# Runs the quickstart: two workers of a service that log their life.
# Stop it with Ctrl-C; from another terminal, `kill -HUP <master pid>`
# reloads and `kill -TERM <master pid>` stops gracefully.
#   bash scripts/demo.sh          # Python face (builds the wheel into .venv)
#   bash scripts/demo.sh rust     # Rust face
#   bash scripts/demo.sh c        # C face
set -euo pipefail
cd "$(dirname "$0")/.."
face="${1:-python}"
case "$face" in
  rust)
    exec cargo run --quiet --release --example quickstart ;;
  c)
    prefix="$PWD/target/c-demo"
    make -s -C bindings/c install PREFIX="$prefix" PROFILE=release >/dev/null
    export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
    # shellcheck disable=SC2046
    cc -Wall -Wextra -o "$prefix/quickstart" examples/quickstart.c \
       $(pkg-config --cflags --libs cotyledon) -Wl,-rpath,"$prefix/lib"
    exec "$prefix/quickstart" ;;
  python)
    bash scripts/python-env.sh >&2
    exec .venv/bin/python examples/quickstart.py ;;
  *)
    echo "usage: $0 [python|rust|c]" >&2; exit 2 ;;
esac
