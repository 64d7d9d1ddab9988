#!/bin/sh
# mmdebstrap essential hook ($1 = the new root): runs before the kernel and the rest are
# installed.  Debian's initramfs build takes ~14 min per run under qemu-user and would run
# several times (kernel, raspi-firmware, every trigger); divert it to /bin/true here and
# build the initramfs once, with a short module list, in customize.sh.
set -eu
root="$1"
chroot "$root" dpkg-divert --quiet --local --rename --add /usr/sbin/update-initramfs
ln -sf /bin/true "$root/usr/sbin/update-initramfs"
# Never start services inside the build chroot.
printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d"
chmod 0755 "$root/usr/sbin/policy-rc.d"
