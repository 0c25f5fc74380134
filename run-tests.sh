#!/usr/bin/env bash
# The project's test command: everything a change must pass, on a fresh
# machine with only the Rust toolchain. Each step prints what it runs.
#   ./run-tests.sh          unit, property, integration and CLI tests, then the
#                           model checkers (loom, shuttle) and the broken-engine check
#   SOAK=1 ./run-tests.sh   also the long variants (more model-checking schedules,
#                           a 10-minute daemon soak)
#   FUZZ_SECONDS=60 ./run-tests.sh   a longer fuzz run per target
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# Leave room for the busy-polling tests on small machines.
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-2}"

step() { printf '\n=== %s\n' "$*"; }

step "workspace tests (unit, property, integration, CLI, doc)"
# Benches are compiled by `cargo clippy --all-targets` in CI, not run here.
cargo test --workspace

step "rocev2 hosts in network namespaces (root only)"
bash tests/netns_rocev2.sh

step "ipoibd with the rocev2 provider in two network namespaces (root only)"
bash tests/netns_ipoibd.sh

step "pktgen generator and sink on rocev2 in two network namespaces, lossless and lossy, the sender's rate in the sink's report (root only)"
bash tests/netns_pktgen.sh

step "kernel applications through TUN devices on two ipoibd hosts (root only)"
bash tests/netns_tun.sh

step "four ipoibd hosts on rocev2: multicast, a late joiner, capture, loss and a restart (root only)"
bash tests/netns_multihost.sh

step "rocev2 against Linux kernel rxe in QEMU guests (root only)"
bash tests/rxe_interop.sh

step "ipoibd with the verbs provider on kernel soft-RoCE in QEMU guests (root only)"
bash tests/rxe_verbs.sh

step "pktgen generator and sink on the verbs provider on kernel soft-RoCE in QEMU guests (root only)"
bash tests/rxe_pktgen.sh

step "daemon soak: traffic, port events, SA faults, reloads (30 s; SOAK=1: 10 min)"
bash tests/soak.sh

step "loom model tests of the rings"
RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom \
    cargo test -p ipoib-dataplane --release --test ring_loom

step "shuttle model checking of the join engine"
if [ "${SOAK:-0}" = 1 ]; then export SHUTTLE_ITERATIONS="${SHUTTLE_ITERATIONS:-200000}"; fi
cargo test -p ipoib-control --release --features shuttle --test model_shuttle

step "the seed's race tests catch a deliberately broken engine"
bash control/tests/broken_engine.sh

step "short fuzz run of every parser (${FUZZ_SECONDS:-3}s each)"
if cargo fuzz --version >/dev/null 2>&1; then
    CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}/fuzz" bash fuzz/run.sh "${FUZZ_SECONDS:-3}"
else
    echo "skipped: cargo-fuzz is not installed (cargo install cargo-fuzz; .ci/run does)"
fi

step "all tests passed"
