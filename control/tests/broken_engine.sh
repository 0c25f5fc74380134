#!/usr/bin/env bash
# Builds the engine with `--cfg broken_engine` (the behaviour the seed fixed:
# mutex dropped around join, mc stored after join returns) and checks that
# both seed race tests catch it. Succeeds only if each race test FAILS.
# With --with-model, also checks that the shuttle model catches it.
set -u
cd "$(dirname "$0")/../.."
target="${CARGO_TARGET_DIR:-target}/broken_engine"
out=$(RUSTFLAGS="--cfg broken_engine" CARGO_TARGET_DIR="$target" \
    cargo test -q -p ipoib-control --test races 2>&1)
status=$?
ok=1
for t in race1_callback_before_join_returns_then_flush_leaves_member \
         race2_error_callback_before_join_returns_then_flush_skips_invalid_mc; do
    if grep -q "^test $t ... FAILED" <<<"$out" || grep -q "^    $t$" <<<"$out"; then
        echo "broken engine caught by $t"
    else
        echo "broken engine NOT caught by $t" >&2
        ok=0
    fi
done
if [ "$status" -eq 0 ] || [ "$ok" -ne 1 ]; then
    echo "$out" >&2
    echo "FAIL: the race tests do not detect the broken engine" >&2
    exit 1
fi
echo "ok: both seed races fail on the broken engine"
if [ "${1:-}" = "--with-model" ]; then
    if RUSTFLAGS="--cfg broken_engine" CARGO_TARGET_DIR="$target" \
        cargo test -q -p ipoib-control --features shuttle --test model_shuttle >/dev/null 2>&1; then
        echo "FAIL: the shuttle model does not detect the broken engine" >&2
        exit 1
    fi
    echo "ok: the shuttle model fails on the broken engine"
fi
