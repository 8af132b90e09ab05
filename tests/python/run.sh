#!/usr/bin/env bash
# Python test suite of cotyledon: builds our abi3 manylinux2014 wheel and
# the sdist (scripts/build-wheel.sh), installs the wheel (not editable)
# into a virtualenv per CPython, and runs
#   - our scenario tests (tests/python/test_*.py),
#   - the reference's own test suite, fetched unchanged from the
#     cotyledon==2.2.0 sdist at test time, against OUR installed wheel,
#   - mypy's stubtest on cotyledon._core,
# on CPython 3.11 (required), and the quickstart and master-threads
# scenarios + the reference suite on every other CPython among 3.9, 3.10, 3.12, 3.13 found under the
# pyenv root (skipped, and said so, when absent). On 3.12+ deprecation
# warnings are errors (a fork from a multi-threaded process fails the run).
#
# Called from the repo root by scripts/test.sh on a fresh machine that has
# the Rust toolchain and CPython 3.11 with pip. Ends with the line
#   python: N passed, M failed
# and exits non-zero on any failure.
#
# Environment knobs:
#   PYTHON_TEST_VERSIONS  other interpreters to try (default "3.9 3.10 3.12 3.13")
#   PYTHON_TEST_FULL=1    run all our scenario tests on the other interpreters too
#   PYTHON_TEST_SKIP_BUILD=1  reuse the wheel already in .cache/python-wheels
set -euo pipefail

cd "$(dirname "$0")/../.."
ROOT=$PWD
HERE=$ROOT/tests/python
CACHE=$ROOT/.cache
WHEELS=$CACHE/python-wheels
REFDIR=$CACHE/reference
RESULTS=$CACHE/python-results
mkdir -p "$CACHE" "$WHEELS" "$REFDIR" "$RESULTS"
rm -f "$RESULTS"/*.xml

PASSED=0
FAILED=0
FAILURES=()
SKIPPED_INTERPRETERS=()

# The reference's tests excluded by name (see tests/python/README.md).
# Only tests of the reference's private multiprocessing machinery.
# No reference test is excluded: even the two of _utils.spawn_process pass.
# Run apart, up to 3 attempts (see README.md): the test itself is racy, it
# reads the lines collected by its reader thread as soon as the master has
# exited, without waiting for that thread to drain the pipe.
REF_RACY_K="TestTermDuringStartupCotyledon"

log() { printf '\n=== %s\n' "$*"; }

step_ok() { PASSED=$((PASSED + 1)); }
step_fail() {
    FAILED=$((FAILED + 1))
    FAILURES+=("$1")
    echo "FAILED: $1" >&2
}

# count_junit XML RC LABEL: add a pytest run's results to the totals.
count_junit() {
    local xml=$1 rc=$2 label=$3 counts p f
    if [[ -f $xml ]]; then
        counts=$("$VENV/bin/python" - "$xml" <<'EOF'
import sys
import xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
t = f = s = 0
for su in suites:
    t += int(su.get("tests", 0))
    f += int(su.get("failures", 0)) + int(su.get("errors", 0))
    s += int(su.get("skipped", 0))
print(t - f - s, f)
EOF
)
    else
        counts="0 0"
    fi
    read -r p f <<<"$counts"
    PASSED=$((PASSED + p))
    FAILED=$((FAILED + f))
    if ((f > 0)); then
        FAILURES+=("$label: $f test(s) failed")
    fi
    if ((rc == 5)); then
        step_fail "$label: no tests collected"
    elif ((rc != 0 && f == 0)); then
        step_fail "$label: exit status $rc"
    fi
}

# find_python VERSION: path of a working interpreter, or nothing.
find_python() {
    local v=$1 root cand
    local roots=()
    if command -v pyenv >/dev/null 2>&1; then
        roots+=("$(pyenv root)")
    fi
    roots+=("${PYENV_ROOT:-}" "/root/.pyenv" "$HOME/.pyenv")
    for root in "${roots[@]}"; do
        [[ -n $root && -d $root/versions ]] || continue
        cand=$(ls -d "$root"/versions/"$v".* 2>/dev/null | grep -E "/$v\.[0-9]+$" | sort -V | tail -n 1 || true)
        if [[ -n $cand && -x $cand/bin/python$v ]] && "$cand/bin/python$v" -c 'pass' 2>/dev/null; then
            echo "$cand/bin/python$v"
            return
        fi
    done
    for cand in "python$v" "/usr/bin/python$v" "/usr/local/bin/python$v"; do
        if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'pass' 2>/dev/null; then
            command -v "$cand"
            return
        fi
    done
}

# setup_venv DIR PYTHON PACKAGES...: create the venv and its deps once.
setup_venv() {
    local dir=$1 py=$2
    shift 2
    local want="$* $("$py" -c 'import sys; print(sys.version)')"
    if [[ ! -x $dir/bin/python ]]; then
        "$py" -m venv "$dir"
    fi
    if [[ "$(cat "$dir/.cotyledon-test-deps" 2>/dev/null || true)" != "$want" ]]; then
        "$dir/bin/python" -m pip install -q --upgrade pip
        "$dir/bin/python" -m pip install -q "$@"
        echo "$want" >"$dir/.cotyledon-test-deps"
    fi
}

# install_wheel VENV: install our wheel (and its dependencies), not editable.
install_wheel() {
    local venv=$1
    "$venv/bin/python" -m pip install -q "$WHEEL"
    "$venv/bin/python" -m pip install -q --force-reinstall --no-deps "$WHEEL"
}

# fetch_reference: the reference sdist's test suite, unchanged.
fetch_reference() {
    local py=$1 sdist
    sdist=$(ls "$REFDIR"/cotyledon-2.2.0.tar.gz 2>/dev/null || true)
    if [[ -z $sdist ]]; then
        "$py" -m pip download -q --no-deps --no-binary :all: cotyledon==2.2.0 -d "$REFDIR"
        sdist=$REFDIR/cotyledon-2.2.0.tar.gz
    fi
    if [[ ! -f $REFDIR/cotyledon-2.2.0/cotyledon/tests/test_functional.py ]]; then
        tar -xzf "$sdist" -C "$REFDIR"
    fi
    REF_TESTS=$REFDIR/cotyledon-2.2.0/cotyledon/tests
}

# pkg_dir VENV: directory of the installed cotyledon package.
pkg_dir() {
    (cd "$CACHE" && "$1/bin/python" -c 'import os, cotyledon; print(os.path.dirname(cotyledon.__file__))')
}

# run_reference_suite VENV LABEL PYTEST_ARGS...: the reference's tests,
# copied into the installed package as cotyledon/tests, run against it
# under a child subreaper, with the venv's python first on PATH (its
# functional tests run `python examples.py <name>`).
run_reference_suite() {
    local venv=$1 label=$2 pkg rc xml
    shift 2
    local args=()
    pkg=$(pkg_dir "$venv")
    case $pkg in
    "$venv"/*) ;;
    *)
        step_fail "$label: cotyledon imported from $pkg, not from $venv"
        return
        ;;
    esac
    rm -rf "$pkg/tests"
    cp -r "$REF_TESTS" "$pkg/tests"
    for a in "$@"; do
        if [[ $a == --no-test-unit ]]; then
            args+=(--ignore="$pkg/tests/test_unit.py")
        else
            args+=("$a")
        fi
    done
    xml=$RESULTS/$label.xml
    log "$label: reference test suite against our wheel ($pkg)"
    rc=0
    (cd "$CACHE" && PATH="$venv/bin:$PATH" timeout 900 \
        "$venv/bin/python" "$HERE/subreaper.py" -- \
        "$venv/bin/python" -m pytest -p no:cacheprovider -q -rfEs \
        --timeout=120 --junitxml="$xml" -k "not $REF_RACY_K" \
        "${args[@]}" "$pkg/tests") || rc=$?
    count_junit "$xml" "$rc" "$label"
    local attempt
    for attempt in 1 2 3; do
        rc=0
        (cd "$CACHE" && PATH="$venv/bin:$PATH" timeout 300 \
            "$venv/bin/python" "$HERE/subreaper.py" -- \
            "$venv/bin/python" -m pytest -p no:cacheprovider -q -rfE \
            --timeout=120 -k "$REF_RACY_K" "${args[@]}" "$pkg/tests") || rc=$?
        if ((rc == 0)); then
            break
        fi
        echo "$label: $REF_RACY_K attempt $attempt failed (exit $rc)"
    done
    if ((rc == 0)); then
        step_ok
    else
        step_fail "$label: $REF_RACY_K failed 3 times"
    fi
    rm -rf "$pkg/tests"
}

# run_our_tests VENV LABEL PYTEST_ARGS...: our scenario tests.
run_our_tests() {
    local venv=$1 label=$2 rc xml
    shift 2
    xml=$RESULTS/$label.xml
    log "$label: our scenario tests"
    rc=0
    (cd "$ROOT" && PATH="$venv/bin:$PATH" timeout 900 \
        "$venv/bin/python" -m pytest -c "$HERE/pytest.ini" --rootdir "$HERE" \
        -p no:cacheprovider -q -rfEs --timeout=120 --junitxml="$xml" "$@") || rc=$?
    count_junit "$xml" "$rc" "$label"
}

TEST_DEPS=(pytest pytest-timeout setproctitle oslo.config mock prometheus_client)
# 3.11 only: an oslo.service threading-backend application under spawn
# (test_spawn.py). oslo.service 4.x needs CPython 3.11+; without its
# "threading" extra, which would pull the reference's cotyledon from PyPI
# (our wheel is installed over whatever is there anyway).
OSLO_SERVICE_DEPS=("oslo.service>=4,<5" futurist)

# ---------------------------------------------------------------- 3.11 ----
PY311=$(find_python 3.11)
if [[ -z $PY311 ]]; then
    echo "CPython 3.11 not found" >&2
    echo "python: 0 passed, 1 failed"
    exit 1
fi
log "CPython 3.11: $PY311"
VENV=$ROOT/.venv
setup_venv "$VENV" "$PY311" maturin mypy "${TEST_DEPS[@]}" "${OSLO_SERVICE_DEPS[@]}"

if [[ ${PYTHON_TEST_SKIP_BUILD:-0} != 1 ]]; then
    log "building the abi3 manylinux2014 wheel and the sdist (scripts/build-wheel.sh)"
    rm -f "$WHEELS"/*.whl "$WHEELS"/*.tar.gz
    if bash "$ROOT/scripts/build-wheel.sh" "$VENV" "$WHEELS" --sdist; then
        step_ok
    else
        step_fail "scripts/build-wheel.sh (maturin build --zig, maturin sdist)"
    fi
fi
WHEEL=$(ls "$WHEELS"/cotyledon-2.2.0-cp39-abi3-*.whl 2>/dev/null | head -n 1 || true)
if [[ -z $WHEEL ]]; then
    ls -l "$WHEELS" >&2 || true
    step_fail "no cotyledon-2.2.0-cp39-abi3-*.whl wheel in $WHEELS"
    printf '\nFailures:\n'
    printf '  %s\n' "${FAILURES[@]}"
    echo "python: $PASSED passed, $FAILED failed"
    exit 1
fi
log "wheel: $WHEEL"
install_wheel "$VENV"
fetch_reference "$VENV/bin/python"

SDIST=$(ls "$WHEELS"/cotyledon-2.2.0.tar.gz 2>/dev/null || true)
if [[ -z $SDIST ]]; then
    step_fail "no cotyledon-2.2.0.tar.gz sdist in $WHEELS"
fi
# The sdist is installed (compiled) once, by test_packaging.py here only.
COTYLEDON_TEST_SDIST=$SDIST run_our_tests "$VENV" "ours-3.11" "$HERE"
run_reference_suite "$VENV" "reference-suite-3.11"

log "stubtest cotyledon._core"
if (cd "$CACHE" && "$VENV/bin/python" -m mypy.stubtest cotyledon._core); then
    step_ok
else
    step_fail "stubtest cotyledon._core"
fi

# -------------------------------------------------------- other CPythons ----
for v in ${PYTHON_TEST_VERSIONS:-3.9 3.10 3.12 3.13}; do
    py=$(find_python "$v")
    if [[ -z $py ]]; then
        log "CPython $v: not found under the pyenv root, SKIPPED"
        SKIPPED_INTERPRETERS+=("$v")
        continue
    fi
    log "CPython $v: $py"
    venv=$ROOT/.venv-$v
    if ! setup_venv "$venv" "$py" "${TEST_DEPS[@]}"; then
        step_fail "CPython $v: virtualenv setup"
        continue
    fi
    if ! install_wheel "$venv"; then
        step_fail "CPython $v: installing $WHEEL"
        continue
    fi
    extra=()
    ref_extra=()
    warn_env=()
    case $v in
    3.12 | 3.13)
        extra=(-W error::DeprecationWarning)
        warn_env=(PYTHONWARNINGS=error::DeprecationWarning)
        ;;
    3.9)
        # The reference's test_unit.py needs 3.10 to be imported at all
        # (typing.ParamSpec at module level): see README.md.
        ref_extra=(--no-test-unit)
        ;;
    esac
    if [[ ${PYTHON_TEST_FULL:-0} == 1 ]]; then
        ours=("$HERE")
    else
        # The quickstart, plus the master-with-threads scenarios (a fork
        # from a multi-threaded master must not warn on 3.12+), and the
        # children forked inside a worker (threading differs by version),
        # and the start methods (what the default context means differs
        # by version; a spawned worker is that version's fresh interpreter).
        ours=("$HERE/test_quickstart.py" "$HERE/test_master.py" "$HERE/test_grandchildren.py"
            "$HERE/test_spawn.py")
    fi
    if ((${#warn_env[@]})); then export "${warn_env[@]}"; fi
    run_our_tests "$venv" "ours-$v" "${extra[@]}" "${ours[@]}"
    run_reference_suite "$venv" "reference-suite-$v" "${extra[@]}" "${ref_extra[@]}"
    unset PYTHONWARNINGS
done

# ------------------------------------------------------------- summary ----
echo
if ((${#SKIPPED_INTERPRETERS[@]})); then
    echo "Skipped interpreters (absent): ${SKIPPED_INTERPRETERS[*]}"
fi
if ((${#FAILURES[@]})); then
    echo "Failures:"
    printf '  %s\n' "${FAILURES[@]}"
fi
echo "python: $PASSED passed, $FAILED failed"
((FAILED == 0))
