#!/bin/sh
# mmdebstrap customize hook ($1 = the new root, packages installed): trim, then build the
# one initramfs.  Everything the project itself adds (overlay, Python, units) is applied
# later by mkimage.py outside the cached base, so editing the overlay never costs a new
# emulated Debian bootstrap.
set -eu
root="$1"
arch="$2"
here="$(dirname "$0")"

rm -f "$root/usr/sbin/policy-rc.d"

# --- kernel modules: the image is a headless router; sound, video capture, GPUs other
# than the Pi's, InfiniBand, industrial I/O and most Wi-Fi chips are dead weight.
for kdir in "$root"/lib/modules/*; do
    [ -d "$kdir" ] || continue
    k="$kdir/kernel"
    rm -rf "$k/sound" "$k/drivers/media" "$k/drivers/infiniband" "$k/drivers/iio" \
           "$k/drivers/isdn" "$k/drivers/staging" "$k/drivers/input/touchscreen" \
           "$k/drivers/gpu/drm/amd" "$k/drivers/gpu/drm/nouveau" "$k/drivers/gpu/drm/radeon" \
           "$k/drivers/gpu/drm/msm" "$k/drivers/gpu/drm/tegra" "$k/drivers/gpu/drm/i915" \
           "$k/drivers/net/wireless/ath" "$k/drivers/net/wireless/intel" \
           "$k/drivers/net/wireless/mediatek" "$k/drivers/net/wireless/realtek" \
           "$k/drivers/net/wireless/marvell" "$k/drivers/net/wireless/ti" \
           "$k/drivers/bluetooth" "$k/net/bluetooth" "$k/drivers/scsi/qla2xxx" \
           "$k/drivers/scsi/lpfc" "$k/drivers/net/ethernet/mellanox" \
           "$k/drivers/net/ethernet/chelsio" "$k/drivers/net/ethernet/intel/ice" \
           "$k/fs/btrfs" "$k/fs/xfs" "$k/fs/ocfs2" "$k/fs/gfs2" "$k/fs/nfs" "$k/fs/ceph" \
           "$k/fs/smb" "$k/fs/f2fs" "$k/fs/jfs" "$k/fs/nilfs2" "$k/fs/ubifs"
    chroot "$root" depmod -a "$(basename "$kdir")"
done

# Documentation, man pages and translations: nobody reads them on the device.
rm -rf "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
       "$root"/usr/share/locale/* "$root"/var/cache/apt/*.bin

# --- initramfs: only what reaches the root file system on a Pi (SD, USB) or QEMU (virtio).
mkdir -p "$root/etc/initramfs-tools/conf.d"
printf 'MODULES=list\nCOMPRESS=gzip\n' > "$root/etc/initramfs-tools/conf.d/ocgate.conf"
cp "$here/initramfs-modules-$arch" "$root/etc/initramfs-tools/modules"

if [ -f "$root/etc/default/raspi-firmware" ]; then
    # cmdline.txt is generated from this file by raspi-firmware's initramfs hook below.
    sed -i -e 's/^#\?ROOTPART=.*/ROOTPART=LABEL=rootfs/' \
           -e 's/^#\?CONSOLES=.*/CONSOLES="serial0,115200 tty1"/' \
           "$root/etc/default/raspi-firmware"
    grep -q '^ROOTPART=' "$root/etc/default/raspi-firmware" || \
        echo 'ROOTPART=LABEL=rootfs' >> "$root/etc/default/raspi-firmware"
fi

rm -f "$root/usr/sbin/update-initramfs"
chroot "$root" dpkg-divert --quiet --local --rename --remove /usr/sbin/update-initramfs
chroot "$root" update-initramfs -c -k all
