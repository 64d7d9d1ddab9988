"""Where the appliance keeps its state: one folder, one layout, shared by every component.

The first-boot wizard writes this folder, ``make run`` (devrun) reads it, the VPN server is
pointed at the ocserv.conf inside it and the admin web UI edits it.  Keeping every path in
one small module means a rename happens in one place and no component can disagree with
another about where, say, the server key lives.

Layout (``STATE`` is ``/var/lib/ocgate`` on the device, ``./state`` with ``make run``)::

    STATE/ocserv.conf            ocserv syntax, written through appliance.vpn.config (0600)
    STATE/ocpasswd               VPN users, ocpasswd format (0600)
    STATE/admin.passwd           admin web UI account, same format and crypt scheme (0600)
    STATE/certs/ca-cert.pem      the appliance CA (0644) and its key ca-key.pem (0600)
    STATE/certs/server-cert.pem  TLS certificate of the VPN and admin UI (0644), key (0600)
    STATE/certs/crl.pem          CRL of revoked client certificates (admin UI, 0644)
    STATE/certs/acme-alpn/       TLS-ALPN-01 challenge certificates the sec-mod serves while
                                 an ACME order runs (reach/challenges.py store_beside, 0700)
    STATE/client-certs.json      issued client certificates: serial, user, expiry (0600)
    STATE/admin-totp.json        admin TOTP secrets, hashed recovery codes (0600)
    STATE/ui-language.json       the web pages' language: device default, per admin (0644)
    STATE/boot/setup-code.txt    one-time setup code; boot/ is the FAT boot partition on the
                                 device, so the owner can read it from a card reader
    STATE/reach.json             reachability choices: port mapping, DNS name, ACME (0644)
    STATE/reach-secrets.json     DDNS/TSIG credentials (0600, appliance/reach/credentials.py)
    STATE/reach-status.json      what the reachability service found last (0644)
    STATE/setup-done             commit marker: present = the wizard finished (JSON)
    STATE/run/                   sockets and pid files of the running server
    STATE/.apply/                staging area of an apply in progress (crash recovery)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DEVICE_STATE_DIR = Path("/var/lib/ocgate")


@dataclass(frozen=True)
class StateLayout:
    """Paths inside one state folder; pure path arithmetic, never touches the disk."""

    root: Path

    @classmethod
    def at(cls, root: str | Path) -> StateLayout:
        """Layout for ``root`` made absolute: the paths end up inside ocserv.conf."""
        return cls(Path(root).resolve())

    # ---- configuration and credentials
    @property
    def conf(self) -> Path:
        return self.root / "ocserv.conf"

    @property
    def passwd(self) -> Path:
        return self.root / "ocpasswd"

    @property
    def admin_passwd(self) -> Path:
        return self.root / "admin.passwd"

    # ---- certificates
    @property
    def certs_dir(self) -> Path:
        return self.root / "certs"

    @property
    def ca_cert(self) -> Path:
        return self.certs_dir / "ca-cert.pem"

    @property
    def ca_key(self) -> Path:
        return self.certs_dir / "ca-key.pem"

    @property
    def server_cert(self) -> Path:
        return self.certs_dir / "server-cert.pem"

    @property
    def server_key(self) -> Path:
        return self.certs_dir / "server-key.pem"

    @property
    def crl(self) -> Path:
        """Revocation list of client certificates the admin UI issued (ocserv ``crl``)."""
        return self.certs_dir / "crl.pem"

    @property
    def client_certs(self) -> Path:
        """Metadata of issued client certificates (JSON; never their private keys)."""
        return self.root / "client-certs.json"

    @property
    def admin_totp(self) -> Path:
        """Admin TOTP secrets and hashed recovery codes (JSON, 0600)."""
        return self.root / "admin-totp.json"

    @property
    def reach_settings(self) -> Path:
        return self.root / "reach.json"

    @property
    def reach_secrets(self) -> Path:
        return self.root / "reach-secrets.json"

    @property
    def reach_status(self) -> Path:
        return self.root / "reach-status.json"

    @property
    def ui_language(self) -> Path:
        """The wizard's language (the admin UI's default) and each admin's choice (JSON)."""
        return self.root / "ui-language.json"

    # ---- first boot
    @property
    def boot_dir(self) -> Path:
        return self.root / "boot"

    @property
    def setup_code(self) -> Path:
        return self.boot_dir / "setup-code.txt"

    @property
    def setup_done(self) -> Path:
        return self.root / "setup-done"

    @property
    def staging(self) -> Path:
        return self.root / ".apply"

    # ---- runtime
    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    @property
    def socket_file(self) -> Path:
        return self.run_dir / "ocgate-socket"

    @property
    def occtl_socket(self) -> Path:
        return self.run_dir / "occtl.socket"

    @property
    def pid_file(self) -> Path:
        return self.run_dir / "ocgate.pid"

    def is_setup_done(self) -> bool:
        """True once a wizard apply committed (the marker is written last)."""
        return self.setup_done.is_file()

    def relative(self, path: Path) -> str:
        """``path`` relative to the root, for manifests that must survive a moved folder."""
        return str(path.relative_to(self.root))
