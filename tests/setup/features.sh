#!/bin/sh
# Checks that what the tests use is really there — the features, not only the binaries — and
# names the package to install when something is missing. Run by tests/setup.sh after installing,
# and inside a fresh Debian root by tests/setup/prove.sh. Exit 1 with every missing piece listed.
#   sh tests/setup/features.sh [e2e] [mailserver] [gui] [exim] [odmr] [windows] [package]   (default: all)
set -u
PATH="$PATH:/usr/sbin:/sbin"
missing=0

fail() { # PACKAGE WHAT
    echo "features.sh: missing: $2 (install Debian package $1)" >&2
    missing=1
}
have() { command -v "$1" >/dev/null 2>&1; }
tool() { # PACKAGE TOOL...
    pkg=$1; shift
    for t in "$@"; do have "$t" || fail "$pkg" "the command $t"; done
}

e2e() {
    tool postfix postfix postqueue postconf smtp-source smtp-sink
    tool sasl2-bin saslpasswd2 saslpluginviewer
    tool openssl openssl
    tool dbus dbus-daemon dbus-send
    tool gnome-keyring gnome-keyring-daemon
    tool libsecret-tools secret-tool
    tool util-linux setpriv runuser
    tool passwd useradd usermod userdel
    tool mount mount umount
    tool swaks swaks
    # tests/e2e/submission.rs: a real mail program submitting over SMTP (smtp:// in mta=).
    tool s-nail s-nail
    tool iproute2 ip
    if have swaks; then
        # swaks' TLS is only a Recommends: `swaks --tls` needs Net::SSLeay and IO::Socket::SSL.
        swaks --support 2>&1 | grep -q '^=== TLS supported' ||
            fail "libnet-ssleay-perl libio-socket-ssl-perl" "TLS in swaks (swaks --support says: $(swaks --support 2>&1 | grep TLS))"
    fi
    if have postconf; then
        # The test ISP's main.cf uses inline: maps and Cyrus SASL.
        conf=$(mktemp -d)
        : >"$conf/main.cf"
        postconf -c "$conf" -m 2>/dev/null | grep -qx inline || fail postfix "Postfix's inline: lookup table (postconf -m)"
        postconf -c "$conf" -a 2>/dev/null | grep -qx cyrus || fail postfix "Postfix's Cyrus SASL server (postconf -a)"
        rm -rf "$conf"
    fi
    if have saslpluginviewer; then
        mechs=$(saslpluginviewer -s 2>/dev/null)
        for m in PLAIN LOGIN CRAM-MD5; do
            echo "$mechs" | grep -q "SASL mechanism: $m," || fail libsasl2-modules "the SASL mechanism $m (saslpluginviewer -s)"
        done
        saslpluginviewer -a 2>/dev/null | grep -q 'Plugin "sasldb"' || fail libsasl2-modules-db "the sasldb auxprop plugin (saslpluginviewer -a)"
    fi
    if have ip; then
        ip tuntap help 2>&1 | grep -q tun || fail iproute2 "ip tuntap"
    fi
}

mailserver() {
    # Dovecot (tests/dovecot.rs): `dovecot -c CONF -F`, doveadm, and the services its config names.
    tool dovecot-core dovecot doveadm
    for pair in lmtp:dovecot-lmtpd imap:dovecot-imapd imap-login:dovecot-imapd \
        auth:dovecot-core config:dovecot-core log:dovecot-core anvil:dovecot-core; do
        [ -x "/usr/lib/dovecot/${pair%%:*}" ] || fail "${pair#*:}" "/usr/lib/dovecot/${pair%%:*}"
    done
    if have dovecot; then
        version=$(dovecot --version 2>/dev/null)
        case "$version" in
            2.3.*) ;;
            *) fail dovecot-core "Dovecot 2.3 (dovecot --version says: ${version:-nothing})" ;;
        esac
        # The private config's users come from a passwd-file (passdb and userdb): both built in.
        conf=$(mktemp -d)
        printf 'ssl = no\n' >"$conf/dovecot.conf"
        opts=$(dovecot -c "$conf/dovecot.conf" --build-options 2>&1)
        rm -rf "$conf"
        echo "$opts" | grep -q '^Passdb:.* passwd-file' ||
            fail dovecot-core "Dovecot's passwd-file passdb (dovecot --build-options)"
        echo "$opts" | grep -q '^Userdb:.* passwd-file' ||
            fail dovecot-core "Dovecot's passwd-file userdb (dovecot --build-options)"
    fi
    # Users the private instances run their internal and login processes as.
    id dovecot >/dev/null 2>&1 || fail dovecot-core "the user dovecot"
    id dovenull >/dev/null 2>&1 || fail dovecot-core "the user dovenull"
}

# The ODMR provider: Exim 4.99.1 built from source by tests/setup/exim.sh (no Debian package has
# ATRN). The binary the tests use: $MAILCALL_EXIM, else $MAILCALL_CACHE_DIR/exim/bin/exim.
exim_fail() { # WHAT
    echo "features.sh: missing: $1 (run \`sh tests/setup/exim.sh\` as root; it needs exim-4.99.1-src.tar.gz, found via MAILCALL_PEERS_DIR)" >&2
    missing=1
}
exim() {
    bin=${MAILCALL_EXIM:-${MAILCALL_CACHE_DIR:-/var/cache/mailcall}/exim/bin/exim}
    if [ ! -x "$bin" ]; then
        exim_fail "the ODMR provider $bin"
        return
    fi
    if ! v=$("$bin" -bV 2>/dev/null); then
        exim_fail "a working $bin (\`exim -bV\` fails; delete its cache dir and rebuild)"
        return
    fi
    # ATRN came in 4.99 and is always built since; -bV does not list it.
    echo "$v" | head -n1 | awk '{ split($3, n, "."); exit !(n[1] > 4 || (n[1] == 4 && n[2] >= 99)) }' ||
        exim_fail "Exim 4.99 or later for ATRN ($bin -bV says: $(echo "$v" | head -n1))"
    echo "$v" | grep -q '^Support for:.* OpenSSL' || exim_fail "OpenSSL (STARTTLS) in $bin (-bV \"Support for:\"; USE_OPENSSL=yes, package libssl-dev)"
    echo "$v" | grep -q '^Authenticators.*cram_md5.*plaintext' || exim_fail "the cram_md5 and plaintext authenticators in $bin (AUTH_CRAM_MD5, AUTH_PLAINTEXT)"
    echo "$v" | grep -q '^Routers.*manualroute' || exim_fail "the manualroute router in $bin (ROUTER_MANUALROUTE)"
    echo "$v" | grep -q '^Transports.*smtp' || exim_fail "the smtp transport in $bin (TRANSPORT_SMTP)"
    # The option only an ATRN-capable Exim knows; -C keeps root for root only (the tests run as root).
    if [ "$(id -u)" = 0 ]; then
        conf=$(mktemp)
        printf 'keep_environment =\nacl_smtp_atrn = check_atrn\n' >"$conf"
        "$bin" -C "$conf" -bP acl_smtp_atrn 2>/dev/null | grep -qx 'acl_smtp_atrn = check_atrn' ||
            exim_fail "the ATRN option acl_smtp_atrn in $bin (-bP acl_smtp_atrn)"
        rm -f "$conf"
    fi
}

# An ODMR client that is not ours (tests/e2e/odmr_peer.rs).
odmr() {
    tool fetchmail fetchmail
    if have fetchmail; then
        # The release line lists "-ODMR" when built without it.
        fm=$(fetchmail -V 2>/dev/null | grep '^This is fetchmail release')
        case "$fm" in
            "") fail fetchmail "fetchmail -V (no release line)" ;;
            *-ODMR*) fail fetchmail "ODMR in fetchmail ($fm)" ;;
        esac
    fi
}

gui() {
    tool build-essential cc make
    tool pkg-config pkg-config
    tool xvfb Xvfb
    tool xauth xauth
    tool dbus-x11 dbus-launch
    tool dunst dunst dunstctl
    tool haskell-status-notifier-item-utils status-notifier-watcher
    tool haskell-gtk-sni-tray-utils gtk-sni-tray-standalone
    if have gtk-sni-tray-standalone; then
        # The GUI test's panel: top edge, icons at the end, a fixed size and colour.
        help=$(gtk-sni-tray-standalone --help 2>&1)
        for opt in --top --end --size --color; do
            echo "$help" | grep -q -- "$opt" || fail haskell-gtk-sni-tray-utils "the option $opt of gtk-sni-tray-standalone (--help)"
        done
    fi
    tool xdotool xdotool
    tool x11-utils xwininfo
    tool imagemagick import
    tool webkit2gtk-driver WebKitWebDriver
    tool librsvg2-bin rsvg-convert
    if have pkg-config; then
        # What Tauri's -sys crates ask pkg-config for.
        for pair in webkit2gtk-4.1:libwebkit2gtk-4.1-dev gtk+-3.0:libgtk-3-dev \
            libsoup-3.0:libsoup-3.0-dev javascriptcoregtk-4.1:libjavascriptcoregtk-4.1-dev \
            ayatana-appindicator3-0.1:libayatana-appindicator3-dev librsvg-2.0:librsvg2-dev \
            openssl:libssl-dev dbus-1:libdbus-1-dev; do
            pkg-config --exists "${pair%%:*}" || fail "${pair#*:}" "the library ${pair%%:*} (pkg-config)"
        done
        [ -e /usr/include/xdo.h ] || fail libxdo-dev "xdo.h"
    fi
}

windows() {
    # scripts/test.sh's Windows step: the cross C compiler and windres, Wine, makensis (the tests'
    # Wine prefix is tests/setup/wine.sh's, which fails there, saying why, when it cannot be made).
    tool gcc-mingw-w64-x86-64-posix x86_64-w64-mingw32-gcc
    tool binutils-mingw-w64-x86-64 x86_64-w64-mingw32-windres
    tool wine64 wineserver
    [ -x /usr/lib/wine/wine64 ] || fail wine64 "/usr/lib/wine/wine64"
    tool nsis makensis
}

# The Linux package test (tests/package) and its build (scripts/package.sh).
package() {
    tool systemd systemd-analyze journalctl
    for f in /usr/lib/systemd/systemd /usr/lib/systemd/systemd-journald; do
        [ -x "$f" ] || fail systemd "$f"
    done
    [ -e /usr/lib/systemd/user/dbus.socket ] || fail dbus-user-session "the user bus unit /usr/lib/systemd/user/dbus.socket"
    tool libcap2-bin getcap setcap
    tool desktop-file-utils desktop-file-validate
    tool man-db man
    tool binutils readelf
    tool rpm rpm
    tool util-linux unshare nsenter setpriv
}

[ $# -gt 0 ] || set -- e2e mailserver gui exim odmr windows package
for part in "$@"; do "$part"; done
if [ "$missing" != 0 ]; then
    echo "features.sh: the tests cannot run until the packages above are installed" >&2
    exit 1
fi
echo "features.sh: everything the tests use is there ($*)"
