#!/usr/bin/env bash
# The C API's tests: builds libcotyledon, checks the committed header
# against cbindgen 0.29.4, installs into a temporary prefix, builds the
# tests and the quickstart from that prefix with pkg-config (shared and
# static, -Wall -Wextra -Werror), runs them as real processes, and runs the
# unit/misuse tests under valgrind. Ends with "C tests: N passed, M failed".
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
CBINDGEN_VERSION=0.29.4
PROFILE=${COTYLEDON_C_PROFILE:-debug}

passed=0
failed=0
ok() { echo "PASS $1"; passed=$((passed + 1)); }
ko() { echo "FAIL $1"; failed=$((failed + 1)); }
check() { # name command...
    local name=$1
    shift
    if "$@"; then ok "$name"; else ko "$name"; fi
}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/cotyledon-c.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

echo "== c: tools"
missing=()
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
command -v g++ >/dev/null 2>&1 || missing+=(g++) # the header must compile as C++
if [ "${#missing[@]}" -gt 0 ]; then
    apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if [ "$(cbindgen --version 2>/dev/null || true)" != "cbindgen $CBINDGEN_VERSION" ]; then
    cargo install cbindgen --version "$CBINDGEN_VERSION" --locked --force
fi
export PATH="$HOME/.cargo/bin:$PATH"

echo "== c: header"
cbindgen --quiet --config bindings/c/cbindgen.toml --output "$WORK/cotyledon.h" bindings/c
check header_up_to_date diff -u include/cotyledon.h "$WORK/cotyledon.h"
version=$(sed -n 's/^version = "\(.*\)"/\1/p' bindings/c/Cargo.toml | head -n1)
header_version=$(awk '/#define COTYLEDON_VERSION_(MAJOR|MINOR|PATCH)/ {printf "%s%s", sep, $3; sep="."}' include/cotyledon.h)
check "header_version_macros($header_version)" test "$header_version" = "$version"
check header_c99 gcc -std=c99 -pedantic -Wall -Wextra -Werror -Iinclude -c tests/c/header.c -o "$WORK/h.o"
check header_cxx g++ -x c++ -std=c++11 -pedantic -Wall -Wextra -Werror -Iinclude -c tests/c/header.c -o "$WORK/hxx.o"

echo "== c: Rust unit tests of the boundary"
check rust_boundary_tests cargo test -p cotyledon-c --locked --quiet

echo "== c: build and install (PROFILE=$PROFILE)"
PREFIX="$WORK/prefix"
make --no-print-directory -C bindings/c install PREFIX="$PREFIX" PROFILE="$PROFILE"
export PKG_CONFIG_PATH="$PREFIX/lib/pkgconfig"
export LD_LIBRARY_PATH="$PREFIX/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
check pkg_config_modversion test "$(pkg-config --modversion cotyledon)" = "$version"
check ctl_installed test -x "$PREFIX/bin/cotyledon-ctl"
abi=$(sed -n 's/^abi = \([0-9]*\)$/\1/p' bindings/c/Cargo.toml)
header_abi=$(awk '/#define COTYLEDON_ABI_VERSION/ {print $3}' include/cotyledon.h)
check "header_abi_macro($header_abi)" test "$header_abi" = "$abi"
check "soname_is_the_abi(libcotyledon.so.$abi)" \
    bash -c "readelf -d '$PREFIX/lib/libcotyledon.so.$version' | grep -q 'SONAME.*\[libcotyledon.so.$abi\]'"
check soname_links test "$(readlink "$PREFIX/lib/libcotyledon.so")" = "libcotyledon.so.$abi" -a \
    "$(readlink "$PREFIX/lib/libcotyledon.so.$abi")" = "libcotyledon.so.$version"
for f in "lib/libcotyledon.so.$version" lib/libcotyledon.a bin/cotyledon-ctl; do
    check "installed_without_debug_info($f)" bash -c "! readelf -S '$PREFIX/$f' | grep -q '\.debug_info'"
done
# A read-only checkout builds and installs: only the target directory
# (CARGO_TARGET_DIR) is written. The same target, seen at another path.
RO_PREFIX="$WORK/ro-prefix"
mkdir -p "$WORK/ro-target"
check make_install_from_a_read_only_checkout unshare --mount sh -c "
    mount --bind '$ROOT/target' '$WORK/ro-target' &&
    mount --bind '$ROOT' '$ROOT' && mount -o remount,bind,ro '$ROOT' &&
    ! touch '$ROOT/.write-test' 2>/dev/null &&
    CARGO_TARGET_DIR='$WORK/ro-target' make --no-print-directory -C '$ROOT/bindings/c' install \
        PREFIX='$RO_PREFIX' PROFILE='$PROFILE' >'$WORK/ro.log' 2>&1 &&
    test -s '$RO_PREFIX/lib/libcotyledon.a' -a -s '$RO_PREFIX/lib/pkgconfig/cotyledon.pc'" ||
    cat "$WORK/ro.log"
# The control socket scenarios drive the installed client.
export DRIVER_CTL="$PREFIX/bin/cotyledon-ctl" DRIVER_TMP="$WORK"

CFLAGS="-Wall -Wextra -Werror -g"
SHARED_LIBS=$(pkg-config --libs cotyledon)
STATIC_LIBS=$(pkg-config --static --libs cotyledon | sed 's/-lcotyledon/-Wl,-Bstatic -lcotyledon -Wl,-Bdynamic/')
CPPFLAGS=$(pkg-config --cflags cotyledon)
B="$WORK/bin"
mkdir -p "$B"
build() { # out src std libs
    # shellcheck disable=SC2086
    gcc -std="$3" $CFLAGS $CPPFLAGS "$2" -o "$B/$1" $4 -pthread
}
check build_quickstart_shared build quickstart_shared examples/quickstart.c c99 "$SHARED_LIBS"
check build_quickstart_static build quickstart_static examples/quickstart.c c99 "$STATIC_LIBS"
for t in app unit; do
    check "build_${t}_shared" build "${t}_shared" "tests/c/$t.c" c11 "$SHARED_LIBS"
    check "build_${t}_static" build "${t}_static" "tests/c/$t.c" c11 "$STATIC_LIBS"
done
# shellcheck disable=SC2086
check build_driver gcc -std=c11 $CFLAGS tests/c/driver.c -o "$B/driver"
check static_binary_has_no_libcotyledon_dependency \
    bash -c "! readelf -d '$B/app_static' | grep -q libcotyledon"
check shared_binary_needs_the_abi \
    bash -c "readelf -d '$B/app_shared' | grep -q 'NEEDED.*\[libcotyledon.so.$abi\]'"
# Fully static (cc -static) with what pkg-config --static says.
FULL_LIBS=$(pkg-config --static --libs cotyledon)
fullstatic() { # out src std
    # shellcheck disable=SC2086
    gcc -static -std="$3" $CFLAGS $CPPFLAGS "$2" -o "$B/$1" $FULL_LIBS -pthread 2>"$B/$1.link.log"
}
check build_quickstart_fullstatic fullstatic quickstart_fullstatic examples/quickstart.c c99
check build_app_fullstatic fullstatic app_fullstatic tests/c/app.c c11
check fullstatic_has_no_dynamic_section \
    bash -c "readelf -d '$B/app_fullstatic' 2>&1 | grep -q 'no dynamic section'"

run_counted() { # a test program printing PASS/FAIL lines
    local out="$WORK/out.$RANDOM"
    local rc=0
    "$@" >"$out" 2>"$out.err" || rc=$?
    grep -E '^(PASS|FAIL)' "$out" || true
    local p f
    p=$(grep -c '^PASS' "$out" || true)
    f=$(grep -c '^FAIL' "$out" || true)
    passed=$((passed + p))
    failed=$((failed + f))
    if [ "$rc" -ne 0 ] || [ "$f" -ne 0 ] || [ "$p" -eq 0 ]; then
        [ "$f" -ne 0 ] || failed=$((failed + 1))
        echo "---- $* exited with $rc; stdout/stderr:"
        cat "$out" "$out.err"
    fi
}

echo "== c: unit and misuse tests"
run_counted "$B/unit_shared" shared
run_counted "$B/unit_static" static

echo "== c: process scenarios"
run_counted "$B/driver" "$B/app_shared" "$B/quickstart_shared" shared
run_counted "$B/driver" "$B/app_static" "$B/quickstart_static" static
run_counted "$B/driver" "$B/app_fullstatic" "$B/quickstart_fullstatic" fullstatic \
    startup_and_sigterm respawn_after_sigkill reload_callback sigint quickstart

echo "== c: valgrind"
if command -v valgrind >/dev/null 2>&1; then
    check valgrind_unit valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,possible \
        --child-silent-after-fork=yes --trace-children=no --log-file="$WORK/valgrind.log" \
        "$B/unit_shared" valgrind
    if [ -s "$WORK/valgrind.log" ]; then cat "$WORK/valgrind.log"; fi
    # The process scenarios with the master (and the workers it forks) under
    # valgrind: an invalid access or a definite leak makes that process exit
    # 99, which the scenario's exit-status checks catch. (Workers end with
    # _exit while their threads run, so "possibly lost" thread stacks there
    # are expected and not counted.) "reconfigure" runs a second thread in
    # its master: the group SIGTERM at the end of a shutdown must never
    # reach the master itself, or valgrind could deliver it after run()
    # returned, when SIGTERM kills again.
    DRIVER_WRAP="valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite --child-silent-after-fork=yes" \
        run_counted "$B/driver" "$B/app_shared" "$B/quickstart_shared" valgrind \
        startup_and_sigterm respawn_after_sigkill terminate_exit_status run_exit_status reload_callback \
        reload_null_restarts graceful_timeout sigint master_sigkill shutdown_from_hook reconfigure quickstart \
        status_json control_socket policy_stop_on_exit policy_give_up identity reload_check
else
    ko "valgrind_unit (valgrind not installed)"
fi

echo "C tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
