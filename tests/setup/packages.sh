# The Debian 12 packages the tests need, one list per purpose; sourced by tests/setup.sh and by
# tests/setup/prove.sh (which installs exactly these into a fresh root to show nothing is missing).
# Each package is here for what the tests *use* of it: tests/setup/features.sh checks that use.
# Always installed with --no-install-recommends: a Recommends the tests need is listed by name.

# The end-to-end tests (tests/e2e) and the benchmarks:
#   postfix               the ISP: `postfix -c DIR start`, postqueue, smtpd, flush (ETRN), smtp-source/-sink
#   sasl2-bin             saslpasswd2 (the ISP's sasldb), saslpluginviewer (features.sh)
#   libsasl2-modules      the PLAIN, LOGIN and CRAM-MD5 mechanisms for the ISP's smtpd
#   libsasl2-modules-db   the sasldb auxprop plugin
#   openssl               the ISP's CA and server certificate
#   dbus                  dbus-daemon (a private session bus per test) and dbus-send
#   gnome-keyring         the Secret Service the keyring crate talks to
#   libsecret-tools       secret-tool, to look into the keyring from the tests
#   util-linux            setpriv, to run the CLI as an unprivileged user (port 25 test); runuser,
#                         which the ip-up.d recipe (contrib/ppp/ip-up.d/mailcall) drops to the user with
#   passwd                useradd/usermod/userdel: a throwaway user for the ip-up.d recipe test
#   mount                 mount/umount of a size-limited tmpfs (disk-full test)
#   swaks                 an SMTP client that is not ours, for the hostile-input tests
#   libnet-ssleay-perl    swaks --tls (only a Recommends of swaks: without it "TLS not available")
#   libio-socket-ssl-perl swaks --tls, likewise
#   iproute2              ip netns / ip tuntap, for the network-up trigger tests (a ppp0 stand-in)
#   s-nail                a real mail program submitting to the submission listener over SMTP
E2E_PACKAGES="postfix sasl2-bin libsasl2-modules libsasl2-modules-db openssl dbus gnome-keyring libsecret-tools util-linux passwd mount swaks libnet-ssleay-perl libio-socket-ssl-perl iproute2 s-nail"

# The mail server and reader the end-to-end tests hand mail to and read Mailcall's Maildir with
# (tests/dovecot.rs runs a private instance per test with `dovecot -c CONF -F`; setup.sh stops the
# system instance the package starts):
#   dovecot-core    the dovecot master, doveadm (search/fetch/mailbox list), passwd-file auth, Maildir
#   dovecot-imapd   the IMAP service (/usr/lib/dovecot/imap, imap-login): a real reader of the Maildir
#   dovecot-lmtpd   the LMTP service (/usr/lib/dovecot/lmtp): the LAN mail server Mailcall may hand mail to
DOVECOT_PACKAGES="dovecot-core dovecot-imapd dovecot-lmtpd"

# The tray app (src-tauri): build packages for Tauri on Debian 12, and the throwaway desktop the
# GUI test drives:
#   libwebkit2gtk-4.1-dev libgtk-3-dev libsoup-3.0-dev libjavascriptcoregtk-4.1-dev  the webview
#   libayatana-appindicator3-dev  the tray (Debian 12 has no libappindicator3-dev)
#   librsvg2-dev libxdo-dev libssl-dev libdbus-1-dev build-essential pkg-config file
#   xvfb xauth          a headless X server for the window
#   dbus-x11            dbus-launch for GTK helpers
#   dunst               a real notification daemon (its history is the test's witness)
#   haskell-status-notifier-item-utils  status-notifier-watcher: the StatusNotifierWatcher (the
#                       registry tray icons and trays meet at; the app's icon is a StatusNotifierItem)
#   haskell-gtk-sni-tray-utils  gtk-sni-tray-standalone: a tray panel that shows StatusNotifierItems
#                       and their dbusmenu, so the icon is somewhere xdotool can click (left: fetch,
#                       right: the menu)
#   xdotool x11-utils   clicking the tray menu, window geometry
#   imagemagick         `import -window root` screenshots
#   webkit2gtk-driver   WebKitWebDriver, which tauri-driver drives
#   librsvg2-bin        rsvg-convert, to regenerate icons/ (sh icons/generate.sh)
GUI_PACKAGES="build-essential pkg-config file libwebkit2gtk-4.1-dev libgtk-3-dev libayatana-appindicator3-dev librsvg2-dev libxdo-dev libssl-dev libsoup-3.0-dev libjavascriptcoregtk-4.1-dev libdbus-1-dev xvfb xauth dbus-x11 dunst haskell-status-notifier-item-utils haskell-gtk-sni-tray-utils xdotool x11-utils imagemagick webkit2gtk-driver librsvg2-bin"

# What `scripts/run.sh` needs to build and run the tray app from source: the GUI build packages and a
# Secret Service for the accounts (gnome-keyring; a desktop session usually has one already).
APP_PACKAGES="build-essential pkg-config file libwebkit2gtk-4.1-dev libgtk-3-dev libayatana-appindicator3-dev librsvg2-dev libxdo-dev libssl-dev libsoup-3.0-dev libjavascriptcoregtk-4.1-dev libdbus-1-dev gnome-keyring"

# The ODMR provider: Exim 4.99.1 built from upstream source by tests/setup/exim.sh (Debian 12's
# exim4 4.96 has no ATRN), cached outside the clone; tests/exim.rs runs it per test on loopback.
# Build-time packages only (the binary links libpcre2-8, libdb-5.3, libssl3, libcrypto3, all
# installed with these); this list alone builds it in a fresh minbase root:
#   build-essential   cc, make
#   libpcre2-dev      PCRE2 (Exim's regexes; PCRE2_CONFIG=yes runs pcre2-config)
#   libdb5.3-dev      Berkeley DB for Exim's hints databases (USE_DB=yes, DBMLIB=-ldb)
#   libssl-dev        OpenSSL for STARTTLS (USE_OPENSSL=yes)
#   curl ca-certificates  the source's download from upstream, where no copy is at hand
EXIM_BUILD_PACKAGES="build-essential libpcre2-dev libdb5.3-dev libssl-dev curl ca-certificates"

# An ODMR client that is not ours, fetching through that Exim (tests/e2e/odmr_peer.rs):
#   fetchmail         `protocol ODMR` (ATRN, CRAM-MD5 only), relaying to an SMTP sink
ODMR_PACKAGES="fetchmail"

# tests/setup/prove.sh (called by .ci/run): builds a fresh Debian 12 root to show these lists are
# complete:
#   mmdebstrap  creates the minimal Debian root (root mode; needs nothing it only Recommends)
PROOF_PACKAGES="mmdebstrap"

# The Windows step in scripts/test.sh (both programs built for x86_64-pc-windows-gnu; the core's
# and the CLI's unit tests and the e2e tests of tests/e2e/windows.rs run under Wine; the installer):
#   gcc-mingw-w64-x86-64-posix  x86_64-w64-mingw32-gcc (ring's C code; the ProcessPrng stand-in DLL
#                               that tests/setup/wine.sh builds from tests/wine/)
#   binutils-mingw-w64-x86-64   x86_64-w64-mingw32-windres, -ar, -ld
#   mingw-w64                   the Windows headers and import libraries (advapi32 for the DLL)
#   wine wine64                 Wine 8.0: runs the .exe files in the tests' own prefix
#                               ($MAILCALL_CACHE_DIR/wine, made by tests/setup/wine.sh)
#   nsis                        makensis: the installer from packaging/windows/mailcall.nsi
WINDOWS_PACKAGES="gcc-mingw-w64-x86-64-posix binutils-mingw-w64-x86-64 mingw-w64 wine wine64 nsis"

# The Linux package: scripts/package.sh builds the .deb/.rpm; tests/package installs the .deb,
# uses it as a normal user (port 25, the user unit under a real `systemd --user`) and purges it:
#   systemd             systemd-analyze verify --user, the user manager, systemd-journald, journalctl
#   dbus-user-session   the user manager's session bus (dbus.socket), where the daemon finds the keyring
#   libcap2-bin         getcap (setcap too: the package's postinst runs it, its Depends names it)
#   desktop-file-utils  desktop-file-validate for the installed desktop file
#   man-db              man -w / man for the installed pages
#   binutils            readelf: the libraries the binaries link, checked against Depends
#   rpm                 rpm -qp: the .rpm's files, requirements and scripts
#   util-linux          unshare and nsenter (the user manager's mount namespace), setpriv
# (The Tauri CLI comes from npm, scripts/tauri-cli, run by the machine's Node.js and npm: Debian's
# npm package would replace that Node.js, so it is not listed; package.sh says when npm is missing.)
PACKAGE_PACKAGES="systemd dbus-user-session libcap2-bin desktop-file-utils man-db binutils rpm util-linux"

# scripts/soak.sh --busy (the suite run N times while every core is busy, as on a shared CI
# machine); installed by soak.sh itself when missing, not by tests/setup.sh:
#   stress-ng   `stress-ng --cpu N`: a load on every core
SOAK_PACKAGES="stress-ng"
