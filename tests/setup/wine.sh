#!/bin/sh
# Makes the tests' own Wine prefix, where the Windows tests run mailcall-cli.exe and the installer
# (tests/e2e/windows.rs, scripts/test.sh's windows step):
#   $MAILCALL_CACHE_DIR/wine        (MAILCALL_CACHE_DIR: /var/cache/mailcall; never ~/.wine)
# Debian 12's Wine 8.0 lacks bcryptprimitives.dll!ProcessPrng, which Rust's standard library
# imports: every Rust .exe would fail to start (exit 53). The stand-in DLL is built here with mingw
# from tests/wine/bcryptprimitives.c and put into the prefix's system32 (Wine 8.0 has no builtin
# bcryptprimitives.dll, so the native one is loaded without an override).
# POSIX sh, idempotent (quick once the prefix exists), runs as root
# without a terminal. Needs the packages WINDOWS_PACKAGES (tests/setup/packages.sh).
#   sh tests/setup/wine.sh
set -eu
here=$(cd "$(dirname "$0")" && pwd)
src=$here/../wine
prefix=${MAILCALL_CACHE_DIR:-/var/cache/mailcall}/wine
wine=/usr/lib/wine/wine64

[ -x "$wine" ] || { echo "wine.sh: $wine is missing: apt-get install wine wine64" >&2; exit 1; }
command -v x86_64-w64-mingw32-gcc >/dev/null || { echo "wine.sh: x86_64-w64-mingw32-gcc is missing: apt-get install mingw-w64" >&2; exit 1; }

export WINEPREFIX="$prefix" WINEDEBUG=-all WINEARCH=win64
# No Mono or Gecko installer prompts (nothing here needs .NET or Wine's HTML engine).
export WINEDLLOVERRIDES="mscoree,mshtml="

if ! [ -f "$prefix/system.reg" ]; then
    echo "wine.sh: creating the Wine prefix $prefix"
    mkdir -p "$prefix"
    "$wine" wineboot --init
    # wineboot returns before wineserver has written the registry: wait for it to finish.
    wineserver -w
fi

dll=$prefix/drive_c/windows/system32/bcryptprimitives.dll
# Built every time (a second): the DLL in the prefix is always the one from this source.
x86_64-w64-mingw32-gcc -shared -O2 -Wall -Wextra -Werror -o "$dll" \
    "$src/bcryptprimitives.c" "$src/bcryptprimitives.def" -ladvapi32
echo "wine.sh: the Wine prefix $prefix is ready"
