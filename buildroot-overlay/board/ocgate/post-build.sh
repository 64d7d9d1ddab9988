#!/bin/sh
# Buildroot post-build script ($1 = TARGET_DIR): what the Debian pipeline does in
# image/mkimage.py (configure_root), for the Buildroot root file system.
set -eu
TARGET_DIR="$1"

# per-device identity is made at first boot (ocgate-firstboot-init.service)
echo uninitialized > "$TARGET_DIR/etc/machine-id"
rm -f "$TARGET_DIR"/etc/ssh/ssh_host_*
for d in var/lib/ocgate var/lib/ocgate/run boot/firmware; do
    mkdir -p "$TARGET_DIR/$d"
    chmod 0755 "$TARGET_DIR/$d"
done
