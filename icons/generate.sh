#!/bin/sh
# Regenerates the committed PNGs from the SVG sources (Debian: apt-get install librsvg2-bin).
# Run from anywhere: sh icons/generate.sh
set -eu
cd "$(dirname "$0")"
for size in 32 128 256; do
    rsvg-convert -w "$size" -h "$size" mailcall.svg -o "${size}x${size}.png"
done
cp 256x256.png icon.png
# The Windows resource's icon (tauri-build embeds src-tauri/icons/icon.ico into mailcall.exe; the
# installer uses it too): every size Explorer asks for, from the 256 px PNG (Debian: imagemagick).
convert 256x256.png -define icon:auto-resize=256,128,64,48,32,16 ../src-tauri/icons/icon.ico
# Tray icons: 64 px is what StatusNotifier hosts and XEmbed trays scale down from.
for state in idle fetching new error; do
    rsvg-convert -w 64 -h 64 "tray-$state.svg" -o "tray-$state.png"
done
