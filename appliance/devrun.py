"""``make run``: the product on an embedded default, for development and first trials.

With no configuration in the state folder it makes a throwaway CA, a server certificate, an
ocpasswd user with a random password and an ocserv.conf, then runs the VPN server in the
foreground and prints how to connect with openconnect. The first-boot wizard replaces this
on a real device.
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import sys
from pathlib import Path

from . import pki
from .vpn.passwd import hash_password

DEFAULT_USER = "vpnuser"

CONFIG_TEMPLATE = """\
# OCGate development default, written by `make run`. ocserv syntax: edit and restart.
auth = "plain[passwd={state}/ocpasswd]"
tcp-port = {port}
udp-port = {port}
server-cert = {state}/server-cert.pem
server-key = {state}/server-key.pem
ca-cert = {state}/ca-cert.pem
socket-file = {state}/run/ocgate-socket
pid-file = {state}/run/ocgate.pid
occtl-socket-file = {state}/run/occtl.socket
use-occtl = true
run-as-user = nobody
run-as-group = nogroup
device = vpns
max-clients = 16
max-same-clients = 2
keepalive = 32400
dpd = 90
mobile-dpd = 1800
cookie-timeout = 300
ipv4-network = {network}
dns = {dns}
route = default
banner = "Welcome to OCGate (development default)"
predictable-ips = true
"""


def ensure_state(state: Path, port: int, network: str) -> tuple[str, str | None]:
    """Create whatever is missing; returns (pin, password if it was just created)."""
    (state / "run").mkdir(parents=True, exist_ok=True)
    os.chmod(state, 0o755)  # workers (nobody) must reach nothing here but the socket dir
    password = None
    if not (state / "server-cert.pem").exists():
        ca_key, ca_cert = pki.make_ca("OCGate development CA")
        names = [socket.gethostname()] if "." not in socket.gethostname() else []
        key, cert = pki.make_server_cert(ca_key, ca_cert, names=names or ["ocgate.local"],
                                         addresses=["127.0.0.1"])
        pki.write_key(state / "ca-key.pem", ca_key)
        pki.write_cert(state / "ca-cert.pem", ca_cert)
        pki.write_key(state / "server-key.pem", key)
        pki.write_cert(state / "server-cert.pem", cert)
    if not (state / "ocpasswd").exists():
        password = secrets.token_urlsafe(12)
        path = state / "ocpasswd"
        path.write_text(f"{DEFAULT_USER}:*:{hash_password(password)}\n")
        os.chmod(path, 0o600)
    if not (state / "ocserv.conf").exists():
        dns = str(next(iter(__import__("ipaddress").ip_network(network).hosts())))
        (state / "ocserv.conf").write_text(
            CONFIG_TEMPLATE.format(state=state, port=port, network=network, dns=dns))
    return pki.pin_sha256(pki.load_cert(state / "server-cert.pem")), password


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--state", default="state", help="state folder (created if missing)")
    p.add_argument("--port", type=int, default=443)
    p.add_argument("--network", default="203.0.113.0/24", help="VPN pool for a new config")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        print("make run needs root (TUN devices, port 443)", file=sys.stderr)
        return 1
    state = Path(args.state).resolve()
    pin, password = ensure_state(state, args.port, args.network)
    conf = state / "ocserv.conf"
    print(f"OCGate VPN server, configuration {conf}")
    print("Connect with:")
    print(f"  openconnect --servercert {pin} -u {DEFAULT_USER} https://<this host>:{args.port}/")
    if password:
        print(f"  user {DEFAULT_USER}, password {password}  (shown once; change it with "
              f"python3 -m appliance.vpn.ocpasswd -c {state}/ocpasswd {DEFAULT_USER})")
    sys.stdout.flush()
    os.execvp(sys.executable, [sys.executable, "-m", "appliance.vpn", "-f", "-c", str(conf)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
