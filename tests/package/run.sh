#!/bin/sh
# Runs the package test (tests/package, the binary cargo built for it) in a throwaway Debian 12
# root, never on this machine: the .deb is installed there, used by a normal user on port 25 and
# under a real systemd --user, and purged. A mailcall the user installed on this machine (the
# README's first command does) is neither purged nor changed, and a tray app of the user's that
# listens on port 25 does not get in the way.
#
#   sh tests/package/run.sh DEB RPM TEST-BINARY     as root (scripts/test.sh's `package` step)
#
# How:
#   1. A base root, cached in $MAILCALL_CACHE_DIR/package-root/KEY (default /var/cache/mailcall):
#      mmdebstrap --variant=minbase bookworm (tests/setup/debroot.sh: the host's apt sources) plus
#      E2E_PACKAGES and PACKAGE_PACKAGES (tests/setup/packages.sh: the ISP, the keyring, systemd,
#      ...). KEY is the sha256 of those lists and of the scripts that build it, so a changed list
#      builds a new base (about a minute) and the old one is deleted.
#   2. Per run, an overlay on that base (the base is never written), with /proc, /dev, /sys and
#      apt's download cache (kept in the cache dir, so the package's Depends are downloaded once).
#      With the host's network: `apt-get install --download-only` of the .deb, so its Depends are
#      at hand.
#   3. In new mount, network and PID namespaces (loopback only, nothing of this machine's ports):
#      the test binary runs in the root (`--ignored`), with MAILCALL_DEB and MAILCALL_RPM. When it
#      ends, the kernel ends every process left in its PID namespace and every mount with its mount
#      namespace; the overlay's upper half is then deleted.
#   4. This machine's own mailcall (when installed) is compared before and after: dpkg's status and
#      version, and the sha256 of every file dpkg lists for it; any difference fails the run.
# Log of the base build: $MAILCALL_CACHE_DIR/package-root/last-build.log.
set -eu

say() { echo "package/run.sh: $*" >&2; }
die() {
    echo "package/run.sh: FAILED: $*" >&2
    exit 1
}

[ $# = 3 ] || die "usage: run.sh DEB RPM TEST-BINARY"
deb=$1 rpm=$2 bin=$3
for f in "$deb" "$rpm" "$bin"; do [ -f "$f" ] || die "$f is not a file"; done
[ "$(id -u)" = 0 ] || die "needs root (mmdebstrap, mounts, namespaces): run it with sudo"
for tool in mmdebstrap unshare ip; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is missing (run tests/setup.sh: packages mmdebstrap, util-linux, iproute2)"
done

here=$(cd "$(dirname "$0")" && pwd)
setup=$(cd "$here/../setup" && pwd)
# shellcheck source=tests/setup/packages.sh
. "$setup/packages.sh"
# shellcheck source=tests/setup/debroot.sh
. "$setup/debroot.sh"
cache=${MAILCALL_CACHE_DIR:-/var/cache/mailcall}/package-root
packages="$E2E_PACKAGES $PACKAGE_PACKAGES"
now() { date +%s; }

# ---- 1. the base root ----------------------------------------------------------------------------
key=$( (
    echo "$packages"
    cat "$here/run.sh" "$setup/debroot.sh"
) | sha256sum | cut -c1-16)
base=$cache/$key
# mmdebstrap, then the lists installed in the root (as prove.sh does: no service may start,
# Postfix preseeded to "No configuration"), in a mount and PID namespace of their own.
build_base() {
    debroot_create "$base/root" --dpkgopt=force-unsafe-io || return 1
    printf '#!/bin/sh\n# package/run.sh: no service starts in this root\nexit 101\n' >"$base/root/usr/sbin/policy-rc.d"
    chmod 755 "$base/root/usr/sbin/policy-rc.d"
    echo "postfix postfix/main_mailer_type select No configuration" | debroot_in "$base/root" debconf-set-selections || return 1
    # shellcheck disable=SC2016 # expanded by the inner shell
    # shellcheck disable=SC2086 # word splitting of the package list is intended
    unshare --mount --pid --fork --propagation private sh -c '
        set -eu
        root=$1
        shift
        mount -t proc proc "$root/proc"
        mount --rbind /dev "$root/dev"
        mount --bind "$0" "$root/var/cache/apt/archives"
        "$@"' "$cache/archives" "$base/root" \
        chroot "$base/root" /usr/bin/env -i PATH="$debroot_path" HOME=/root LANG=C.UTF-8 \
        DEBIAN_FRONTEND=noninteractive \
        sh -c 'apt-get update && apt-get install -y --no-install-recommends "$@"' sh $packages
}
mkdir -p "$cache/archives/partial"
exec 9>"$cache/lock"
flock 9
if ! [ -e "$base/ok" ]; then
    t=$(now)
    log=$cache/last-build.log
    say "building the base root $base (E2E_PACKAGES and PACKAGE_PACKAGES; log: $log)"
    rm -rf --one-file-system "$base"
    mkdir -p "$base/root"
    chmod 755 "$base/root"
    if ! build_base >"$log" 2>&1; then
        tail -n 30 "$log" >&2
        rm -rf --one-file-system "$base"
        die "building the base root failed (the end of $log is above)"
    fi
    date -u '+%Y-%m-%d %H:%M:%S UTC' >"$base/ok"
    # Older bases (other lists) are not used again.
    for old in "$cache"/*/ok; do
        d=${old%/ok}
        [ "$d" = "$base" ] || rm -rf --one-file-system "$d"
    done
    say "base root ready in $(($(now) - t)) s"
fi

# ---- this machine's own mailcall, before -----------------------------------------------------------
host_state() {
    st=$(dpkg-query -W -f '${Status} ${Version}' mailcall 2>/dev/null || true)
    echo "status: $st"
    case "$st" in
        "install ok installed"*)
            dpkg -L mailcall | while read -r f; do
                [ -f "$f" ] && ! [ -L "$f" ] && echo "$(sha256sum <"$f" | cut -c1-64) $(stat -c %a "$f") $f"
            done
            for b in /usr/bin/mailcall /usr/bin/mailcall-cli; do echo "getcap: $(getcap "$b" 2>/dev/null)"; done
            ;;
    esac
    return 0
}
before=$(host_state)

# ---- 2. and 3. the run -----------------------------------------------------------------------------
run=$(mktemp -d /var/tmp/mailcall-package-test.XXXXXX)
chmod 755 "$run"
mkdir "$run/upper" "$run/work" "$run/root"
cleanup() {
    rc=$?
    trap - EXIT
    # Everything was mounted inside the namespaces, which are gone; say so if not.
    left=$(debroot_mounts_under "$run")
    if [ -n "$left" ]; then
        echo "package/run.sh: NOT deleting $run: still mounted there: $left" >&2
        [ "$rc" != 0 ] || rc=1
    else
        rm -rf --one-file-system "$run"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'echo "package/run.sh: interrupted" >&2; exit 130' INT
trap 'echo "package/run.sh: terminated" >&2; exit 143' TERM

# Mounts the overlay and what the root needs; the test's files go into /tmp/package-test.
# shellcheck disable=SC2016 # expanded by the shells in the namespaces
MOUNTS='
mount -t overlay overlay -o "lowerdir=$base/root,upperdir=$run/upper,workdir=$run/work" "$run/root"
r=$run/root
mount -t proc proc "$r/proc"
mount --rbind /dev "$r/dev"
mount --make-rslave "$r/dev"
mount --bind "$cache/archives" "$r/var/cache/apt/archives"
mkdir -p "$r/tmp/package-test"
cp "$deb" "$r/tmp/package-test/mailcall.deb"
cp "$rpm" "$r/tmp/package-test/mailcall.rpm"
cp "$bin" "$r/tmp/package-test/package-test"
'
export base run cache deb rpm bin

t=$(now)
unshare --mount --pid --fork --propagation private sh -c "set -eu
$MOUNTS
chroot \"\$r\" /usr/bin/env -i PATH='$debroot_path' HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive \
    sh -c 'apt-get update -q && apt-get install -q -y --download-only --no-install-recommends /tmp/package-test/mailcall.deb'
" >"$run/download.log" 2>&1 || {
    tail -n 30 "$run/download.log" >&2
    die "downloading the package's Depends into the root failed (above)"
}
say "the package's Depends are at hand in the root: $(($(now) - t)) s"

t=$(now)
rc=0
unshare --mount --net --pid --fork --propagation private sh -c "set -eu
$MOUNTS
mount --rbind /sys \"\$r/sys\"
mount --make-rslave \"\$r/sys\"
mount -t tmpfs -o mode=755 tmpfs \"\$r/run\"
mkdir -p \"\$r/run/lock\"
ip link set lo up
echo 'a throwaway root of tests/package/run.sh' >\"\$r/etc/mailcall-package-test-root\"
exec chroot \"\$r\" /usr/bin/env -i PATH='$debroot_path' HOME=/root LANG=C.UTF-8 \
    MAILCALL_DEB=/tmp/package-test/mailcall.deb MAILCALL_RPM=/tmp/package-test/mailcall.rpm \
    ${RUST_BACKTRACE:+RUST_BACKTRACE=$RUST_BACKTRACE} ${MAILCALL_E2E_KEEP:+MAILCALL_E2E_KEEP=1} \
    /tmp/package-test/package-test --ignored --test-threads=1
" || rc=$?
say "the package test in the throwaway root: exit $rc, $(($(now) - t)) s"

# ---- 4. this machine's own mailcall, after ------------------------------------------------------
after=$(host_state)
if [ "$before" != "$after" ]; then
    printf 'package/run.sh: this machine'"'"'s own mailcall changed during the test:\nbefore:\n%s\nafter:\n%s\n' "$before" "$after" >&2
    die "the package test must not touch the installed package"
fi
case "$before" in
    "status: install ok installed"*)
        /usr/bin/mailcall-cli --version >/dev/null || die "this machine's installed mailcall-cli no longer runs"
        say "this machine's own mailcall ($(echo "$before" | sed -n '1s/^status: install ok installed //p')) is untouched: same status, version, files and capabilities, and it runs"
        ;;
esac
[ "$rc" = 0 ] || die "the package test failed (exit $rc; its output is above)"
