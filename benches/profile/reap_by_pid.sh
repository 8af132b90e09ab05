#!/usr/bin/env bash
# Issue 16's respawn-at-10,000 experiment: the C floor as it is (each
# SIGCHLD reaped with waitpid(-1), which walks the kernel's list of every
# child) against a copy that reaps only the pid the SIGCHLD names (no walk;
# a coalesced SIGCHLD would be missed, so this is a measurement, not a
# supervisor). The second copy runs as the "c" face so that the driver runs
# its 10,000-worker scenarios.
#   bash benches/profile/reap_by_pid.sh
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
cc -O2 -std=c99 -Wall -Wextra -pthread "$ROOT/benches/profile/floor_app.c" -o "$OUT/floor_c"
sed 's/while ((p = waitpid(-1, NULL, WNOHANG)) > 0)/for (int once = 0; !once++ \&\& (p = waitpid(si.si_pid, NULL, WNOHANG)) > 0;)/' \
    "$ROOT/benches/profile/floor_app.c" > "$OUT/floor_pid.c"
grep -q 'waitpid(si.si_pid' "$OUT/floor_pid.c"
cc -O2 -std=c99 -Wall -Wextra -pthread "$OUT/floor_pid.c" -o "$OUT/floor_pid"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
cd "$ROOT"
python3 benches/driver.py --mode quick \
    --face "cfloor=$OUT/floor_c" --face "c=$OUT/floor_pid" \
    --only respawn_n16_wi0,big_respawn
