#!/bin/sh
# Proves that tests/setup/packages.sh is complete: installs its lists into a brand-new Debian 12
# root, where nothing was ever installed by hand, and runs tests/setup/features.sh there.
#
#   sh tests/setup/prove.sh            as root, no terminal needed (.ci/run calls it)
#   MAILCALL_PROVE=force sh tests/setup/prove.sh     rerun although this input was proven before
#
# What it does:
#   1. mmdebstrap --variant=minbase bookworm into a temporary directory (under /var/tmp), from the
#      host's own apt sources (/etc/apt/sources.list{,.d/*.list,.d/*.sources}) and the host's apt
#      settings that say how to reach the mirror (apt-config's Acquire::http*, ::Retries,
#      ::Check-Valid-Until for a snapshot mirror, ...). The root shares the host's network, and
#      gets its /etc/resolv.conf and /etc/hosts, so it reaches the mirror the way the host does.
#   2. Inside it: /proc and /dev mounted, a policy-rc.d that lets no service start, Postfix
#      preseeded to "No configuration" (as tests/setup.sh does), then ONE
#      `apt-get install --no-install-recommends` of every variable of packages.sh whose name ends in
#      _PACKAGES (found by name: lists added later are covered without touching this script).
#      Each listed name must then be installed under that name (not only as a virtual package).
#   3. tests/setup/ is copied in and features.sh runs there with its default parts and a clean
#      environment. When something is missing, its message (naming the package) is printed and
#      prove.sh exits 1.
#   4. On exit, also on failure or interrupt: processes left inside the root are stopped by PID,
#      everything mounted under it is unmounted, and the root (about 2 GB) is deleted.
# Success is recorded in /var/cache/mailcall/package-proof/KEY.ok, KEY being the sha256 of
# packages.sh and of every other file in tests/setup/ (features.sh, prove.sh, ...): the result only
# depends on those (and on the mirror), so a later run with the same KEY is skipped, saying so.
# The log of the last run is /var/cache/mailcall/package-proof/last.log.
#
# What it proves: every *_PACKAGES list names real Debian 12 packages that install together with
# --no-install-recommends on a minimal system, non-interactively, and that this is enough for every
# feature features.sh checks (its default parts). So a package that the developer's machine had
# for another reason (a Recommends, a hand install) but the lists lack is caught.
# What it does not prove:
#   - that the tests pass: it builds nothing and runs no test; a feature the tests use but
#     features.sh does not check is not covered (add a check there);
#   - that each list is enough on its own: all lists go into one root, so a package needed by the
#     e2e tests but listed only in GUI_PACKAGES goes unnoticed;
#   - the host's own state (what tests/setup.sh does there, stopping a system Postfix, ...);
#   - anything after the mirror changes: a cached KEY.ok is not rechecked when Debian publishes a
#     point release (MAILCALL_PROVE=force reruns);
#   - a mirror reached only with credentials (apt's auth.conf is not copied into the root).
# The root is built with dpkg's force-unsafe-io (no fsync; the root is thrown away): that changes
# how fast files land, not which.
#
# Tool: mmdebstrap (PROOF_PACKAGES in packages.sh). tests/setup.sh installs it too, but .ci/run
# calls prove.sh before setup.sh, so prove.sh installs PROOF_PACKAGES itself when it is missing.
# No download cache: on this network the ~300 MB of .debs take seconds; installing them is the
# cost (see the timings it prints), and a shared cache would not shorten that.
# MAILCALL_PROVE_PACKAGES=FILE proves FILE instead of packages.sh (to show that a list that lacks
# something fails; not for CI).
set -eu
set -f # package lists are split on blanks, never globbed

here=$(cd "$(dirname "$0")" && pwd)
pkgfile=${MAILCALL_PROVE_PACKAGES:-$here/packages.sh}
cache=/var/cache/mailcall/package-proof
root=""
# shellcheck source=tests/setup/debroot.sh
. "$here/debroot.sh"

say() { echo "prove.sh: $*"; }
die() {
    echo "prove.sh: FAILED: $*" >&2
    exit 1
}
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

force=${MAILCALL_PROVE:-}
for arg in "$@"; do
    case "$arg" in
        --force) force=force ;;
        *) die "unknown argument $arg (usage: prove.sh [--force])" ;;
    esac
done
case "$force" in "" | force) ;; *) die "MAILCALL_PROVE=$force: the only value is force" ;; esac

[ "$(id -u)" = 0 ] || die "needs root (mmdebstrap's root mode, chroot, mount): run it with sudo"
[ -r "$pkgfile" ] || die "cannot read the package lists $pkgfile"

# NAME=VALUE for every *_PACKAGES variable that FILE sets (in a clean shell, so nothing from the
# environment counts as a list).
lists_of() {
    # shellcheck disable=SC2016 # expanded by the inner shell
    env -i sh -c '
        . "$1" || exit 1
        for v in $(set | sed -n "s/^\([A-Za-z_][A-Za-z0-9_]*_PACKAGES\)=.*/\1/p"); do
            eval "printf \"%s=%s\\n\" \"\$v\" \"\$$v\""
        done' sh "$1"
}
lists=$(lists_of "$pkgfile") || die "sourcing $pkgfile failed"
[ -n "$lists" ] || die "$pkgfile sets no *_PACKAGES variable"
all=""
for l in $(echo "$lists" | sed 's/=.*//'); do
    value=$(echo "$lists" | sed -n "s/^$l=//p")
    [ -n "$(echo "$value" | tr -d ' \t')" ] || die "$l in $pkgfile is empty"
    all="$all $value"
done
# One word per package, duplicates (lists share packages) dropped.
all=$(echo "$all" | tr -s ' \t' '\n' | sed '/^$/d' | awk '!seen[$0]++' | tr '\n' ' ')

# The key: the package lists proven and every other file of tests/setup (what runs in the root).
key=$( (
    sha256sum <"$pkgfile" | sed 's|-$|packages.sh|'
    cd "$here" && find . -type f ! -path ./packages.sh -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
) | sha256sum | cut -c1-64)
ok="$cache/$key.ok"
mkdir -p "$cache"
# One proof at a time on this machine (a second one waits, then finds the first one's result).
exec 9>"$cache/lock"
flock 9
if [ -e "$ok" ] && [ "$force" != force ]; then
    say "skipped: these package lists and scripts were proven on $(sed -n 's/^date: //p' "$ok") ($ok); MAILCALL_PROVE=force reruns"
    exit 0
fi

log="$cache/last.log"
: >"$log"
say "proving$(echo "$lists" | sed 's/=.*//' | tr '\n' ' ' | sed 's/^/ /; s/ $//') from $pkgfile (log: $log)"

# Runs "$@" with its output in the log; on failure shows the log's end and stops.
step() { # WHAT COMMAND...
    what=$1
    shift
    echo "==== $what: $*" >>"$log"
    if "$@" >>"$log" 2>&1; then
        return 0
    else
        rc=$?
        echo "---- the end of $log:" >&2
        tail -n 30 "$log" >&2
        die "$what failed (exit $rc)"
    fi
}

# ---- the tool ---------------------------------------------------------------------------------
if ! command -v mmdebstrap >/dev/null 2>&1; then
    tool=$(echo "$lists" | sed -n 's/^PROOF_PACKAGES=//p')
    say "installing ${tool:=mmdebstrap} on the host"
    export DEBIAN_FRONTEND=noninteractive
    step "apt-get update (host)" apt-get -o DPkg::Lock::Timeout=600 update
    # shellcheck disable=SC2086 # word splitting of the package list is intended
    step "installing $tool (host)" apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends $tool
    command -v mmdebstrap >/dev/null 2>&1 || die "mmdebstrap is still missing after installing $tool (install Debian package mmdebstrap)"
fi

# ---- leaving nothing behind (the root, its mounts, what runs in it) ---------------------------
mounts_under() { debroot_mounts_under "$@"; }
pids_in() { debroot_pids_in "$@"; }
cleanup() {
    rc=$?
    trap - EXIT
    if [ -n "$root" ] && [ -d "$root" ]; then
        set +e +f
        # Anything a maintainer script left running in the root was started by this script.
        pids=$(pids_in "$root")
        if [ -n "$pids" ]; then
            echo "prove.sh: stopping what still runs in the root: $pids" >&2
            # shellcheck disable=SC2086
            kill -TERM $pids 2>/dev/null
            n=0
            while [ -n "$(pids_in "$root")" ] && [ $n -lt 50 ]; do
                sleep 0.1
                n=$((n + 1))
            done
            pids=$(pids_in "$root")
            # shellcheck disable=SC2086
            [ -z "$pids" ] || kill -KILL $pids 2>/dev/null
        fi
        # Deepest first (a path sorts after its parent).
        for m in $(mounts_under "$root" | LC_ALL=C sort -r); do
            umount "$m" 2>/dev/null || umount -l "$m"
        done
        if [ -n "$(mounts_under "$root")" ]; then
            echo "prove.sh: NOT deleting $root: still mounted there: $(mounts_under "$root" | tr '\n' ' ')" >&2
            [ "$rc" != 0 ] || rc=1
        else
            t=$(now)
            rm -rf --one-file-system "$root"
            say "the root is deleted: $(since "$t")s"
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'echo "prove.sh: interrupted" >&2; exit 130' INT
trap 'echo "prove.sh: terminated" >&2; exit 143' TERM
trap 'echo "prove.sh: hung up" >&2; exit 129' HUP

# ---- the root ----------------------------------------------------------------------------------
root=$(mktemp -d /var/tmp/mailcall-package-proof.XXXXXX)
chmod 755 "$root"
t=$(now)
step "mmdebstrap" debroot_create "$root" --dpkgopt=force-unsafe-io
t_mmdebstrap=$(since "$t")
say "mmdebstrap --variant=minbase $debroot_suite: ${t_mmdebstrap}s"

mount -t proc proc "$root/proc"
mount --rbind /dev "$root/dev"
mount --make-rslave "$root/dev"
printf '#!/bin/sh\n# prove.sh: no service starts in this root\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod 755 "$root/usr/sbin/policy-rc.d"

# In the root, with a clean environment (only a proxy of the host's is kept: apt reads it).
in_root() { debroot_in "$root" "$@"; }

# As tests/setup.sh: "No configuration", so Postfix writes no main.cf and starts no system instance.
step "preseeding postfix" in_root debconf-set-selections <<EOF
postfix postfix/main_mailer_type select No configuration
EOF

t=$(now)
step "apt-get update (root)" in_root apt-get update
t_update=$(since "$t")
t=$(now)
# shellcheck disable=SC2086 # word splitting of the package list is intended
step "resolving and downloading the listed packages" in_root apt-get install -y --download-only --no-install-recommends $all
t_download=$(since "$t")
t=$(now)
# shellcheck disable=SC2086
step "installing the packages" in_root apt-get install -y --no-install-recommends $all
t_install=$(since "$t")
# shellcheck disable=SC2016 # dpkg-query's format, not the shell's
installed=$(in_root dpkg-query -W -f '${db:Status-Abbrev}\n' | grep -c '^ii')
say "apt-get install --no-install-recommends of $(echo "$all" | wc -w) listed packages ($installed installed in all): update ${t_update}s, download ${t_download}s, install ${t_install}s"

notinstalled=""
for p in $all; do
    # shellcheck disable=SC2016
    case "$(in_root dpkg-query -W -f '${Status}' "$p" 2>/dev/null || true)" in
        "install ok installed") ;;
        *) notinstalled="$notinstalled $p" ;;
    esac
done
[ -z "$notinstalled" ] || die "listed but not installed under that name (virtual packages? tests/setup.sh checks names with dpkg-query):$notinstalled"

mkdir "$root/tmp/mailcall-setup"
cp -R "$here/." "$root/tmp/mailcall-setup/"
cp "$pkgfile" "$root/tmp/mailcall-setup/packages.sh"

# The ODMR provider is built, not installed: build it in the root from its build packages alone
# (EXIM_BUILD_PACKAGES), with the same script the tests use, so features.sh's `exim` part checks
# a binary this root made.
# Found where tests/setup/exim.sh looks (the upstream download is left to exim.sh itself).
tarball=""
origin=$(git -C "$here/../.." remote get-url origin 2>/dev/null || true)
origin=${origin#file://}
origin_peers=""
case "$origin" in
    /*) [ -d "$origin" ] && origin_peers="$(cd "$origin" && pwd)/../shared/peers" ;;
esac
for d in ${MAILCALL_PEERS_DIR:+"$MAILCALL_PEERS_DIR"} "$here/../../../shared/peers" ${origin_peers:+"$origin_peers"} "${MAILCALL_CACHE_DIR:-/var/cache/mailcall}"; do
    if [ -f "$d/exim-4.99.1-src.tar.gz" ]; then
        tarball="$d/exim-4.99.1-src.tar.gz"
        break
    fi
done
feature_parts="e2e mailserver gui exim odmr windows package"
t_exim=-
if [ -n "$tarball" ]; then
    mkdir -p "$root/tmp/peers"
    cp "$tarball" "$root/tmp/peers/"
    t=$(now)
    step "building the ODMR provider (Exim) in the root" in_root MAILCALL_PEERS_DIR=/tmp/peers MAILCALL_CACHE_DIR=/tmp/cache sh /tmp/mailcall-setup/exim.sh
    t_exim=$(since "$t")
    say "Exim built in the root from EXIM_BUILD_PACKAGES alone: ${t_exim}s"
else
    # As tests/setup/exim.sh: without the source the Exim tests are skipped out loud, so the
    # proof checks everything else and says what it did not prove.
    feature_parts="e2e mailserver gui odmr windows package"
    say "########## NOT PROVEN: the Exim build (exim-4.99.1-src.tar.gz not found: set MAILCALL_PEERS_DIR to its directory, see tests/setup/exim.sh) ##########"
fi

t=$(now)
out="$root/tmp/mailcall-features.out"
if in_root MAILCALL_CACHE_DIR=/tmp/cache sh /tmp/mailcall-setup/features.sh $feature_parts >"$out" 2>&1; then
    features_rc=0
else
    features_rc=$?
fi
t_features=$(since "$t")
{
    echo "==== features.sh (exit $features_rc)"
    cat "$out"
} >>"$log"
if [ "$features_rc" = 0 ]; then cat "$out"; else cat "$out" >&2; fi
[ "$features_rc" = 0 ] || die "features.sh found something missing in a fresh root with only the listed packages (above); add the package it names to $pkgfile"
say "features.sh: ${t_features}s"

{
    echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "packages: $pkgfile"
    echo "lists: $(echo "$lists" | sed 's/=.*//' | tr '\n' ' ' | sed 's/ $//')"
    echo "listed: $(echo "$all" | wc -w), installed in the root: $installed"
    echo "seconds: mmdebstrap $t_mmdebstrap, update $t_update, download $t_download, install $t_install, exim build $t_exim, features $t_features"
    tail -n 1 "$out"
} >"$ok.tmp"
if [ -z "$tarball" ]; then
    # Not cached: a later run that finds the source proves the Exim build too.
    rm -f "$ok.tmp"
    say "proven without the Exim build: the other lists are complete for features.sh on a fresh Debian $debroot_suite"
    exit 0
fi
mv "$ok.tmp" "$ok"
say "proven: the lists are complete for features.sh on a fresh Debian $debroot_suite ($ok)"
