#!/usr/bin/env bash
# Runs gnocchi-metricd (Gnocchi 4.7.1, a real Cotyledon application: three
# services, oslo.config glue) on the reference Cotyledon 2.2.0 and then on
# our wheel, against the same PostgreSQL indexer and file storage, and
# checks on each that:
#   - the master and its workers start (the metric processors log ready),
#   - measures pushed to the incoming storage are processed by a worker,
#   - SIGTERM stops the master with exit status 0 and leaves no process of
#     its session behind.
#   bash scripts/check-gnocchi.sh [WHEEL]
# WHEEL defaults to the newest wheel in .cache/python-wheels (built by
# tests/python/run.sh or scripts/build-wheel.sh). Needs PostgreSQL's server
# binaries (initdb, pg_ctl, postgres) on PATH or under /usr/lib/postgresql;
# not part of scripts/test.sh, since CI machines have no PostgreSQL.
# Ends with `gnocchi: reference ok, ours ok` or exits non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
WORK=$ROOT/.cache/gnocchi
VENV=$WORK/venv
PORT=${GNOCCHI_PG_PORT:-5499}
wheel=${1:-$(ls -t "$ROOT"/.cache/python-wheels/cotyledon-*.whl 2>/dev/null | head -n 1)}
[[ -f $wheel ]] || { echo "no wheel: build one with tests/python/run.sh or pass its path" >&2; exit 2; }

pgbin=$(dirname "$(command -v initdb 2>/dev/null || ls /usr/lib/postgresql/*/bin/initdb | tail -n 1)")
[[ -x $pgbin/pg_ctl ]] || { echo "PostgreSQL's server binaries not found" >&2; exit 2; }
# PostgreSQL refuses to run as root.
as_pg() { if ((EUID == 0)); then runuser -u nobody -- "$@"; else "$@"; fi; }

rm -rf "$WORK/pg" "$WORK/storage"
mkdir -p "$WORK/pg"
((EUID == 0)) && chown nobody "$WORK/pg"
[[ -x $VENV/bin/python ]] || python3.11 -m venv "$VENV"
"$VENV/bin/pip" install -q "gnocchi[postgresql]==4.7.1" psycopg2-binary

master=
cleanup() {
    [[ -n $master ]] && kill -KILL -- "-$master" 2>/dev/null || true
    as_pg "$pgbin/pg_ctl" -D "$WORK/pg/data" -m immediate stop >/dev/null 2>&1 || true
}
trap cleanup EXIT
as_pg "$pgbin/initdb" -D "$WORK/pg/data" -A trust -U postgres >/dev/null
as_pg "$pgbin/pg_ctl" -D "$WORK/pg/data" -w -l "$WORK/pg/log" \
    -o "-k $WORK/pg -p $PORT -c listen_addresses=127.0.0.1" start >/dev/null

cat >"$WORK/gnocchi.conf" <<EOF
[DEFAULT]
debug = false
[indexer]
url = postgresql://postgres@127.0.0.1:$PORT/gnocchi
[storage]
driver = file
file_basepath = $WORK/storage
[metricd]
workers = 2
metric_processing_delay = 1
EOF

# Pushes 5 measures for a new metric and waits until a worker processed them.
cat >"$WORK/push.py" <<'EOF'
import sys, time, uuid
import numpy
from gnocchi import incoming, indexer, service
conf = service.prepare_service(args=["--config-file", sys.argv[1]], log_to_std=False)
metric = indexer.get_driver(conf).create_metric(uuid.uuid4(), creator="check", archive_policy_name="low")
inbox = incoming.get_driver(conf)
now = numpy.datetime64(int(time.time()), "s")
inbox.add_measures(metric.id, [incoming.Measure(now - numpy.timedelta64(60 * i, "s"), float(i)) for i in range(5)])
start = time.monotonic()
while time.monotonic() - start < 60:
    if not inbox.has_unprocessed(metric.id):
        print(f"processed in {time.monotonic() - start:.1f} s")
        sys.exit(0)
    time.sleep(0.2)
sys.exit("measures not processed within 60 s")
EOF

# wait_for SECONDS CMD...: polls CMD every 0.1 s until it succeeds.
wait_for() {
    local end=$((SECONDS + $1))
    shift
    until "$@"; do
        ((SECONDS < end)) || return 1
        sleep 0.1
    done
}

check() {
    local label=$1 log=$WORK/$1.log rc
    PGOPTIONS=--client-min-messages=warning psql -q -h 127.0.0.1 -p "$PORT" -U postgres -c "DROP DATABASE IF EXISTS gnocchi" -c "CREATE DATABASE gnocchi" >/dev/null
    rm -rf "$WORK/storage"
    timeout 180 "$VENV/bin/gnocchi-upgrade" --config-file "$WORK/gnocchi.conf" >"$WORK/$label-upgrade.log" 2>&1
    setsid "$VENV/bin/gnocchi-metricd" --config-file "$WORK/gnocchi.conf" >"$log" 2>&1 &
    master=$!
    wait_for 60 bash -c "[[ \$(grep -c 'does not support notification' '$log') -ge 2 ]]" ||
        { echo "$label: the metric processors did not start" >&2; tail -n 20 "$log" >&2; return 1; }
    echo "$label: $("$VENV/bin/python" "$WORK/push.py" "$WORK/gnocchi.conf" 2>>"$log")"
    kill -TERM "$master"
    rc=0
    wait "$master" || rc=$?
    wait_for 30 bash -c "! ps -o pid= -s $master | grep -q ." ||
        { echo "$label: processes left after the master exited:" >&2; ps -f -s "$master" >&2; return 1; }
    master=
    echo "$label: exit status $rc, no process left"
    ((rc == 0))
}

"$VENV/bin/pip" install -q --force-reinstall --no-deps cotyledon==2.2.0
check reference
"$VENV/bin/pip" install -q --force-reinstall --no-deps "$wheel"
"$VENV/bin/python" -c 'import cotyledon._core' # ours, not the reference
check ours
echo "gnocchi: reference ok, ours ok"
