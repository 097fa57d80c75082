#!/bin/sh
# Builds Exim 4.99.1 from upstream source: the ODMR (RFC 2645, ATRN) provider the e2e tests run
# as the "ISP" (tests/exim.rs). Debian 12's exim4 is 4.96, which has no ATRN.
#
# The build lives in a cache dir OUTSIDE the clone, named for this script's content (which holds
# the Local/Makefile settings), so a changed setting builds afresh and CI builds once per machine:
#   $MAILCALL_CACHE_DIR/exim-4.99.1-<hash>/bin/exim      (MAILCALL_CACHE_DIR: /var/cache/mailcall)
#   $MAILCALL_CACHE_DIR/exim -> exim-4.99.1-<hash>       (the fixed path tests/exim.rs looks at)
# The tests take MAILCALL_EXIM (a path to an exim binary) before that fixed path.
#
# Source: exim-4.99.1-src.tar.gz, looked for in this order: $MAILCALL_PEERS_DIR,
# <repo>/../shared/peers, /work/shared/peers, the cache dir; its sha256 is checked, and the first
# one found is copied into the cache dir. Neither the source nor the binary is ever committed.
#
# POSIX sh, idempotent (does nothing when the cached binary exists and `exim -bV` works), runs as
# root without a terminal. Installs EXIM_BUILD_PACKAGES (tests/setup/packages.sh) when missing;
# those alone build it (tried in a fresh `mmdebstrap --variant=minbase bookworm` root: 12 s).
#   sh tests/setup/exim.sh
set -eu

VERSION=4.99.1
TARBALL=exim-$VERSION-src.tar.gz
SHA256=c4f3c1eb126db7a1da1f3d14dbbfb3c637f8c93885d77d67f121673f16b4ab82

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache_root=${MAILCALL_CACHE_DIR:-/var/cache/mailcall}

say() { echo "exim.sh: $*"; }
die() { echo "exim.sh: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (installs packages, writes $cache_root)"

# The settings hash: this script holds every Local/Makefile setting, so its content names the build.
hash=$(sha256sum "$here/exim.sh" | cut -c1-12)
dir=$cache_root/exim-$VERSION-$hash
exim=$dir/bin/exim

works() { [ -x "$1" ] && "$1" -bV >/dev/null 2>&1; }

link_current() {
    # The fixed path the tests use; ln -sfn on a symlink to a dir replaces the link itself.
    ln -sfn "exim-$VERSION-$hash" "$cache_root/exim"
}

if works "$exim"; then
    link_current
    say "cached: $exim ($("$exim" -bV 2>/dev/null | head -n1))"
    exit 0
fi

# --- packages -------------------------------------------------------------------------------
. "$here/packages.sh"
missing=""
for p in $EXIM_BUILD_PACKAGES; do
    case "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)" in
        "install ok installed") ;;
        *) missing="$missing $p" ;;
    esac
done
if [ -n "$missing" ]; then
    say "installing$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=600 update
    # shellcheck disable=SC2086 # word splitting of the package list is intended
    apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends $missing
fi

# --- the source -----------------------------------------------------------------------------
mkdir -p "$cache_root"
# One build at a time per cache (two CI jobs on one machine): flock is in util-linux.
exec 9>"$cache_root/exim.lock"
flock 9
if works "$exim"; then # another run finished it while this one waited
    link_current
    say "cached: $exim"
    exit 0
fi

looked=""
found=""
for d in ${MAILCALL_PEERS_DIR:+"$MAILCALL_PEERS_DIR"} "$repo/../shared/peers" /work/shared/peers "$cache_root"; do
    looked="$looked
  $d/$TARBALL"
    if [ -f "$d/$TARBALL" ]; then
        found=$d/$TARBALL
        break
    fi
done
[ -n "$found" ] || die "the Exim source $TARBALL is not found; looked at:$looked
Put the upstream tarball (tag exim-$VERSION, sha256 $SHA256) in a directory and run
  MAILCALL_PEERS_DIR=/that/dir sh tests/setup/exim.sh"
got=$(sha256sum "$found" | cut -d' ' -f1)
[ "$got" = "$SHA256" ] || die "$found has sha256 $got, expected $SHA256: not the exim-$VERSION source"
if [ "$found" != "$cache_root/$TARBALL" ]; then
    cp "$found" "$cache_root/$TARBALL.partial"
    mv "$cache_root/$TARBALL.partial" "$cache_root/$TARBALL"
fi
say "source: $found (sha256 ok)"

# --- build ----------------------------------------------------------------------------------
# Built in DIR.partial and renamed at the end, so a half-done build is never taken for a cached
# one. The paths compiled in name the final DIR; every test overrides spool and log in its config.
work=$dir.partial
rm -rf "$work"
mkdir -p "$work/bin" "$work/spool" "$work/log"
tar -xzf "$cache_root/$TARBALL" -C "$work"
src=$work/exim-$VERSION/src
[ -f "$src/src/EDITME" ] || die "$TARBALL does not unpack to exim-$VERSION/src"
mkdir -p "$src/Local"
# The tarball is the git tag's tree, not a release tarball: it lacks the version.sh that Exim's
# release process writes (scripts/reversion then fails "Cannot determine the release number").
cat >"$src/src/version.sh" <<EOF
# written by tests/setup/exim.sh (what Exim's release process writes)
EXIM_RELEASE_VERSION="$VERSION"
EXIM_VARIANT_VERSION=""
EXIM_COMPILE_NUMBER="0"
EOF

# Local/Makefile: the minimal set measured on Debian 12 (see /work/shared/peers/README.md), plus
# OpenSSL for STARTTLS. ATRN needs no setting (atrn.c is always built since 4.99); it needs the
# manualroute router and the smtp transport. CRAM-MD5 and PLAIN are the two authenticators.
# No ALT_CONFIG_PREFIX / TRUSTED_CONFIG_LIST: root may run any config with -C and keeps root.
cat >"$src/Local/Makefile" <<EOF
# Written by tests/setup/exim.sh for the Mailcall e2e tests.
BIN_DIRECTORY=$dir/bin
CONFIGURE_FILE=$dir/configure
EXIM_USER=ref:mail
SPOOL_DIRECTORY=$dir/spool
LOG_FILE_PATH=$dir/log/%slog
ROUTER_ACCEPT=yes
ROUTER_MANUALROUTE=yes
ROUTER_REDIRECT=yes
ROUTER_DNSLOOKUP=yes
ROUTER_IPLITERAL=yes
TRANSPORT_SMTP=yes
TRANSPORT_APPENDFILE=yes
TRANSPORT_PIPE=yes
LOOKUP_DBM=yes
LOOKUP_LSEARCH=yes
LOOKUP_DNSDB=yes
PCRE2_CONFIG=yes
AUTH_CRAM_MD5=yes
AUTH_PLAINTEXT=yes
SUPPORT_MAILDIR=yes
USE_DB=yes
DBMLIB=-ldb
HAVE_ICONV=yes
DISABLE_DKIM=yes
DISABLE_DMARC=yes
DISABLE_ARC=yes
DISABLE_MAL_AVE=yes
DISABLE_MAL_KAV=yes
DISABLE_MAL_MKS=yes
USE_OPENSSL=yes
TLS_LIBS=-lssl -lcrypto
EOF

jobs=$(nproc 2>/dev/null || echo 1)
say "building Exim $VERSION in $src (make -j$jobs; 12-40 s on 2 cores)"
start=$(date +%s)
if ! (cd "$src" && make -j"$jobs") >"$work/build.log" 2>&1; then
    tail -n 40 "$work/build.log" >&2
    die "make failed; the whole log is $work/build.log (missing a -dev package? see EXIM_BUILD_PACKAGES in tests/setup/packages.sh)"
fi
built=$(find "$src" -path '*/build-*/exim' -type f | head -n1)
[ -n "$built" ] || die "make succeeded but left no build-*/exim under $src"
install -m 0755 "$built" "$work/bin/exim"
# `exim -bV` reads CONFIGURE_FILE; all defaults is a valid config (the tests use -C their own).
echo "keep_environment =" >"$work/configure"
rm -rf "$work/exim-$VERSION"
rm -rf "$dir"
mv "$work" "$dir"
say "built in $(( $(date +%s) - start )) s"

works "$exim" || die "$exim was built but \`exim -bV\` fails: $("$exim" -bV 2>&1 | tail -n 3)"
link_current
say "ready: $exim ($("$exim" -bV | head -n1)); tests find it at $cache_root/exim/bin/exim or \$MAILCALL_EXIM"
