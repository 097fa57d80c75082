#!/usr/bin/env bash
# Installs what the tray app needs to build and run (Debian 12 packages; as root or via sudo),
# builds it and starts it. Arguments go to the app: e.g. `bash scripts/run.sh --tray`.
set -euo pipefail
cd "$(dirname "$0")/.."

. tests/setup/packages.sh
# shellcheck disable=SC2086 # word splitting of the package list is intended
sh scripts/install-packages.sh $APP_PACKAGES
cargo build --release --locked -p mailcall
exec "${CARGO_TARGET_DIR:-target}/release/mailcall" "$@"
