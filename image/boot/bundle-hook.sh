#!/bin/sh
# RAUC bundle hook (manifest: [hooks] filename=hook.sh, [image.rootfs] hooks=post-install).
# Runs on the device after RAUC wrote the new root slot and mounted it at
# $RAUC_SLOT_MOUNT_POINT: what this device made of its /etc since it was flashed goes
# along, so the new slot boots as the same machine with the same services enabled and
# the wizard is not run again (the settings themselves are on the data partition).
set -eu
[ "${1:-}" = slot-post-install ] || exit 0
[ "${RAUC_SLOT_CLASS:-}" = rootfs ] || exit 0
new="$RAUC_SLOT_MOUNT_POINT"
old="${OCGATE_HOOK_OLD_ROOT:-}"  # the running system; tests point it elsewhere
[ -d "$new/etc" ] || { echo "hook: $new is not a root file system" >&2; exit 1; }

# identity: machine-id (else systemd would treat the new slot as a first boot and apply
# presets again) and the SSH host keys clients already trust
cp -p "$old/etc/machine-id" "$new/etc/machine-id"
for key in "$old"/etc/ssh/ssh_host_*; do
    if [ -e "$key" ]; then cp -p "$key" "$new/etc/ssh/"; fi
done

# unit enablement the wizard's hand-over changed (ocgate-* only; the image decides the rest)
for wants in "$old"/etc/systemd/system/*.wants; do
    name=$(basename "$wants")
    mkdir -p "$new/etc/systemd/system/$name"
    for link in "$new/etc/systemd/system/$name"/ocgate-*; do
        if [ -L "$link" ] && [ ! -L "$wants/$(basename "$link")" ]; then rm -f "$link"; fi
    done
    for link in "$wants"/ocgate-*; do
        [ -L "$link" ] || continue
        ln -sfn "$(readlink "$link")" "$new/etc/systemd/system/$name/$(basename "$link")"
    done
done
echo "hook: carried machine-id, SSH host keys and ocgate unit links into $RAUC_SLOT_BOOTNAME"
