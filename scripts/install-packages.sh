#!/bin/sh
# Installs those of the given Debian packages that are not installed yet, with apt-get (as root,
# or via sudo); does nothing, and asks nothing, when all are there. Output goes to stderr, so a
# caller's stdout stays its own.
#   sh scripts/install-packages.sh PACKAGE...
# scripts/run.sh and scripts/package.sh call it with APP_PACKAGES (tests/setup/packages.sh).
set -eu
missing=""
for p in "$@"; do
    case "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)" in
        "install ok installed") ;;
        *) missing="$missing $p" ;;
    esac
done
[ -n "$missing" ] || exit 0
sudo_=""
[ "$(id -u)" = 0 ] || sudo_="sudo"
echo "install-packages.sh: installing$missing" >&2
$sudo_ apt-get -o DPkg::Lock::Timeout=600 update >&2
# shellcheck disable=SC2086 # word splitting of the package list is intended
$sudo_ apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends $missing >&2
