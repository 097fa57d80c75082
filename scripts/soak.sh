#!/usr/bin/env bash
# Runs the end-to-end tests (tests/e2e) and the tray app's GUI tests (src-tauri/tests/gui) N times
# in a row, to show the suite is stable: prints every failure with the test's name and the run's
# number as it happens, and ends with a line `N passed, M failed` (runs).
#
#   bash scripts/soak.sh N            N runs on a quiet machine
#   bash scripts/soak.sh N --busy     N runs while stress-ng spins on every core (as on a shared
#                                     CI machine); stress-ng is installed when missing
#
# It first runs `scripts/test.sh --only build` (the test packages, Exim, the binaries) and builds
# the test binaries once. Each run's whole output is kept in a log directory (printed at the
# start); a failure's lines are shown from it. Exit status 0 only when every run passed.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
    echo "usage: soak.sh N [--busy]" >&2
    exit 2
}
[ $# -ge 1 ] || usage
runs=$1
shift
[[ "$runs" =~ ^[1-9][0-9]*$ ]] || usage
busy=0
for arg in "$@"; do
    case "$arg" in
        --busy) busy=1 ;;
        *) usage ;;
    esac
done

bash scripts/test.sh --only build
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
command -v tauri-driver >/dev/null || cargo install tauri-driver --locked

# The ODMR tests need Exim (scripts/test.sh says why it may be missing); without it they are
# skipped, and said to be.
exim=${MAILCALL_EXIM:-${MAILCALL_CACHE_DIR:-/var/cache/mailcall}/exim/bin/exim}
e2e_skip=()
gui_skip=()
if ! { [ -x "$exim" ] && "$exim" -bV >/dev/null 2>&1; }; then
    e2e_skip=(--skip odmr:: --skip odmr_peer::)
    gui_skip=(--skip odmr::)
    echo "soak.sh: ########## NO EXIM at $exim: the ODMR tests (e2e odmr::, odmr_peer::, gui odmr::) are SKIPPED in every run ##########" >&2
fi
suites=(e2e gui)
run_suite() { # SUITE
    case "$1" in
        e2e) cargo test --locked -p mailcall-e2e --test e2e -- "${e2e_skip[@]}" ;;
        gui) cargo test --locked -p mailcall --test gui -- "${gui_skip[@]}" ;;
    esac
}
cargo test --locked -p mailcall-e2e --test e2e --no-run
cargo test --locked -p mailcall --test gui --no-run

stress_pid=""
logs=$(mktemp -d /tmp/mailcall-soak.XXXXXX)
stop_stress() {
    if [ -n "$stress_pid" ]; then
        kill -TERM "$stress_pid" 2>/dev/null || true
        wait "$stress_pid" 2>/dev/null || true
        stress_pid=""
    fi
}
trap stop_stress EXIT
if [ "$busy" = 1 ]; then
    # shellcheck source=tests/setup/packages.sh
    . tests/setup/packages.sh
    # shellcheck disable=SC2086 # word splitting of the package list is intended
    sh scripts/install-packages.sh $SOAK_PACKAGES
    cores=$(nproc)
    stress-ng --cpu "$cores" --timeout 0 --quiet >"$logs/stress-ng.log" 2>&1 &
    stress_pid=$!
    echo "soak.sh: stress-ng spins on $cores core(s) (PID $stress_pid) during every run" >&2
fi
echo "soak.sh: $runs run(s) of: ${suites[*]}; logs in $logs" >&2

passed=0
failed=0
for ((n = 1; n <= runs; n++)); do
    ok=1
    for suite in "${suites[@]}"; do
        log=$logs/run$n-$suite.log
        t=$(date +%s)
        if run_suite "$suite" >"$log" 2>&1; then
            echo "soak.sh: run $n $suite: ok in $(($(date +%s) - t)) s ($(grep -E '^test result:' "$log" | tail -n 1))" >&2
        else
            ok=0
            names=$(sed -n 's/^test \(.*\) \.\.\. FAILED$/\1/p' "$log")
            [ -n "$names" ] || names="(no test failed by name: the run itself failed; see $log)"
            while read -r name; do
                echo "soak.sh: run $n $suite: FAILED: $name" >&2
            done <<<"$names"
            # The panic messages, to read without opening the log.
            grep -E "panicked at|^thread '" "$log" | head -n 20 | sed "s/^/soak.sh:   run $n: /" >&2 || true
        fi
    done
    if [ "$ok" = 1 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
done
stop_stress
mode="quiet"
[ "$busy" = 0 ] || mode="busy (stress-ng on every core)"
echo "soak.sh: $mode; logs in $logs" >&2
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
