#!/usr/bin/env bash
# Installs what the tray app needs to build and run (Debian 12 packages; as root or via sudo),
# builds it and starts it. Arguments go to the app: e.g. `bash scripts/run.sh --tray`.
set -euo pipefail
cd "$(dirname "$0")/.."

. tests/setup/packages.sh
missing=""
for p in $APP_PACKAGES; do
    case "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)" in
        "install ok installed") ;;
        *) missing="$missing $p" ;;
    esac
done
if [ -n "$missing" ]; then
    sudo_="" ; [ "$(id -u)" = 0 ] || sudo_="sudo"
    $sudo_ apt-get -o DPkg::Lock::Timeout=600 update
    # shellcheck disable=SC2086 # word splitting of the package list is intended
    $sudo_ apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends $missing
fi
cargo build --release --locked -p mailcall
exec "${CARGO_TARGET_DIR:-target}/release/mailcall" "$@"
