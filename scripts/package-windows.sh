#!/usr/bin/env bash
# Builds Mailcall's Windows installer with Debian's NSIS (makensis) from
# packaging/windows/mailcall.nsi: a per-user install of mailcall-cli.exe and, when it was built,
# the tray app mailcall.exe (x86_64-pc-windows-gnu, cross-built with mingw-w64), stripped.
# Tauri's NSIS bundler is not used: it downloads a helper DLL at build time.
#
#   bash scripts/package-windows.sh            release build (what users get)
#   bash scripts/package-windows.sh --debug    reuse the debug build (CI: the windows step built it)
#   MAILCALL_WINDOWS_TRAY=0 ...                without the tray app (the CLI alone; where the
#                                              tray's cross build is not at hand)
#
# Needs: rustup's x86_64-pc-windows-gnu target, mingw-w64 and nsis (tests/setup/packages.sh,
# WINDOWS_PACKAGES). The last line of stdout is the installer's path; it is also written to
# $CARGO_TARGET_DIR/package/windows-setup-path (the Windows test reads it).
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release
for arg in "$@"; do
    case "$arg" in
        --debug) profile=debug ;;
        --release) profile=release ;;
        *)
            echo "package-windows.sh: unknown argument $arg (usage: package-windows.sh [--debug|--release])" >&2
            exit 2
            ;;
    esac
done
say() { echo "package-windows.sh: $*" >&2; }
for tool in makensis x86_64-w64-mingw32-strip; do
    command -v "$tool" >/dev/null || { say "$tool is missing: apt-get install nsis mingw-w64 (or run tests/setup.sh)"; exit 1; }
done

target=x86_64-pc-windows-gnu
target_dir=$(realpath -m "${CARGO_TARGET_DIR:-target}")
flags=(--locked --target "$target")
[ "$profile" = release ] && flags+=(--release)
packages=(-p mailcall-cli)
with_tray=${MAILCALL_WINDOWS_TRAY:-1}
[ "$with_tray" = 0 ] || packages+=(-p mailcall)
say "building ${packages[*]} for $target ($profile)"
cargo build "${flags[@]}" "${packages[@]}"

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
out=$target_dir/package/windows
mkdir -p "$out"
bin=$target_dir/$target/$profile
# Stripped: the debug build's symbols would make a 200 MB installer that Wine's extraction
# does not finish.
x86_64-w64-mingw32-strip -o "$out/mailcall-cli.exe" "$bin/mailcall-cli.exe"
defines=(-DVERSION="$version" -DCLI_EXE="$out/mailcall-cli.exe" -DOUTFILE="$out/mailcall-$version-setup.exe")
if [ "$with_tray" != 0 ]; then
    x86_64-w64-mingw32-strip -o "$out/mailcall.exe" "$bin/mailcall.exe"
    defines+=(-DTRAY_EXE="$out/mailcall.exe")
else
    say "NOTE: MAILCALL_WINDOWS_TRAY=0: the installer holds the CLI only (its Start-menu entry and start at login run \`mailcall-cli daemon\`)"
fi
# The debug build's installer is for the tests: zlib packs it in a fraction of lzma's time.
[ "$profile" = release ] || defines+=(-DCOMPRESSOR=zlib)
makensis -V2 -NOCD "${defines[@]}" packaging/windows/mailcall.nsi
echo "$out/mailcall-$version-setup.exe" >"$target_dir/package/windows-setup-path"
echo "$out/mailcall-$version-setup.exe"
