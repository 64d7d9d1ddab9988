"""Server-side state of the wizard: the shared context and each browser's draft.

Secrets (password hashes, private keys, the PKCS#12 bundle) never go into the cookie: the
signed session only carries a random draft id and the CSRF token, the draft itself stays
in this process's memory.  A draft exists only after the setup code was accepted, so a
stranger cannot fill memory, and at most :data:`MAX_DRAFTS` exist at once.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from flask_babel import lazy_gettext as _l

from ..state import StateLayout
from ..web.ratelimit import Throttle
from .apply import ApplyResult, Handover
from .network import NetworkInfo, detect_network
from .plan import (
    AdminAccount,
    CertificateSet,
    FirstUser,
    NetworkChoice,
    ReachChoice,
    SetupPlan,
    SubnetChoice,
)
from .setupcode import SetupCodeStore
from .subnets import HOME_POLICY, SubnetPolicy

MAX_DRAFTS = 8
DRAFT_IDLE_SECONDS = 3600.0

STEPS: tuple[tuple[str, str], ...] = (
    ("code", _l("Setup code")),
    ("admin", _l("Admin account")),
    ("network", _l("Network")),
    ("reach", _l("Reach from the Internet")),
    ("subnet", _l("VPN subnet")),
    ("certs", _l("Certificates")),
    ("user", _l("First VPN user")),
    ("review", _l("Review")),
    ("done", _l("Done")),
)
STEP_NAMES = tuple(name for name, _title in STEPS)


@dataclass
class Draft:
    """One browser's answers so far."""

    id: str
    touched: float
    info: NetworkInfo | None = None
    hostname: str = "ocgate"
    admin: AdminAccount | None = None
    network: NetworkChoice | None = None
    subnet: SubnetChoice | None = None
    certs: CertificateSet | None = None
    user: FirstUser | None = None
    reach: ReachChoice | None = None
    reach_status: dict[str, Any] | None = None  # the last "Check now" on the reach step

    def done_steps(self) -> set[str]:
        done = {"code"}
        for name, value in (("admin", self.admin), ("network", self.network),
                            ("reach", self.reach), ("subnet", self.subnet),
                            ("certs", self.certs), ("user", self.user)):
            if value is not None:
                done.add(name)
        return done

    def next_step(self) -> str:
        done = self.done_steps()
        for name in STEP_NAMES:
            if name not in done:
                return name
        return "review"

    def plan(self, vpn_port: int) -> SetupPlan | None:
        if None in (self.admin, self.network, self.subnet, self.certs, self.user):
            return None
        assert self.admin and self.network and self.subnet and self.certs and self.user
        return SetupPlan(self.admin, self.network, self.subnet, self.certs, self.user,
                         vpn_port, self.reach)


class DraftStore:
    """Bounded, expiring map of draft id -> draft (thread-safe: waitress has threads)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._drafts: OrderedDict[str, Draft] = OrderedDict()
        self._lock = threading.Lock()
        self._clock = clock

    def create(self) -> Draft:
        with self._lock:
            self._expire()
            while len(self._drafts) >= MAX_DRAFTS:
                self._drafts.popitem(last=False)
            draft = Draft(secrets.token_urlsafe(24), self._clock())
            self._drafts[draft.id] = draft
            return draft

    def get(self, draft_id: object) -> Draft | None:
        if not isinstance(draft_id, str):
            return None
        with self._lock:
            self._expire()
            draft = self._drafts.get(draft_id)
            if draft is not None:
                draft.touched = self._clock()
                self._drafts.move_to_end(draft_id)
            return draft

    def keep_only(self, draft_id: str) -> None:
        with self._lock:
            for other in [k for k in self._drafts if k != draft_id]:
                del self._drafts[other]

    def _expire(self) -> None:
        now = self._clock()
        for key in [k for k, d in self._drafts.items() if now - d.touched > DRAFT_IDLE_SECONDS]:
            del self._drafts[key]

    def __len__(self) -> int:
        return len(self._drafts)


@dataclass
class Final:
    """What the final page shows, kept after apply (only in memory)."""

    plan: SetupPlan
    result: ApplyResult
    owner: str  # draft id of the browser that applied: only it may download the PKCS#12


@dataclass
class WizardContext:
    """Everything the views need; tests build one with fakes."""

    layout: StateLayout
    port: int = 80
    vpn_port: int = 443
    policy: SubnetPolicy = HOME_POLICY
    probe: Callable[[], NetworkInfo] = detect_network
    # (LAN address, VPN port) -> the status JSON of one mapping attempt (reach/check.py)
    reach_check: Callable[[str, int], dict[str, Any]] | None = None
    handover: Handover = field(default_factory=Handover)
    handover_commands: list[list[str]] = field(default_factory=list)
    on_applied: Callable[[Final], None] | None = None
    on_finish: Callable[[], None] | None = None
    clock: Callable[[], float] = time.monotonic
    mdns_name: str = "ocgate"
    extra_hosts: tuple[str, ...] = ()
    throttle: Throttle = field(default_factory=Throttle)
    drafts: DraftStore = field(default_factory=DraftStore)
    final: Final | None = None
    finished: threading.Event = field(default_factory=threading.Event)
    apply_lock: threading.Lock = field(default_factory=threading.Lock)
    _info: NetworkInfo | None = None
    _allowed_hosts: frozenset[str] = frozenset()

    @property
    def code_store(self) -> SetupCodeStore:
        return SetupCodeStore(self.layout.setup_code)

    def network(self, refresh: bool = False) -> NetworkInfo:
        """Detected network, cached; refreshing also updates the allowed Host names."""
        if self._info is None or refresh:
            self._info = self.probe()
            self._allowed_hosts = self._hosts_for(self._info)
        return self._info

    def _hosts_for(self, info: NetworkInfo) -> frozenset[str]:
        names = {"localhost", "127.0.0.1", "::1", f"{self.mdns_name}.local",
                 info.hostname, f"{info.hostname}.local", *self.extra_hosts}
        names.update(str(a.address) for a in info.addresses)
        return frozenset(n.lower() for n in names if n)

    def host_allowed(self, host_header: str) -> bool:
        self.network()
        hostname = urlsplit("//" + host_header).hostname if host_header else None
        return hostname is not None and hostname.lower() in self._allowed_hosts

    def canonical_base(self) -> str:
        """http://<address users can reach>[:port] for redirects from foreign Host names."""
        primary = self.network().primary_address
        host = str(primary) if primary is not None else f"{self.mdns_name}.local"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}" + ("" if self.port == 80 else f":{self.port}")
