#!/usr/bin/env bash
# Builds Mailcall's Linux packages with Tauri's bundler: a .deb (and an .rpm) holding the tray app
# (/usr/bin/mailcall, its desktop file and icons), the CLI (/usr/bin/mailcall-cli), the systemd
# user unit for `mailcall-cli daemon`, bash/zsh/fish completions and man pages generated from
# the CLI's own clap definitions, and the post-install step that gives both binaries
# cap_net_bind_service (port 25 as a normal user). Root is not needed to build.
#
#   bash scripts/package.sh             release build (what users get)
#   bash scripts/package.sh --install   ... and install the .deb with apt (as root or via sudo)
#   bash scripts/package.sh --debug     reuse the debug build (CI: the tests built it already)
#   MAILCALL_PACKAGE_DEBUG=1 ...        the same as --debug
#   MAILCALL_PACKAGE_BUNDLES=deb ...    only the .deb (default: deb,rpm)
#
# The build packages are the tray app's (APP_PACKAGES in tests/setup/packages.sh): missing ones
# are installed first, as scripts/run.sh does (as root or via sudo; nothing is asked when all are
# there). The Tauri CLI comes prebuilt from npm, pinned in scripts/tauri-cli/ to the tauri
# crate's version, installed once into a cache dir outside the clone (needs node and npm).
# On success the last lines of stdout are the paths of the packages built; they are also written
# to $CARGO_TARGET_DIR/package/deb-path and rpm-path (the package test reads them).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

profile=release
install=0
case "${MAILCALL_PACKAGE_DEBUG:-}" in "" | 0) ;; *) profile=debug ;; esac
for arg in "$@"; do
    case "$arg" in
        --debug) profile=debug ;;
        --release) profile=release ;;
        --install) install=1 ;;
        *)
            echo "package.sh: unknown argument $arg (usage: package.sh [--debug|--release] [--install])" >&2
            exit 2
            ;;
    esac
done
bundles=${MAILCALL_PACKAGE_BUNDLES:-deb,rpm}

say() { echo "package.sh: $*" >&2; }
die() {
    echo "package.sh: FAILED: $*" >&2
    exit 1
}
now() { date +%s; }
start=$(now)

sudo_=""
[ "$(id -u)" = 0 ] || sudo_="sudo"

# ---- the build packages (only when some are missing) --------------------------------------------
# shellcheck source=tests/setup/packages.sh
. tests/setup/packages.sh
# shellcheck disable=SC2086 # word splitting of the package list is intended
sh scripts/install-packages.sh $APP_PACKAGES || die "installing the build packages failed"

command -v cargo >/dev/null || die "cargo is missing: install Rust (rustup) first"
target=${CARGO_TARGET_DIR:-$repo/target}
mkdir -p "$target"
target=$(cd "$target" && pwd)
export CARGO_TARGET_DIR=$target

# ---- the Tauri CLI (prebuilt, from npm) --------------------------------------------------------
command -v npm >/dev/null || die "npm is missing: the Tauri CLI is installed from npm (Debian packages nodejs and npm)"
lock_key=$(cat scripts/tauri-cli/package.json scripts/tauri-cli/package-lock.json | sha256sum | cut -c1-16)
cache_root=${MAILCALL_CACHE_DIR:-/var/cache/mailcall}
if ! { mkdir -p "$cache_root" 2>/dev/null && [ -w "$cache_root" ]; }; then
    cache_root=${XDG_CACHE_HOME:-$HOME/.cache}/mailcall
    mkdir -p "$cache_root"
fi
cli_dir=$cache_root/tauri-cli-$lock_key
tauri=$cli_dir/node_modules/.bin/tauri
if ! [ -x "$tauri" ] || ! "$tauri" --version >/dev/null 2>&1; then
    t=$(now)
    rm -rf "$cli_dir.tmp"
    mkdir -p "$cli_dir.tmp"
    cp scripts/tauri-cli/package.json scripts/tauri-cli/package-lock.json "$cli_dir.tmp/"
    (cd "$cli_dir.tmp" && npm ci --no-audit --no-fund --loglevel=error) >&2 ||
        die "npm ci of the Tauri CLI (scripts/tauri-cli) failed"
    rm -rf "$cli_dir"
    mv "$cli_dir.tmp" "$cli_dir"
    say "installed $("$tauri" --version) into $cli_dir in $(($(now) - t)) s"
fi
say "using $("$tauri" --version) ($tauri)"

# ---- the CLI, and what is generated from it ----------------------------------------------------
profile_flag=()
[ "$profile" = release ] && profile_flag=(--release)
t=$(now)
cargo build --locked -p mailcall-cli "${profile_flag[@]}" >&2
cli=$target/$profile/mailcall-cli
[ -x "$cli" ] || die "the build left no $cli"
say "mailcall-cli ($profile) built in $(($(now) - t)) s"

gen=$target/package/$profile
rm -rf "$gen"
mkdir -p "$gen/completions" "$gen/man"
"$cli" generate completions bash >"$gen/completions/mailcall-cli"
"$cli" generate completions zsh >"$gen/completions/_mailcall-cli"
"$cli" generate completions fish >"$gen/completions/mailcall-cli.fish"
"$cli" generate man "$gen/man"
# Debian policy: man pages compressed with gzip -9, without a timestamp (-n) so builds repeat.
gzip -9n "$gen"/man/*.1
for f in "$gen"/completions/* "$gen"/man/*.1.gz; do
    [ -s "$f" ] || die "generated an empty $f"
done

# Every generated file, with its place in the installed system, for the bundler's `files`
# (zsh's directory for packaged completions differs: Debian vendor-completions, Fedora
# site-functions). The unit from tauri.conf.json is repeated so the list is complete either way.
files_json() { # ZSH_DIR
    local first=1
    printf '{'
    add() {
        [ $first = 1 ] || printf ','
        first=0
        printf '\n  "%s": "%s"' "$1" "$2"
    }
    add /usr/bin/mailcall-cli "$cli"
    add /usr/share/bash-completion/completions/mailcall-cli "$gen/completions/mailcall-cli"
    add "$1/_mailcall-cli" "$gen/completions/_mailcall-cli"
    add /usr/share/fish/vendor_completions.d/mailcall-cli.fish "$gen/completions/mailcall-cli.fish"
    for page in "$gen"/man/*.1.gz; do
        add "/usr/share/man/man1/$(basename "$page")" "$page"
    done
    add /usr/lib/systemd/user/mailcall.service "$repo/packaging/linux/mailcall.service"
    printf '\n}'
}
extra=$gen/tauri.package.json
cat >"$extra" <<EOF
{
  "bundle": {
    "linux": {
      "deb": { "files": $(files_json /usr/share/zsh/vendor-completions) },
      "rpm": { "files": $(files_json /usr/share/zsh/site-functions) }
    }
  }
}
EOF

# ---- the tray app and the bundles ---------------------------------------------------------------
debug_flag=()
[ "$profile" = debug ] && debug_flag=(--debug)
bundle_dir=$target/$profile/bundle
rm -rf "$bundle_dir"
t=$(now)
(cd src-tauri && "$tauri" build --ci "${debug_flag[@]}" --bundles "$bundles" --config "$extra" -- --locked) >&2 ||
    die "tauri build failed (the build packages are APP_PACKAGES in tests/setup/packages.sh: bash scripts/run.sh installs them)"
say "tauri build ($profile, $bundles) in $(($(now) - t)) s"

deb=$(find "$bundle_dir/deb" -maxdepth 1 -name '*.deb' 2>/dev/null | head -n 1)
[ -n "$deb" ] || die "tauri build made no .deb under $bundle_dir/deb"
echo "$deb" >"$target/package/deb-path"
rpm=$(find "$bundle_dir/rpm" -maxdepth 1 -name '*.rpm' 2>/dev/null | head -n 1)
rm -f "$target/package/rpm-path"
[ -z "$rpm" ] || echo "$rpm" >"$target/package/rpm-path"
say "done in $(($(now) - start)) s"
if [ "$install" = 1 ]; then
    # apt installs the Depends too; --reinstall when this version is installed already.
    say "installing $deb"
    $sudo_ apt-get -o DPkg::Lock::Timeout=600 install -y --reinstall "$deb" >&2 ||
        die "apt-get install $deb failed"
    say "installed: start the tray app with \`mailcall\` (or from the menu), or the daemon with \`systemctl --user enable --now mailcall\`"
fi
find "$bundle_dir" -maxdepth 2 -type f \( -name '*.deb' -o -name '*.rpm' \) | sort
