#!/bin/sh
# Installs the Debian packages the tests drive (tests/setup/packages.sh says what each is for),
# makes sure no system Postfix or Dovecot instance runs, builds the ODMR provider
# (tests/setup/exim.sh), then checks every feature the tests use
# (tests/setup/features.sh) so a missing piece fails here, naming its package, not in a test.
# Idempotent; runs as root without a terminal (CI).
set -eu
here=$(dirname "$0")
. "$here/setup/packages.sh"

export DEBIAN_FRONTEND=noninteractive

missing=""
for p in $E2E_PACKAGES $DOVECOT_PACKAGES $GUI_PACKAGES $EXIM_BUILD_PACKAGES $ODMR_PACKAGES $PROOF_PACKAGES $WINDOWS_PACKAGES $PACKAGE_PACKAGES; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    case "$status" in
        "install ok installed") ;;
        *) missing="$missing $p" ;;
    esac
done

if [ -n "$missing" ]; then
    echo "setup.sh: installing$missing"
    # "No configuration": Debian then writes no /etc/postfix/main.cf and starts no system
    # instance; every test runs its own instance with `postfix -c DIR`.
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    apt-get -o DPkg::Lock::Timeout=600 update
    # shellcheck disable=SC2086 # word splitting of the package list is intended
    apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends $missing
fi

# A system instance would hold port 25 and could pick up test mail: stop it if one runs.
if [ -f /etc/postfix/main.cf ] && postfix status >/dev/null 2>&1; then
    postfix stop || true
fi
if command -v service >/dev/null 2>&1 && [ -x /etc/init.d/postfix ]; then
    service postfix stop >/dev/null 2>&1 || true
fi

# Installing dovecot-core starts the system Dovecot (its init script, even without systemd), which
# holds 143/993 and reads /etc/dovecot; the tests run private instances (`dovecot -c CONF`) only.
if [ -x /etc/init.d/dovecot ]; then
    if command -v service >/dev/null 2>&1; then
        service dovecot stop >/dev/null 2>&1 || true
    else
        /etc/init.d/dovecot stop >/dev/null 2>&1 || true
    fi
fi
if [ -f /etc/dovecot/dovecot.conf ] && doveadm -c /etc/dovecot/dovecot.conf stop >/dev/null 2>&1; then
    echo "setup.sh: stopped the system Dovecot"
fi
# The master exits about a second after it is told to stop: wait for IMAP and LMTP to be free.
for _ in 1 2 3 4 5 6 7 8 9 10; do
    held=$(ss -ltnH '( sport = :143 or sport = :993 or sport = :24 )' 2>/dev/null || true)
    [ -z "$held" ] && break
    sleep 1
done
if [ -n "$held" ]; then
    echo "setup.sh: warning: something still listens on 143/993/24 (the tests do not need these ports):" >&2
    ss -ltnpH '( sport = :143 or sport = :993 or sport = :24 )' >&2 || true
fi

# The ODMR provider (Exim 4.99.1 from source, cached outside the clone; quick when cached). Exit
# 3: its source is nowhere to be had; everything else is still set up, and scripts/test.sh skips
# the Exim tests out loud.
exim_rc=0
sh "$here/setup/exim.sh" || exim_rc=$?
case "$exim_rc" in
    0) parts="e2e mailserver gui exim odmr windows package" ;;
    3)
        parts="e2e mailserver gui odmr windows package"
        echo "setup.sh: ########## NO EXIM: the ODMR provider is not built (above: how to provide its source); the tests that need it will be skipped ##########" >&2
        ;;
    *) exit "$exim_rc" ;;
esac

# The tests' own Wine prefix, with the ProcessPrng stand-in Wine 8.0 lacks (tests/wine/).
sh "$here/setup/wine.sh"

# shellcheck disable=SC2086 # word splitting of the list of parts is intended
sh "$here/setup/features.sh" $parts
echo "setup.sh: test packages ready"
