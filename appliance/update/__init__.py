"""A/B updates of the appliance: RAUC bundles and the boot environment they switch.

RAUC (Debian's ``rauc``) checks a bundle's signature and writes the inactive root slot;
the boot loader reads ``bootenv.txt`` on the FAT partition to pick a slot and count its
tries (:mod:`.bootenv`), and RAUC edits that file through :mod:`.bootchooser`.
:mod:`.release` says which release the booted slot is.
"""
