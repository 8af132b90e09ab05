#!/bin/sh
# Builds libcotyledon (CARGO, PROFILE, BUILT from the Makefile) and saves
# what its static library needs besides itself, as rustc reports it, in
# $BUILT/libs-private: -lgcc_s becomes -lgcc_eh (the static unwinder; a
# fully static link has no libgcc_s).
set -eu
cd "$(dirname "$0")/../.."
mkdir -p "$BUILT"
log="$BUILT/cargo-rustc.log"
build() {
    # rustc prints the list only when it builds the crate.
    status=0
    $CARGO rustc -p cotyledon-c --lib --locked --profile "$PROFILE" \
        -- --print native-static-libs >"$log" 2>&1 || status=$?
    cat "$log" >&2
    return "$status"
}
build
libs=$(sed -n 's/.*native-static-libs: //p' "$log" | tail -n 1)
if [ -z "$libs" ] && [ ! -s "$BUILT/libs-private" ]; then
    # Built before, without the list: build the crate again.
    $CARGO clean -p cotyledon-c --profile "$PROFILE" >/dev/null 2>&1 || true
    build
    libs=$(sed -n 's/.*native-static-libs: //p' "$log" | tail -n 1)
fi
if [ -n "$libs" ]; then
    printf '%s\n' "$libs" | sed 's/-lgcc_s\b/-lgcc_eh/g' >"$BUILT/libs-private"
fi
test -s "$BUILT/libs-private" || { echo "rustc gave no native-static-libs" >&2; exit 1; }
