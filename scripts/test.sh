#!/usr/bin/env bash
# Installs what the tests need (Debian packages: Postfix, Dovecot, gnome-keyring, dbus, the GUI
# build and desktop packages, ...; the ODMR provider Exim built from source) and runs them all, in
# named steps: formatting, lints, unit tests, the end-to-end tests against a real Postfix, Exim,
# Dovecot and keyring, Windows (both programs cross-built, tests under Wine, the installer), the
# tray app's tests (mock runtime, and its real binary on a throwaway X desktop driven over
# WebDriver), then the Linux package, installed and
# used in a throwaway Debian root (never on this machine: a package the user installed stays).
#
#   bash scripts/test.sh                 every step, in order; stops at the first that fails and
#                                        names it, with the command that reruns only that step
#   bash scripts/test.sh --only STEP     the set-up, then STEP alone (`--list` shows the steps)
#
# When the Exim 4.99.1 source cannot be had (tests/setup/exim.sh exits 3: no copy at hand and no
# route to upstream), every test that does not need Exim still runs; the ODMR tests that do are
# skipped with a loud line that names them and says how to provide the source, and the summary
# counts them.
set -euo pipefail
cd "$(dirname "$0")/.."

steps=(setup fmt clippy build test fuzz windows tray-clippy tray-test package)
describe() {
    case "$1" in
        setup) echo "install the test packages and build Exim (tests/setup.sh)" ;;
        fmt) echo "cargo fmt --check" ;;
        clippy) echo "clippy on the core, CLI and e2e crates" ;;
        build) echo "build the binaries the e2e tests drive" ;;
        test) echo "unit, integration and e2e tests of the core, CLI and e2e crates" ;;
        fuzz) echo "build every cargo-fuzz target and run each for \$MAILCALL_FUZZ_SECS s (30)" ;;
        windows) echo "Windows: both programs built, tests under Wine, the installer (tests/windows)" ;;
        tray-clippy) echo "clippy on the tray app" ;;
        tray-test) echo "the tray app's unit tests and its GUI tests" ;;
        package) echo "build the .deb/.rpm and test them in a throwaway Debian root" ;;
    esac
}

only=""
while [ $# -gt 0 ]; do
    case "$1" in
        --only)
            [ $# -ge 2 ] || { echo "test.sh: --only needs a step (--list shows them)" >&2; exit 2; }
            only=$2
            shift 2
            ;;
        --list)
            for s in "${steps[@]}"; do printf '%-12s %s\n' "$s" "$(describe "$s")"; done
            exit 0
            ;;
        *)
            echo "test.sh: unknown argument $1 (usage: test.sh [--only STEP | --list])" >&2
            exit 2
            ;;
    esac
done
if [ -n "$only" ] && [ -z "$(describe "$only")" ]; then
    echo "test.sh: no step '$only'; the steps are: ${steps[*]}" >&2
    exit 2
fi

sudo_=""
[ "$(id -u)" = 0 ] || sudo_="sudo"
target_dir=${CARGO_TARGET_DIR:-target}

# ---- the step that fails is named, with the command that reruns it alone -----------------------
current=""
started=$(date +%s)
finish() {
    rc=$?
    trap - EXIT
    if [ "$rc" != 0 ] && [ -n "$current" ]; then
        echo "test.sh: FAILED at step '$current' ($(describe "$current")) after $(($(date +%s) - started)) s; rerun only this step: bash scripts/test.sh --only $current" >&2
    fi
    exit "$rc"
}
trap finish EXIT

# ---- the ODMR provider: present, or its tests skipped out loud ---------------------------------
exim_bin() { echo "${MAILCALL_EXIM:-${MAILCALL_CACHE_DIR:-/var/cache/mailcall}/exim/bin/exim}"; }
have_exim() { [ -x "$(exim_bin)" ] && "$(exim_bin)" -bV >/dev/null 2>&1; }
# The tests that start Exim: e2e odmr::, odmr_peer::, the smarthost that limits messages per
# connection (outgoing_kept::) and the GUI's odmr::.
EXIM_KEPT=outgoing_kept::a_provider_that_limits_messages_per_connection_gets_each_message_once
E2E_EXIM_SKIP=(--skip odmr:: --skip odmr_peer:: --skip "$EXIM_KEPT")
GUI_EXIM_SKIP=(--skip odmr::)
skipped_exim=0
skip_note=""
# Counts and names the tests a skip list leaves out of a test binary, and says so loudly.
announce_skip() { # WHAT CARGO-TEST-ARGS...
    what=$1
    shift
    names=$(cargo test "$@" -- --list 2>/dev/null | sed -n 's/: test$//p' | grep -E "^(odmr|odmr_peer)::|^$EXIM_KEPT\$" || true)
    n=$(printf '%s' "$names" | grep -c . || true)
    skipped_exim=$((skipped_exim + n))
    skip_note="$skip_note ${what}: $(echo "$names" | tr '\n' ' ')"
    echo "test.sh: ########## SKIPPING $n Exim test(s) in $what: $(echo "$names" | tr '\n' ' ')-- the Exim $EXIM_VERSION source was not found or downloaded; put exim-$EXIM_VERSION-src.tar.gz in a directory and set MAILCALL_PEERS_DIR to it (or MAILCALL_EXIM to an exim 4.99+ binary), then run: bash scripts/test.sh ##########" >&2
}
EXIM_VERSION=4.99.1

# ---- the steps -----------------------------------------------------------------------------------
step_setup() {
    $sudo_ env ${MAILCALL_PEERS_DIR:+MAILCALL_PEERS_DIR="$MAILCALL_PEERS_DIR"} \
        ${MAILCALL_EXIM_URL:+MAILCALL_EXIM_URL="$MAILCALL_EXIM_URL"} bash tests/setup.sh
    # rustfmt and clippy come with rustup's default profile; add them where a minimal one was used.
    if command -v rustup >/dev/null; then
        rustup component add rustfmt clippy >/dev/null 2>&1 || true
    fi
}

step_fmt() { cargo fmt --all -- --check; }

# Core, CLI and e2e first: they never wait for GTK (src-tauri is not a default member).
# --all-targets leaves out the test targets marked `test = false` (tests/windows): named here.
step_clippy() {
    cargo clippy --all-targets --locked -- -D warnings
    cargo clippy --locked -p mailcall-e2e --test windows -- -D warnings
}

# The e2e tests drive the real binary: build it before they start.
step_build() { cargo build --bins --locked; }

step_test() {
    cargo test --locked -p mailcall-core -p mailcall-cli
    if have_exim; then
        cargo test --locked -p mailcall-e2e
    else
        announce_skip "mailcall-e2e (e2e)" --locked -p mailcall-e2e --test e2e
        cargo test --locked -p mailcall-e2e -- "${E2E_EXIM_SKIP[@]}"
    fi
}

# The fuzz targets (fuzz/, their own workspace) must build, and each runs for MAILCALL_FUZZ_SECS
# seconds (30 by default) without a crash. cargo-fuzz needs nightly flags: RUSTC_BOOTSTRAP=1 on
# stable, given to its commands only. The build goes under the target dir (CI caches it); the
# spool target's scratch spool under a temporary directory removed afterwards.
step_fuzz() {
    if ! command -v cargo-fuzz >/dev/null && ! [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo-fuzz" ]; then
        cargo install cargo-fuzz --locked
    fi
    export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
    local secs=${MAILCALL_FUZZ_SECS:-30} dir scratch t rc=0 targets
    # 0 would mean "for ever" to libFuzzer.
    if ! [[ $secs =~ ^[0-9]+$ ]] || [ "$secs" -lt 1 ]; then
        echo "test.sh: MAILCALL_FUZZ_SECS=$secs is not a number of seconds; set it to 1 or more (30 by default)" >&2
        return 2
    fi
    dir=$(realpath -m "$target_dir/fuzz")
    targets=$(cd fuzz && cargo fuzz list)
    [ -n "$targets" ] || { echo "test.sh: cargo fuzz list named no target" >&2; return 1; }
    (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz build --target-dir "$dir")
    scratch=$(mktemp -d)
    for t in $targets; do
        echo "test.sh: fuzzing $t for $secs s" >&2
        if ! (cd fuzz && RUSTC_BOOTSTRAP=1 TMPDIR=$scratch cargo fuzz run "$t" --target-dir "$dir" -- \
            -max_total_time="$secs" </dev/null); then
            rc=1
            echo "test.sh: fuzz target $t crashed; the input is in fuzz/artifacts/$t/: replay it with: cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run $t artifacts/$t/FILE" >&2
            break
        fi
    done
    rm -rf "$scratch"
    return "$rc"
}

# Windows (x86_64-pc-windows-gnu, cross-built with mingw-w64): both programs clippy clean; the
# core's and the CLI's unit and wire tests run under Wine in the tests' own prefix
# (tests/setup/wine.sh); the installer built with NSIS (scripts/package-windows.sh, which builds
# both programs); then tests/windows: the Windows CLI under Wine against the real Postfix, and the
# installer installed and uninstalled silently. The standard library for the target comes from
# rustup; where it cannot be had, the step is skipped out loud and the summary says so.
skipped_windows=""
step_windows() {
    local win=x86_64-pc-windows-gnu
    if ! command -v rustup >/dev/null || ! rustup target add "$win" >/dev/null 2>&1; then
        skipped_windows="the Windows step (no $win target from rustup)"
        echo "test.sh: ########## SKIPPING the Windows step: the target $win could not be installed with rustup on this machine (run: rustup target add $win), so nothing is built or run for Windows ##########" >&2
        return 0
    fi
    cargo clippy --target "$win" -p mailcall-core -p mailcall-cli --all-targets --locked -- -D warnings
    cargo clippy --target "$win" -p mailcall --locked -- -D warnings
    local prefix=${MAILCALL_CACHE_DIR:-/var/cache/mailcall}/wine
    WINEPREFIX=$prefix WINEDEBUG=-all,err+virtual WINEDLLOVERRIDES="mscoree,mshtml=" \
        CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER=/usr/lib/wine/wine64 \
        cargo test --target "$win" --locked -p mailcall-core -p mailcall-cli
    bash scripts/package-windows.sh --debug
    if have_exim; then
        cargo test --locked -p mailcall-e2e --test windows
    else
        skipped_exim=$((skipped_exim + 1))
        skip_note="$skip_note windows: odmr_fetch_from_exim_over_starttls_with_auth"
        echo "test.sh: ########## SKIPPING 1 Exim test in tests/windows: odmr_fetch_from_exim_over_starttls_with_auth -- the Exim $EXIM_VERSION source was not found or downloaded (see tests/setup/exim.sh) ##########" >&2
        cargo test --locked -p mailcall-e2e --test windows -- --skip odmr_fetch_from_exim
    fi
}

# WebDriver for the GUI test: tauri-driver in front of Debian's WebKitWebDriver.
tray_env() {
    if ! command -v tauri-driver >/dev/null && ! [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/tauri-driver" ]; then
        cargo install tauri-driver --locked
    fi
    export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
}

step_tray-clippy() { cargo clippy -p mailcall --all-targets --locked -- -D warnings; }

# Unit tests (commands on the mock runtime, event -> tray/notification mapping) and the GUI e2e
# test (tests/gui: Xvfb, dunst, a StatusNotifierItem tray, gnome-keyring, Postfix, tauri-driver).
step_tray-test() {
    tray_env
    if have_exim; then
        cargo test -p mailcall --locked
    else
        cargo test -p mailcall --locked --lib --bins
        announce_skip "mailcall (gui)" --locked -p mailcall --test gui
        cargo test -p mailcall --locked --test gui -- "${GUI_EXIM_SKIP[@]}"
    fi
}

# The .deb and .rpm from the debug build above (scripts/package.sh --debug: the Tauri CLI from
# npm, completions and man pages generated from the CLI), then tests/package/run.sh: a throwaway
# Debian root (cached base, an overlay per run) with its own network and PID namespaces, where
# the .deb is installed, checked, used by a normal user on port 25 and under a real systemd
# --user, and purged. This machine's own packages are never touched: a mailcall the user
# installed stays installed, file for file (run.sh checks).
step_package() {
    bash scripts/package.sh --debug
    local bin
    bin=$(cargo test -p mailcall-e2e --test package --locked --no-run --message-format=json |
        sed -n 's/.*"target":{[^}]*"name":"package".*"executable":"\([^"]*\)".*/\1/p' | tail -n 1)
    [ -n "$bin" ] || { echo "test.sh: cargo named no executable for the package test" >&2; return 1; }
    $sudo_ bash tests/package/run.sh "$(cat "$target_dir/package/deb-path")" "$(cat "$target_dir/package/rpm-path")" "$bin"
}

run_step() {
    current=$1
    local t
    t=$(date +%s)
    echo "test.sh: ==== step $1: $(describe "$1")" >&2
    "step_$1"
    echo "test.sh: ==== step $1 passed in $(($(date +%s) - t)) s" >&2
    current=""
}

run_step setup
if [ -n "$only" ]; then
    [ "$only" = setup ] || run_step "$only"
else
    for s in "${steps[@]}"; do
        [ "$s" = setup ] || run_step "$s"
    done
fi
summary="test.sh: passed: ${only:-all ${#steps[@]} steps} in $(($(date +%s) - started)) s"
if [ -n "$skipped_windows" ]; then
    summary="$summary; SKIPPED: $skipped_windows"
fi
if [ "$skipped_exim" -gt 0 ]; then
    summary="$summary; SKIPPED: $skipped_exim Exim test(s) (no Exim $EXIM_VERSION source:$skip_note)"
fi
echo "$summary" >&2
