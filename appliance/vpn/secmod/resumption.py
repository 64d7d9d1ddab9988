"""TLS 1.2 session resumption as ocserv's sec-mod offers it: by session ID, bound to the
client's address, kept for ``cookie-timeout`` seconds, the cache in the sec-mod only.

ocserv looks a session up only for the address that created it; the OpenSSL bindings we
have offer no session-cache callbacks, so each client address gets a context of its own
(the same certificate, key and settings) whose built-in cache therefore only ever holds
that address's sessions: a session ID from elsewhere is simply unknown, and the client
gets a full handshake, as with ocserv. Both dimensions are bounded: at most
``max(2 * max-clients, 64)`` addresses (ocserv's cache size; the least recently seen one
goes first) and :data:`SESSIONS_PER_ADDRESS` handshakes per context, after which that
address starts over with an empty cache, so a flood of handshakes cannot grow the cache.

Not offered while client certificates are requested: a resumed session carries no
certificate check of its own (OpenSSL would replay the first one, past a newer CRL).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable

from OpenSSL import SSL

log = logging.getLogger(__name__)

MIN_ADDRESSES = 64  # ocserv's DEFAULT_MAX_CACHED_TLS_SESSIONS
SESSIONS_PER_ADDRESS = 8  # reconnects per address within cookie-timeout; a context is ~17 KB


class ResumptionContexts:
    """One server context per client address, least recently used first out."""

    def __init__(self, factory: Callable[[], SSL.Context], max_clients: int) -> None:
        self.factory = factory
        self.limit = max(2 * max_clients, MIN_ADDRESSES)
        self._by_address: OrderedDict[str, tuple[SSL.Context, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._by_address)

    def context_for(self, address: str) -> SSL.Context:
        """The context this address's next handshake runs in (counted as one session)."""
        entry = self._by_address.pop(address, None)
        if entry is None or entry[1] >= SESSIONS_PER_ADDRESS:
            if entry is not None:
                log.info("TLS session cache of %s full (%d handshakes); starting over",
                         address, entry[1])
            entry = (self.factory(), 0)
        ctx, used = entry
        self._by_address[address] = (ctx, used + 1)
        while len(self._by_address) > self.limit:
            self._by_address.popitem(last=False)
        return ctx

    def reset(self, factory: Callable[[], SSL.Context]) -> None:
        """New credentials (a reload): sessions made under the old ones are dropped."""
        self.factory = factory
        self._by_address.clear()
