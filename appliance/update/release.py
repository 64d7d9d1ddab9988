"""Which release this root slot is: written by the image build, read by whoever shows it.

Each root slot carries its own ``/usr/lib/ocgate/release`` (image/mkimage.py writes it from
``--release``), so after an update the file, ``ocgate-server --version`` and the web UI all
change together with the slot that booted.  A source checkout has no such file.
"""

from __future__ import annotations

from pathlib import Path

RELEASE_FILE = Path("/usr/lib/ocgate/release")


def installed_release(path: Path = RELEASE_FILE) -> str | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return text or None
