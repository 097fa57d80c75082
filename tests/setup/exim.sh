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
# Source: the upstream tree at tag exim-4.99.1, from the first of
#   1. $MAILCALL_PEERS_DIR/exim-4.99.1-src.tar.gz   (a directory you point at)
#   2. <repo>/../shared/peers/exim-4.99.1-src.tar.gz (the project's own machines keep one there),
#      or <origin>/../shared/peers when this is a clone of a local checkout (CI's clean clone)
#   3. the copy cached by an earlier run in the cache dir
#   4. the upstream tag archive over https ($MAILCALL_EXIM_URL, default GitHub's archive of the tag;
#      needs curl and a route to it)
# Whatever the archive (a trimmed tarball or GitHub's archive with its own top-level directory, any
# compression, any tar), what is built is checked: the sha256 over the sorted list of
# `sha256sum` lines of every file under src/ must be SRC_TREE_SHA256. The first archive that
# passes is copied into the cache dir. Neither the source nor the binary is ever committed.
# Exit status: 0 ready; 3 the source is nowhere to be had (the last line says how to provide it;
# tests/setup.sh then goes on and scripts/test.sh skips the Exim tests, loudly); 1 anything else.
#
# POSIX sh, idempotent (does nothing when the cached binary exists and `exim -bV` works), runs as
# root without a terminal. Installs EXIM_BUILD_PACKAGES (tests/setup/packages.sh) when missing;
# those alone build it (tried in a fresh `mmdebstrap --variant=minbase bookworm` root: 12 s).
#   sh tests/setup/exim.sh
set -eu

VERSION=4.99.1
TARBALL=exim-$VERSION-src.tar.gz
# sha256 of `find src -type f | sort | xargs sha256sum` in the tree of tag exim-4.99.1
# (commit d46a6727798fc48d1756190a6d46d19216348c25), paths relative to the tree's top.
SRC_TREE_SHA256=dc73a67b71fa9f2ecbbdca9279f76245757b19ed2744debf8724f1d76552f9cf
URL=${MAILCALL_EXIM_URL:-https://github.com/Exim/exim/archive/refs/tags/exim-$VERSION.tar.gz}

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache_root=${MAILCALL_CACHE_DIR:-/var/cache/mailcall}
# A clean clone (CI clones the checkout somewhere else) has no shared dir beside it; the checkout
# it was cloned from, when that is a local directory, does.
origin=$(git -C "$repo" remote get-url origin 2>/dev/null || true)
origin=${origin#file://}
origin_peers=""
case "$origin" in
    /*) [ -d "$origin" ] && origin_peers="$(cd "$origin" && pwd)/../shared/peers" ;;
esac

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

# The tree's hash (see SRC_TREE_SHA256) of the source unpacked in DIR.
tree_hash() { # DIR
    (cd "$1" && find src -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-64)
}
# Unpacks ARCHIVE into DIR (emptied first), its one top-level directory stripped; 0 when DIR then
# holds the exim-4.99.1 tree.
unpack_checked() { # ARCHIVE DIR
    rm -rf "$2"
    mkdir -p "$2"
    tar -xf "$1" -C "$2" --strip-components=1 2>/dev/null || return 1
    [ -f "$2/src/src/EDITME" ] || return 1
    [ "$(tree_hash "$2")" = "$SRC_TREE_SHA256" ]
}

work=$dir.partial
rm -rf "$work"
mkdir -p "$work/bin" "$work/spool" "$work/log"
tree=$work/exim-$VERSION
looked=""
found=""
for d in ${MAILCALL_PEERS_DIR:+"$MAILCALL_PEERS_DIR"} "$repo/../shared/peers" ${origin_peers:+"$origin_peers"} "$cache_root"; do
    f=$d/$TARBALL
    [ -f "$f" ] || {
        looked="$looked; $f: not there"
        continue
    }
    if unpack_checked "$f" "$tree"; then
        found=$f
        break
    fi
    looked="$looked; $f: not the exim-$VERSION tree (the hash of its src/ differs)"
done
if [ -z "$found" ]; then
    dl=$cache_root/$TARBALL.download
    if ! command -v curl >/dev/null 2>&1; then
        looked="$looked; $URL: no curl to download it (Debian package curl)"
    elif curl --fail --silent --show-error --location --max-time 300 --retry 2 -o "$dl" "$URL" 2>"$work/curl.err"; then
        if unpack_checked "$dl" "$tree"; then
            found=$URL
            mv "$dl" "$cache_root/$TARBALL.partial"
        else
            looked="$looked; $URL: downloaded, but not the exim-$VERSION tree (the hash of its src/ differs)"
        fi
    else
        looked="$looked; $URL: $(tail -n 1 "$work/curl.err")"
    fi
    rm -f "$dl"
fi
if [ -z "$found" ]; then
    rm -rf "$work"
    # No stale build may stand in for this one.
    rm -f "$cache_root/exim"
    echo "exim.sh: the Exim $VERSION source is nowhere to be had:${looked#;}" >&2
    echo "exim.sh: NO EXIM: the ODMR provider cannot be built; provide the source by putting $TARBALL (the tree of tag exim-$VERSION, e.g. from $URL) in a directory and setting MAILCALL_PEERS_DIR to it, or by setting MAILCALL_EXIM_URL to where it can be downloaded" >&2
    exit 3
fi
if [ "$found" != "$cache_root/$TARBALL" ]; then
    [ -f "$cache_root/$TARBALL.partial" ] || cp "$found" "$cache_root/$TARBALL.partial"
    mv "$cache_root/$TARBALL.partial" "$cache_root/$TARBALL"
fi
say "source: $found (the tree of tag exim-$VERSION: hash of src/ ok)"

# --- build ----------------------------------------------------------------------------------
# Built in DIR.partial (unpacked there above) and renamed at the end, so a half-done build is
# never taken for a cached one. The paths compiled in name the final DIR; every test overrides
# spool and log in its config.
src=$tree/src
mkdir -p "$src/Local"
# The tarball is the git tag's tree, not a release tarball: it lacks the version.sh that Exim's
# release process writes (scripts/reversion then fails "Cannot determine the release number").
cat >"$src/src/version.sh" <<EOF
# written by tests/setup/exim.sh (what Exim's release process writes)
EXIM_RELEASE_VERSION="$VERSION"
EXIM_VARIANT_VERSION=""
EXIM_COMPILE_NUMBER="0"
EOF

# Local/Makefile: the minimal set measured on Debian 12 (measured on Debian 12), plus
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
rm -rf "$tree"
rm -rf "$dir"
mv "$work" "$dir"
say "built in $(( $(date +%s) - start )) s"

works "$exim" || die "$exim was built but \`exim -bV\` fails: $("$exim" -bV 2>&1 | tail -n 3)"
link_current
say "ready: $exim ($("$exim" -bV | head -n1)); tests find it at $cache_root/exim/bin/exim or \$MAILCALL_EXIM"
