# Shared set-up for the scripts that run ipoibd inside kernel soft-RoCE
# (rdma_rxe) QEMU guests (../shared/rxe-vm): tests/rxe_verbs.sh,
# tests/rxe_pktgen.sh and benches/verbs_vs_perftest.sh source it.
# The caller sets ROOT (the repository), WORK (a temporary directory), NS (a
# namespace name) and PIDS=() before the functions below, and removes what
# they made on exit with rxe_stop.

RXE_VM=${RXE_VM:-$ROOT/../shared/rxe-vm}

# Why these guests cannot run here, or nothing when they can (before the build).
rxe_unavailable() {
    [ "$(id -u)" = 0 ] || { echo "needs root (a network namespace with taps for the QEMU guests)"; return; }
    [ -x "$RXE_VM/boot.sh" ] || { echo "the rxe-vm harness is not at $RXE_VM"; return; }
    [ -e /dev/net/tun ] || echo "no /dev/net/tun: the guests' taps cannot exist"
}

# The guest image, built once into the cache (about a minute, needs the mirror).
rxe_build_image() {
    bash "$RXE_VM/build.sh" >"$WORK/build.out" 2>&1 || { cat "$WORK/build.out"; return 1; }
}

# ipoibd, ipoibctl and tests/rxe_verbs/guest.sh (as /extra/run.sh) in
# $WORK/extra.cpio; builds them unless IPOIBD_DIR names where they are.
rxe_extra() {
    if [ -z "${IPOIBD_DIR:-}" ]; then
        (cd "$ROOT" && cargo build --release -q --bin ipoibd --bin ipoibctl) || return 1
        IPOIBD_DIR="${CARGO_TARGET_DIR:-$ROOT/target}/release"
    fi
    mkdir -p "$WORK/x/extra"
    for b in ipoibd ipoibctl; do
        cp "$IPOIBD_DIR/$b" "$WORK/x/extra/"
        strip "$WORK/x/extra/$b" 2>/dev/null || true
    done
    cp "$ROOT/tests/rxe_verbs/guest.sh" "$WORK/x/extra/run.sh"
    bash "$RXE_VM/mkcpio.sh" "$WORK/x" "$WORK/extra.cpio" >/dev/null
}

# The namespace with a bridge and N taps (tap0..).
rxe_netns_up() { bash "$RXE_VM/netns.sh" up "$NS" "$1" >/dev/null; }

# Stops what was started (by PID), removes the namespace.
rxe_stop() {
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    PIDS=()
    bash "$RXE_VM/netns.sh" down "$NS" >/dev/null 2>&1 || true
}

# rxe_boot NAME IP TAP ROLE [ENV=VALUE | --peer=IP]...: one guest running
# guest.sh with IPOIB_ROLE=ROLE; its console goes to $WORK/NAME.log. Run it
# with &: the job's PID is boot.sh's (exec), which SIGTERM stops cleanly.
rxe_boot() {
    local name=$1 ip=$2 tap=$3 role=$4
    shift 4
    local args=()
    for e in "$@"; do
        case $e in
        --peer=*) args+=(--peer "${e#--peer=}") ;;
        *) args+=(--env "$e") ;;
        esac
    done
    exec bash "$RXE_VM/boot.sh" --name "$name" --role exec --ip "$ip" --netns "$NS" --tap "$tap" \
        --extra-cpio "$WORK/extra.cpio" --env "IPOIB_ROLE=$role" "${args[@]}" \
        --timeout "${RXE_TIMEOUT:-240}" --log "$WORK/$name.log" >"$WORK/$name.boot" 2>&1
}

# Whether guest NAME reached its ready marker (a guest that did not was
# starved by QEMU on a loaded machine, which says nothing about ipoibd).
# (No grep -q after tr: it stops at the first match, tr dies of SIGPIPE
# and under pipefail the pipeline fails; these greps read everything.)
rxe_booted() { tr -d '\r' <"$WORK/$1.log" 2>/dev/null | grep "^RXE-VM: ready " >/dev/null; }

# rxe_section LOG NAME: the guest's copy of a file, printed between
# "----- NAME" and the next "----- " line.
rxe_section() {
    tr -d '\r' <"$1" | sed -n "/^----- $2\$/,/^----- /p" | sed '1d;$d'
}

# rxe_marker LOG KEY: the last "IPOIB-TEST: KEY VALUE" value.
rxe_marker() { tr -d '\r' <"$1" | sed -n "s/^IPOIB-TEST: $2 //p" | tail -n1; }

# rxe_counter LOG NAME: rxe's hw counter NAME at the guest's end.
rxe_counter() {
    tr -d '\r' <"$1" | sed -n 's/^RXE-VM: counters //p' | tr ' ' '\n' | sed -n "s/^$2=//p" | tail -n1
}

# A key/value board on 10.99.0.1:PORT in the namespace, where guests leave
# what their peers need (a sink's QPN and GID), read with bash's /dev/tcp.
rxe_board_start() {
    local port=$1
    ip netns exec "$NS" python3 "$ROOT/tests/rxe_verbs/board.py" 10.99.0.1 "$port" \
        >"$WORK/board.out" 2>&1 &
    PIDS+=($!)
    local deadline=$((SECONDS + 30))
    until grep -q "^board: listening" "$WORK/board.out" 2>/dev/null; do
        [ $SECONDS -lt $deadline ] || return 1
        sleep 0.1
    done
}
