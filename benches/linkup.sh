#!/bin/sh
# Benchmark: time from a link's address appearing to the ETRN being sent, median over 20
# link-ups (goal < 50 ms). Needs root (network namespace), iproute2, python3, dbus and
# gnome-keyring (tests/setup.sh installs them). ROUNDS=N changes the count.
set -eu
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
cargo build --release -p mailcall-cli
MAILCALL_CLI="$target/release/mailcall-cli" cargo run --release -p mailcall-e2e --example linkup
