#!/usr/bin/env bash
# Installs what the tests need (Debian packages: Postfix, gnome-keyring, dbus, the GUI build and
# desktop packages, ...) and runs them all: formatting, lints, unit tests, the end-to-end tests
# against a real Postfix and a real keyring, then the tray app's tests (mock runtime, and its
# real binary on a throwaway X desktop driven over WebDriver).
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
# Core, CLI and e2e first: they never wait for GTK (src-tauri is not a default member).
cargo clippy --all-targets --locked -- -D warnings
# The e2e tests drive the real binary: build it before they start.
cargo build --bins --locked
cargo test --locked

# ---- Windows builds ----------------------------------------------------------------------------
# The core and the CLI must build for Windows (the control channel and the daemon's signals are
# gated there). The standard library for the target comes from rustup; where it cannot be
# downloaded, say so and go on: the rest of the run does not depend on it.
if command -v rustup >/dev/null && rustup target add x86_64-pc-windows-gnu >/dev/null 2>&1; then
  cargo clippy --target x86_64-pc-windows-gnu -p mailcall-core -p mailcall-cli --locked -- -D warnings
else
  echo "test.sh: NOTE: the Windows target (x86_64-pc-windows-gnu) could not be installed with rustup on this machine; the Windows build check is skipped" >&2
fi

# ---- the tray app ----------------------------------------------------------------------------
# WebDriver for the GUI test: tauri-driver in front of Debian's WebKitWebDriver.
if ! command -v tauri-driver >/dev/null; then
  cargo install tauri-driver --locked
fi
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
cargo clippy -p mailcall --all-targets --locked -- -D warnings
# Unit tests (commands on the mock runtime, event -> tray/notification mapping) and the GUI e2e
# test (tests/gui: Xvfb, dunst, a StatusNotifierItem tray, gnome-keyring, Postfix, tauri-driver).
cargo test -p mailcall --locked

# ---- the Linux package ---------------------------------------------------------------------------
# The .deb and .rpm from the debug build above (scripts/package.sh --debug: the Tauri CLI from
# npm, completions and man pages generated from the CLI), then tests/package: the .deb installed
# into this machine, checked, used by a normal user on port 25 and under a real systemd --user,
# and purged. It installs packages, so it runs only here, as root (ignored in `cargo test`).
bash scripts/package.sh --debug
target_dir=${CARGO_TARGET_DIR:-target}
if [ "$(id -u)" = 0 ]; then
  MAILCALL_DEB=$(cat "$target_dir/package/deb-path") MAILCALL_RPM=$(cat "$target_dir/package/rpm-path") \
    cargo test -p mailcall-e2e --test package --locked -- --ignored
else
  echo "test.sh: NOTE: the package test installs the .deb into this machine and needs root; skipped (as root: MAILCALL_DEB=$(cat "$target_dir/package/deb-path") cargo test -p mailcall-e2e --test package -- --ignored)" >&2
fi
