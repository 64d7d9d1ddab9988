"""What the sec-mod keeps per virtual host: its certificate and key, the TLS context(s)
that serve them, and its authentication back-ends.

The host is picked from the ClientHello's SNI before OpenSSL starts
(protocol/tls/clienthello.py through the handshake's ContextChooser), as ocserv's
hello hook does: a name no section carries, or no name at all, gets the default host.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from OpenSSL import SSL

from ..auth.groups import group_policy
from ..auth.registry import AuthSetup, make_setup
from ..config import Config, ConfigError
from ..protocol.tls.credentials import Credentials, KeyLoadError, load_credentials, read_pin_file
from ..protocol.tls.handshake import make_server_context
from .resumption import ResumptionContexts

log = logging.getLogger(__name__)


def make_auth_setup(cfg: Config) -> AuthSetup:
    """The configured back-ends; AuthConfigError explains an impossible combination."""
    policy = group_policy(cfg.select_groups, cfg.default_select_group, cfg.auto_select_group)
    return make_setup(cfg.auth, cfg.enable_auth, cfg.ca_cert, cfg.cert_user_oid, policy,
                      answer_timeout=float(max(cfg.auth_timeout, 30)), acct=cfg.acct)


def crl_stamp(path: str | None) -> tuple[int, int] | None:
    if not path:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def load_host_credentials(cfg: Config) -> Credentials:
    """server-cert and server-key, read now; an encrypted key opens with key-pin or the
    pin-file's PIN, never at a console (protocol/tls/credentials.py)."""
    if cfg.server_cert is None or cfg.server_key is None:
        raise ConfigError("'server-cert' and 'server-key' must be set")
    try:
        pin = cfg.key_pin or (read_pin_file(cfg.pin_file) if cfg.pin_file else None)
        return load_credentials(cfg.server_cert, cfg.server_key, pin)
    except KeyLoadError as exc:
        raise ConfigError(f"{cfg.where('server-key')}: {exc}") from None


@dataclass
class HostTls:
    """One host's key material and contexts; only the sec-mod ever builds one."""
    cfg: Config
    setup: AuthSetup
    credentials: Credentials
    ctx: SSL.Context
    crl_stamp: tuple[int, int] | None
    resumption: ResumptionContexts | None

    @classmethod
    def load(cls, cfg: Config) -> HostTls:
        setup = make_auth_setup(cfg)
        creds = load_host_credentials(cfg)
        host = cls(cfg, setup, creds, _context(cfg, setup, creds), crl_stamp(cfg.crl), None)
        # TLS 1.2 resumption as ocserv offers it (secmod/resumption.py), not with client
        # certificates: a resumed session would skip their check
        if not setup.wants_cert:
            host.resumption = ResumptionContexts(host.resuming_context, cfg.max_clients)
        return host

    def resuming_context(self) -> SSL.Context:
        """A context for one client address, with a session cache (secmod/resumption.py)."""
        return _context(self.cfg, self.setup, self.credentials, resume=True)

    def context_for(self, address: str | None) -> SSL.Context:
        """The context a handshake from ``address`` runs in (None: no resumption)."""
        if self.resumption is None or address is None:
            return self.ctx
        return self.resumption.context_for(address)

    def reload(self) -> str | None:
        """SIGHUP: the same paths read again; None on success, else why the old pair
        stays in use."""
        try:
            creds = load_host_credentials(self.cfg)
            ctx = _context(self.cfg, self.setup, creds)
        except (OSError, ValueError, SSL.Error) as exc:  # ConfigError is a ValueError
            log.error("reload: vhost=%s cannot load server-cert %s / server-key %s, keeping "
                      "the running pair: %s", self.cfg.label, self.cfg.server_cert,
                      self.cfg.server_key, exc)
            return str(exc)[:400]
        self.credentials, self.ctx = creds, ctx
        self.crl_stamp = crl_stamp(self.cfg.crl)
        if self.resumption is not None:
            self.resumption.reset(self.resuming_context)
        log.info("reload: vhost=%s server certificate %s loaded sha1=%s", self.cfg.label,
                 self.cfg.server_cert, creds.sha1)
        return None

    def refresh_crl(self) -> None:
        """ocserv re-reads the CRL when the file changes; a new context picks it up."""
        if not (self.setup.wants_cert and self.cfg.crl):
            return
        stamp = crl_stamp(self.cfg.crl)
        if stamp == self.crl_stamp:
            return
        try:
            self.ctx = _context(self.cfg, self.setup, self.credentials)
        except (OSError, ValueError, SSL.Error) as exc:
            log.error("cannot reload CRL %s (keeping the old one): %s", self.cfg.crl, exc)
            return
        self.crl_stamp = stamp
        log.info("reloaded CRL %s", self.cfg.crl)


def _context(cfg: Config, setup: AuthSetup, creds: Credentials,
             resume: bool = False) -> SSL.Context:
    return make_server_context(creds, cfg.tls_priorities, cfg.ca_cert,
                               client_certs=setup.wants_cert,
                               crl_file=cfg.crl if setup.wants_cert else None,
                               resume_timeout=max(cfg.cookie_timeout, 1) if resume else 0)


def load_hosts(cfg: Config) -> dict[str, HostTls]:
    """Every host of the configuration by name ("" is the default one)."""
    hosts = {"": HostTls.load(cfg)}
    for name, vcfg in cfg.vhosts.items():
        hosts[name] = HostTls.load(vcfg)
        log.info("vhost=%s server certificate %s sha1=%s", name, vcfg.server_cert,
                 hosts[name].credentials.sha1)
    return hosts


def host_name_for(cfg: Config, sni: str | None) -> str:
    """The host an SNI selects ("" for the default), logging a name no section carries."""
    if not sni or not cfg.vhosts:
        return ""
    chosen = cfg.vhost(sni)
    if chosen is cfg:
        log.info("client requested hostname %s does not match a known vhost", sni)
        return ""
    return chosen.vhost_name or ""

