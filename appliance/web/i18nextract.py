"""A pybabel extractor for text the UI shows but the VPN server owns: option help.

The settings pages show the help sentence of every option they edit, and that sentence
lives in :data:`appliance.vpn.config.OPTIONS` next to the parser (one table, so the UI
cannot drift from what the server accepts).  The server's code stays free of gettext
(it speaks English, like ocserv); instead ``babel.cfg`` runs this extractor on
``appliance/vpn/config.py``, which yields the help of each option a settings page shows,
so ``pybabel extract`` puts them into the catalog like any marked string.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from typing import IO, Any


def extract_option_help(fileobj: IO[bytes], keywords: Mapping[str, Any],
                        comment_tags: Collection[str], options: Mapping[str, Any]
                        ) -> Iterator[tuple[int, str, str, list[str]]]:
    """(line, function, message, comments) per shown option, as pybabel expects."""
    from ..vpn.config import OPTIONS
    from ..webui.settingsform import GROUPS

    seen: set[str] = set()
    for group in GROUPS:
        for name in group.options:
            text = OPTIONS[name].help
            if text and text not in seen:
                seen.add(text)
                yield 0, "gettext", text, [f"help of the ocserv.conf option '{name}'"]
