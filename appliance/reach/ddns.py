"""Dynamic DNS: publish the public address under the VPN's name when it changes.

Three ways, one interface (``update(name, ipv4, ipv6)``):
- RFC 2136 UPDATE signed with TSIG (dnspython), for people with their own zone;
- dyndns2, the HTTP protocol of No-IP, Dynu and many others
  (``GET /nic/update?hostname=..&myip=..`` with HTTP Basic auth, answer ``good``/``nochg``);
- DuckDNS (``GET /update?domains=..&token=..&ip=..``, answer ``OK``/``KO``).
Request building and answer parsing are pure functions (unit-tested); the HTTP call is a thin
shell.  Tokens and passwords travel in URLs and headers that are never logged.
"""

from __future__ import annotations

import base64
import logging
import urllib.parse
import urllib.request
from dataclasses import dataclass

log = logging.getLogger(__name__)
USER_AGENT = "OCGate/0.1 ddns"
HTTP_TIMEOUT = 15.0


class DdnsError(Exception):
    """The update was refused; ``permanent`` when retrying cannot help (bad credentials,
    unknown host, abuse lock): the job then waits for a settings change instead."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


@dataclass(frozen=True)
class HttpRequest:
    url: str
    headers: dict[str, str]


# ------------------------------------------------------------------ RFC 2136 + TSIG
@dataclass(frozen=True)
class Rfc2136:
    server: str
    zone: str
    key_name: str
    key_secret: str  # base64, as tsig-keygen prints it
    algorithm: str = "hmac-sha256"
    port: int = 53
    ttl: int = 60

    def update(self, name: str, ipv4: str | None, ipv6: str | None) -> str:
        import dns.message
        import dns.query
        import dns.rcode
        import dns.tsigkeyring
        import dns.update

        keyring = dns.tsigkeyring.from_text({self.key_name: self.key_secret})
        upd = dns.update.UpdateMessage(self.zone, keyring=keyring, keyalgorithm=self.algorithm)
        for rdtype, value in (("A", ipv4), ("AAAA", ipv6)):
            if value is None:
                continue
            upd.delete(name + ".", rdtype)
            if value:
                upd.add(name + ".", self.ttl, rdtype, value)
        try:
            reply = dns.query.tcp(upd, self.server, port=self.port, timeout=HTTP_TIMEOUT)
        except Exception as exc:  # dnspython raises many types (timeouts, bad TSIG on reply)
            raise DdnsError(f"RFC 2136 update to {self.server}: {exc}") from exc
        rcode = reply.rcode()
        if rcode != dns.rcode.NOERROR:
            text = dns.rcode.to_text(rcode)
            raise DdnsError(f"RFC 2136 update of {name} refused: {text}",
                            permanent=text in ("NOTAUTH", "REFUSED", "NOTZONE"))
        return "updated"


# ------------------------------------------------------------------ dyndns2
DYNDNS2_PERMANENT = {"badauth", "notfqdn", "nohost", "numhost", "abuse", "badagent",
                     "!donator", "badsys"}


def dyndns2_request(base_url: str, username: str, password: str, hostname: str,
                    ipv4: str | None, ipv6: str | None) -> HttpRequest:
    ips = [ip for ip in (ipv4, ipv6) if ip]
    query = {"hostname": hostname}
    if ips:
        query["myip"] = ",".join(ips)
    url = base_url.rstrip("/") + "/nic/update?" + urllib.parse.urlencode(query)
    auth = base64.b64encode(f"{username}:{password}".encode()).decode()
    return HttpRequest(url, {"Authorization": f"Basic {auth}", "User-Agent": USER_AGENT})


def dyndns2_parse(body: str) -> str:
    """``good``/``nochg`` (one line per host) -> that word; anything else raises."""
    lines = [line.strip() for line in body.strip().splitlines() if line.strip()]
    if not lines:
        raise DdnsError("dyndns2: empty answer")
    for line in lines:
        code = line.split()[0]
        if code not in ("good", "nochg"):
            raise DdnsError(f"dyndns2: {code}", permanent=code in DYNDNS2_PERMANENT)
    return lines[0].split()[0]


# ------------------------------------------------------------------ DuckDNS
def duckdns_request(base_url: str, token: str, domain: str, ipv4: str | None,
                    ipv6: str | None) -> HttpRequest:
    sub = domain.removesuffix(".duckdns.org")
    query = {"domains": sub, "token": token, "ip": ipv4 or ""}
    if ipv6:
        query["ipv6"] = ipv6
    return HttpRequest(base_url.rstrip("/") + "/update?" + urllib.parse.urlencode(query),
                       {"User-Agent": USER_AGENT})


def duckdns_parse(body: str) -> str:
    word = body.strip().splitlines()[0].strip() if body.strip() else ""
    if word != "OK":
        raise DdnsError(f"DuckDNS answered {word or 'nothing'!r} (wrong token or domain?)",
                        permanent=word == "KO")
    return "OK"


def http_get(request: HttpRequest) -> str:
    req = urllib.request.Request(request.url, headers=request.headers)
    try:
        with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT) as resp:  # noqa: S310
            return resp.read(4096).decode("utf-8", "replace")
    except OSError as exc:  # the URL holds the token: name only the host
        host = urllib.parse.urlsplit(request.url).netloc
        raise DdnsError(f"HTTP update to {host}: {getattr(exc, 'reason', exc)}") from None


@dataclass(frozen=True)
class Dyndns2:
    base_url: str
    username: str
    password: str

    def update(self, name: str, ipv4: str | None, ipv6: str | None) -> str:
        return dyndns2_parse(http_get(dyndns2_request(self.base_url, self.username,
                                                      self.password, name, ipv4, ipv6)))


@dataclass(frozen=True)
class DuckDns:
    token: str
    base_url: str = "https://www.duckdns.org"

    def update(self, name: str, ipv4: str | None, ipv6: str | None) -> str:
        return duckdns_parse(http_get(duckdns_request(self.base_url, self.token, name, ipv4,
                                                      ipv6)))


class Publisher:
    """Calls the updater when the address differs from the last one published."""

    def __init__(self, updater: Rfc2136 | Dyndns2 | DuckDns, name: str) -> None:
        self.updater = updater
        self.name = name
        self.published: tuple[str | None, str | None] | None = None

    def publish(self, ipv4: str | None, ipv6: str | None = None) -> bool:
        if (ipv4, ipv6) == self.published or not (ipv4 or ipv6):
            return False
        result = self.updater.update(self.name, ipv4, ipv6)
        log.info("reach ddns via=%s name=%s a=%s aaaa=%s result=%s",
                 type(self.updater).__name__.lower(), self.name, ipv4 or "-", ipv6 or "-",
                 result)
        self.published = (ipv4, ipv6)
        return True
