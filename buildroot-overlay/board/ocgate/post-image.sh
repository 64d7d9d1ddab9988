#!/bin/sh
# Buildroot post-image script: the data partition from TARGET_DIR/var/lib/ocgate, then the
# SD card image with genimage (no loop devices, like the Debian pipeline).
set -eu
BOARD_DIR="$(dirname "$0")"
: "${BINARIES_DIR:?run from Buildroot}" "${TARGET_DIR:?run from Buildroot}"
: "${BUILD_DIR:?run from Buildroot}"

rm -f "$BINARIES_DIR/data.ext4"
mke2fs -q -F -t ext4 -L data -d "$TARGET_DIR/var/lib/ocgate" -E root_owner=0:0 \
    "$BINARIES_DIR/data.ext4" 64M

GENIMAGE_TMP="$BUILD_DIR/genimage.tmp"
ROOTPATH_TMP="$(mktemp -d)"
trap 'rm -rf "$ROOTPATH_TMP"' EXIT
rm -rf "$GENIMAGE_TMP"
genimage --rootpath "$ROOTPATH_TMP" --tmppath "$GENIMAGE_TMP" \
    --inputpath "$BINARIES_DIR" --outputpath "$BINARIES_DIR" \
    --config "$BOARD_DIR/genimage.cfg"
