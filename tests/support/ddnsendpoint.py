"""A local stand-in for the HTTP dynamic-DNS services, speaking their documented formats.

The real services (No-IP, Dynu, DuckDNS) are out of reach of the tests, so these are
*format tests*: the endpoint checks what the documentation says a client must send and
answers the documented words, nothing more.

- dyndns2 (the DynDNS "Remote Access API", as No-IP and Dynu document it):
  ``GET /nic/update?hostname=H[,H2]&myip=IP[,IPv6]`` with HTTP Basic auth and a
  User-Agent naming the client.  Answers, one line per host: ``good IP`` (changed),
  ``nochg IP`` (already so), ``badauth``, ``nohost`` (not this account's), ``notfqdn``,
  ``badagent`` (no User-Agent), ``abuse`` (account locked), ``911`` (server trouble:
  retry later); HTTP 200 in every case, as the documentation says.
- DuckDNS (duckdns.org/spec.jsp): ``GET /update?domains=D[,D2]&token=T[&ip=IPv4][&ipv6=IPv6]
  [&clear=true][&verbose=true]``; ``OK`` or ``KO``; an empty ``ip`` means "the address the
  request came from".

Run in a namespace: ``python3 -m tests.support.ddnsendpoint ADDRESS PORT STATE.json``
(reads the accounts from STATE.json, rewrites it with each record and request).
"""

from __future__ import annotations

import base64
import http.server
import ipaddress
import json
import socketserver
import sys
import threading
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Accounts:
    """What the service knows: dyndns2 users and their hosts, DuckDNS tokens and domains."""
    dyndns2: dict[str, tuple[str, set[str]]] = field(default_factory=dict)  # user -> (pw, hosts)
    duckdns: dict[str, set[str]] = field(default_factory=dict)  # token -> subdomains
    locked: set[str] = field(default_factory=set)  # dyndns2 users answered "abuse"
    trouble: bool = False  # answer 911
    records: dict[str, dict[str, str]] = field(default_factory=dict)  # host -> {A, AAAA}
    requests: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"dyndns2": {u: [p, sorted(h)] for u, (p, h) in self.dyndns2.items()},
                "duckdns": {t: sorted(d) for t, d in self.duckdns.items()},
                "locked": sorted(self.locked), "trouble": self.trouble,
                "records": self.records, "requests": self.requests}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Accounts:
        return cls({u: (p, set(h)) for u, (p, h) in data.get("dyndns2", {}).items()},
                   {t: set(d) for t, d in data.get("duckdns", {}).items()},
                   set(data.get("locked", ())), bool(data.get("trouble")),
                   data.get("records", {}), data.get("requests", []))


def _kind(ip: str) -> str | None:
    try:
        return "A" if ipaddress.ip_address(ip).version == 4 else "AAAA"
    except ValueError:
        return None


def dyndns2_answer(acc: Accounts, query: dict[str, list[str]], auth: str | None,
                   agent: str | None, peer: str) -> str:
    if not agent:
        return "badagent"
    if not auth or not auth.startswith("Basic "):
        return "badauth"
    try:
        user, _, password = base64.b64decode(auth[6:], validate=True).decode().partition(":")
    except ValueError:
        return "badauth"
    if user not in acc.dyndns2 or acc.dyndns2[user][0] != password:
        return "badauth"
    if user in acc.locked:
        return "abuse"
    if acc.trouble:
        return "911"
    hosts = [h for h in ",".join(query.get("hostname", [])).split(",") if h]
    ips = [ip for ip in ",".join(query.get("myip", [peer])).split(",") if ip]
    if not hosts:
        return "notfqdn"
    if any(_kind(ip) is None for ip in ips):
        return "911"  # the documentation gives no word for a malformed address
    lines = []
    for host in hosts:
        if "." not in host:
            lines.append("notfqdn")
            continue
        if host not in acc.dyndns2[user][1]:
            lines.append("nohost")
            continue
        rec = acc.records.setdefault(host, {})
        new = {str(_kind(ip)): ip for ip in ips}
        word = "nochg" if all(rec.get(k) == v for k, v in new.items()) else "good"
        rec.update(new)
        lines.append(f"{word} {','.join(ips)}")
    return "\n".join(lines)


def duckdns_answer(acc: Accounts, query: dict[str, list[str]], peer: str) -> str:
    token = query.get("token", [""])[0]
    domains = [d.removesuffix(".duckdns.org") for d in
               ",".join(query.get("domains", [])).split(",") if d]
    if token not in acc.duckdns or not domains or \
            any(d not in acc.duckdns[token] for d in domains):
        return "KO"
    ipv4 = query.get("ip", [""])[0] or peer
    ipv6 = query.get("ipv6", [""])[0]
    if _kind(ipv4) != "A" or (ipv6 and _kind(ipv6) != "AAAA"):
        return "KO"
    for d in domains:
        rec = acc.records.setdefault(f"{d}.duckdns.org", {})
        if query.get("clear", [""])[0] == "true":
            rec.clear()
            continue
        rec["A"] = ipv4
        if ipv6:
            rec["AAAA"] = ipv6
    if query.get("verbose", [""])[0] == "true":
        return f"OK\n{ipv4}\n{ipv6}\nUPDATED"
    return "OK"


class Endpoint(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True

    def __init__(self, address: str, accounts: Accounts, state: Path | None = None,
                 port: int = 0) -> None:
        self.accounts = accounts
        self.state = state  # where a namespace process leaves what it saw
        self.lock = threading.Lock()
        super().__init__((address, port), _Handler)

    def server_bind(self) -> None:  # no reverse lookup of our own name
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), \
            int(self.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.server_address[0]}:{self.server_address[1]}"

    def start(self) -> Endpoint:
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def close(self) -> None:
        self.shutdown()
        self.server_close()


class _Handler(http.server.BaseHTTPRequestHandler):
    server: Endpoint

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        peer = self.client_address[0]
        with self.server.lock:
            acc = self.server.accounts
            acc.requests.append({"path": url.path, "query": query,
                                 "authorization": self.headers.get("Authorization"),
                                 "user_agent": self.headers.get("User-Agent")})
            if url.path == "/nic/update":
                body = dyndns2_answer(acc, query, self.headers.get("Authorization"),
                                      self.headers.get("User-Agent"), peer)
            elif url.path == "/update":
                body = duckdns_answer(acc, query, peer)
            else:
                self.send_error(404)
                return
            if self.server.state is not None:
                self.server.state.write_text(json.dumps(acc.to_json()))
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


def main(argv: list[str]) -> int:
    address, port, state = argv[0], int(argv[1]), Path(argv[2])
    Endpoint(address, Accounts.from_json(json.loads(state.read_text())), state,
             port).serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
