"""The QEMU tests (minutes of emulated CPU each) run under ``make image-test`` only.

Outside it, ``make test`` reports them as the one allowed skip: test_boot.py skips with the
reason and names the other QEMU modules, which are then not collected at all, so that one
skip line stands for every test that needs the booted image.
"""

from __future__ import annotations

import os

#: modules besides test_boot.py that boot the image
QEMU_MODULES = ["test_update.py"]

collect_ignore = [] if os.environ.get("OCGATE_IMAGE_TEST") == "1" else QEMU_MODULES
