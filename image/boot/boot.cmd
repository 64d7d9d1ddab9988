# OCGate A/B boot for U-Boot (QEMU virt; see docs/image.md, "Boot selection").
# bootenv.txt on this FAT partition holds BOOT_ORDER and the tries left per slot, as
# appliance/update/bootenv.py writes it; this script boots the first slot in the order
# that has tries left, after taking one away and writing the file back.  The health check
# of a good boot gives the tries back (rauc status mark-good), so a slot that keeps failing
# runs out and the next boot takes the other slot.
setenv BOOT_ORDER "A B"
setenv BOOT_A_LEFT 3
setenv BOOT_B_LEFT 3
setenv OCGATE_ARGS
if fatload ${devtype} ${devnum}:1 ${scriptaddr} bootenv.txt; then
    env import -t ${scriptaddr} ${filesize}
fi

setenv ocg_slot
setenv ocg_pick 'for s in ${BOOT_ORDER}; do if test -z "${ocg_slot}"; then if test "${s}" = A; then if test ${BOOT_A_LEFT} -gt 0; then setexpr BOOT_A_LEFT ${BOOT_A_LEFT} - 1; setenv ocg_slot A; setenv ocg_part 2; fi; fi; if test "${s}" = B; then if test ${BOOT_B_LEFT} -gt 0; then setexpr BOOT_B_LEFT ${BOOT_B_LEFT} - 1; setenv ocg_slot B; setenv ocg_part 3; fi; fi; fi; done'
run ocg_pick
if test -z "${ocg_slot}"; then
    echo "ocgate: no slot has tries left; both get theirs back"
    setenv BOOT_A_LEFT 3
    setenv BOOT_B_LEFT 3
    run ocg_pick
fi
if test -z "${ocg_slot}"; then
    echo "ocgate: BOOT_ORDER names no slot; booting A"
    setenv BOOT_ORDER "A B"
    setenv ocg_slot A
    setenv ocg_part 2
fi

echo "ocgate: booting slot ${ocg_slot} (tries left: A=${BOOT_A_LEFT} B=${BOOT_B_LEFT})"
# (export fails on an unset name, and then there would be no filesize to write)
if test -n "${OCGATE_ARGS}"; then
    env export -t ${scriptaddr} BOOT_ORDER BOOT_A_LEFT BOOT_B_LEFT OCGATE_ARGS
else
    env export -t ${scriptaddr} BOOT_ORDER BOOT_A_LEFT BOOT_B_LEFT
fi
fatwrite ${devtype} ${devnum}:1 ${scriptaddr} bootenv.txt ${filesize}

setenv bootargs "root=PARTUUID=4f434741-0${ocg_part} rootflags=noatime,commit=30 rw rootwait console=ttyAMA0,115200 panic=10 rauc.slot=${ocg_slot} ${OCGATE_ARGS}"
load ${devtype} ${devnum}:${ocg_part} ${kernel_addr_r} /boot/vmlinuz
setenv kernel_comp_addr_r 0x60000000
setenv kernel_comp_size ${filesize}
load ${devtype} ${devnum}:${ocg_part} ${ramdisk_addr_r} /boot/initrd.img
booti ${kernel_addr_r} ${ramdisk_addr_r}:${filesize} ${fdtcontroladdr}
echo "ocgate: slot ${ocg_slot} did not start; resetting"
reset
