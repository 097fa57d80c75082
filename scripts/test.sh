#!/usr/bin/env bash
# Installs what the tests need (Debian packages: Postfix, gnome-keyring, dbus, ...) and runs them all:
# formatting, lints, unit tests and the end-to-end tests against a real Postfix and a real keyring.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" = 0 ]; then
  bash tests/setup.sh
else
  sudo bash tests/setup.sh
fi

# rustfmt and clippy come with rustup's default profile; add them where a minimal profile was used.
if command -v rustup >/dev/null; then
  rustup component add rustfmt clippy >/dev/null 2>&1 || true
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The e2e tests drive the real binary: build it before they start.
cargo build --workspace --bins --locked
cargo test --workspace --locked
