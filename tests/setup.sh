#!/bin/sh
# Installs the Debian packages the mailcall-e2e tests drive (a private Postfix as the ISP,
# gnome-keyring as the Secret Service, Cyrus SASL for AUTH, openssl for the ISP's CA) and makes
# sure no system Postfix instance runs. Idempotent; runs as root without a terminal (CI).
set -eu

export DEBIAN_FRONTEND=noninteractive

# What each package is for:
#   postfix            the ISP: `postfix -c DIR start`, postqueue, smtpd, flush (ETRN)
#   sasl2-bin          saslpasswd2, to make the ISP's sasldb
#   libsasl2-modules   the PLAIN and LOGIN mechanisms for the ISP's smtpd
#   libsasl2-modules-db the sasldb auxprop plugin
#   openssl            the ISP's CA and server certificate
#   dbus               dbus-daemon (a private session bus per test) and dbus-send
#   gnome-keyring      the Secret Service the keyring crate talks to
#   libsecret-tools    secret-tool, to look into the keyring from the tests
#   util-linux         setpriv, to run the CLI as an unprivileged user (port 25 test)
#   mount              mount/umount of a size-limited tmpfs (disk-full test)
#   swaks              an SMTP client that is not ours, for the hostile-input tests
#   iproute2           ip netns / ip tuntap, for the network-up trigger tests (a ppp0 stand-in)
PACKAGES="postfix sasl2-bin libsasl2-modules libsasl2-modules-db openssl dbus gnome-keyring libsecret-tools util-linux mount swaks iproute2"

missing=""
for p in $PACKAGES; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    case "$status" in
        "install ok installed") ;;
        *) missing="$missing $p" ;;
    esac
done

if [ -n "$missing" ]; then
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

# ---- GUI (tray app, src-tauri) -------------------------------------------------------------
# Build packages for Tauri on Debian 12, and the throwaway desktop the GUI test drives:
#   libwebkit2gtk-4.1-dev libgtk-3-dev libsoup-3.0-dev libjavascriptcoregtk-4.1-dev  the webview
#   libayatana-appindicator3-dev  the tray (Debian 12 has no libappindicator3-dev)
#   librsvg2-dev libxdo-dev libssl-dev libdbus-1-dev build-essential pkg-config file
#   xvfb xauth          a headless X server for the window
#   dbus-x11            dbus-launch for GTK helpers
#   dunst               a real notification daemon (its history is the test's witness)
#   trayer              a tray host, so the icon is somewhere xdotool can click
#   xdotool x11-utils   clicking the tray menu, window geometry
#   imagemagick         `import -window root` screenshots
#   webkit2gtk-driver   WebKitWebDriver, which tauri-driver drives
#   librsvg2-bin        rsvg-convert, to regenerate icons/ (sh icons/generate.sh)
GUI_PACKAGES="build-essential pkg-config file libwebkit2gtk-4.1-dev libgtk-3-dev libayatana-appindicator3-dev librsvg2-dev libxdo-dev libssl-dev libsoup-3.0-dev libjavascriptcoregtk-4.1-dev libdbus-1-dev xvfb xauth dbus-x11 dunst trayer xdotool x11-utils imagemagick webkit2gtk-driver librsvg2-bin"
gui_missing=""
for p in $GUI_PACKAGES; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    case "$status" in
        "install ok installed") ;;
        *) gui_missing="$gui_missing $p" ;;
    esac
done
if [ -n "$gui_missing" ]; then
    apt-get -o DPkg::Lock::Timeout=600 update
    # shellcheck disable=SC2086 # word splitting of the package list is intended
    apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends $gui_missing
fi
for tool in Xvfb dunst dunstctl trayer xdotool import WebKitWebDriver rsvg-convert; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "setup.sh: $tool is still missing after installing the GUI packages" >&2
        exit 1
    fi
done
# ---- end GUI ---------------------------------------------------------------------------------

# Fail now, with a clear message, rather than in the middle of a test.
for tool in postfix postqueue postconf saslpasswd2 openssl dbus-daemon dbus-send gnome-keyring-daemon secret-tool setpriv mount umount swaks ip smtp-source; do
    if ! command -v "$tool" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$tool" ]; then
        echo "setup.sh: $tool is still missing after installing packages" >&2
        exit 1
    fi
done
echo "setup.sh: e2e test packages ready"
