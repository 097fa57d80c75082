# shellcheck shell=sh
# Throwaway Debian 12 roots, shared by tests/setup/prove.sh (proves the package lists complete)
# and tests/package/run.sh (installs, uses and purges the .deb in a root of its own, never on the
# machine running the tests). Sourced, not run: POSIX sh functions, no global state but what the
# caller passes.
#
#   debroot_create ROOT [MMDEBSTRAP-ARG...]   mmdebstrap --variant=minbase bookworm into ROOT (an
#                                             empty directory) from the host's apt sources and
#                                             the host's settings that say how to reach them
#   debroot_in ROOT COMMAND...                COMMAND in ROOT (chroot) with a clean environment:
#                                             PATH, HOME, LANG, DEBIAN_FRONTEND, a host proxy
#   debroot_pids_in ROOT                      the PIDs of processes whose root is under ROOT
#   debroot_mounts_under ROOT                 what is mounted at or under ROOT, one per line
#
# The root shares the host's network and gets its /etc/resolv.conf and /etc/hosts, so it reaches
# the mirror the way the host does. Only apt's settings about reaching a mirror and which Release
# files to accept go in (a proxy, retries, Check-Valid-Until for a snapshot mirror, ...), not the
# rest; they may hold a proxy's password, so the file carrying them is private and removed.

debroot_suite=bookworm
debroot_path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

debroot_create() { # ROOT [MMDEBSTRAP-ARG...]
    _root=$1
    shift
    _aptconf=$(mktemp /var/tmp/mailcall-debroot-apt.XXXXXX) || return 1
    apt-config dump | grep -E '^Acquire::(https?|ftp|socks|Retries|ForceIPv4|ForceIPv6|Check-Valid-Until|Check-Date|Max-ValidTime|Min-ValidTime)(::| )' >"$_aptconf" || true
    echo "apt settings from the host (the root gets them too): $(sed 's/ .*//' "$_aptconf" | tr '\n' ' ')"
    set -- "$@" "--aptopt=$_aptconf"
    _sources=0
    case $- in *f*) _noglob=1 ;; *) _noglob="" ;; esac
    set +f
    for _f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        if ! [ -f "$_f" ] || ! grep -q '^[[:space:]]*[^#[:space:]]' "$_f"; then continue; fi
        set -- "$@" "$_f"
        _sources=$((_sources + 1))
    done
    [ -z "$_noglob" ] || set -f
    if [ "$_sources" = 0 ]; then
        rm -f "$_aptconf"
        echo "the host has no apt sources (/etc/apt/sources.list, /etc/apt/sources.list.d/)" >&2
        return 1
    fi
    echo "mmdebstrap gets: $*"
    _rc=0
    mmdebstrap --mode=root --variant=minbase --format=directory "$debroot_suite" "$_root" "$@" || _rc=$?
    rm -f "$_aptconf"
    [ "$_rc" = 0 ] || return "$_rc"
    cp -L /etc/resolv.conf "$_root/etc/resolv.conf"
    cp -L /etc/hosts "$_root/etc/hosts"
}

debroot_in() { # ROOT COMMAND...
    _root=$1
    shift
    # shellcheck disable=SC2086 # an unset proxy must vanish, not become an empty argument
    chroot "$_root" /usr/bin/env -i PATH="$debroot_path" HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive \
        ${http_proxy:+http_proxy=$http_proxy} ${https_proxy:+https_proxy=$https_proxy} \
        ${no_proxy:+no_proxy=$no_proxy} ${HTTP_PROXY:+HTTP_PROXY=$HTTP_PROXY} \
        ${HTTPS_PROXY:+HTTPS_PROXY=$HTTPS_PROXY} ${NO_PROXY:+NO_PROXY=$NO_PROXY} "$@"
}

debroot_mounts_under() { # ROOT
    awk -v r="$1" '$5 == r || index($5, r "/") == 1 { print $5 }' /proc/self/mountinfo
}

debroot_pids_in() { # ROOT
    for _p in /proc/[0-9]*; do
        _r=$(readlink "$_p/root" 2>/dev/null) || continue
        case "$_r" in "$1" | "$1"/*) echo "${_p#/proc/}" ;; esac
    done
}
