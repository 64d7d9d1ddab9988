"""``make run``: the product from a fresh state folder, for development and first trials.

The folder layout is :mod:`appliance.state`'s.  While setup is not done (no ``setup-done``
marker and no ocserv.conf) it runs the first-boot wizard on ``--wizard-port`` (80) and
prints the setup code and URL; when the wizard's apply has finished it starts the VPN
server with the configuration the wizard wrote and prints how to connect, while the
wizard keeps showing its final page until "Finish" is pressed; then the server stays in
the foreground.  With a configuration present it runs the VPN server at once, as before.
Beside the VPN server runs the reachability service (``reach run --state``), as
ocgate-reach.service does on the device.
``--no-wizard`` instead makes the old throwaway default: a CA, a server certificate, an
ocpasswd user with a random password and an ocserv.conf.
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import subprocess
import sys
from pathlib import Path

from . import pki
from .state import StateLayout
from .vpn.passwd import hash_password

DEFAULT_USER = "vpnuser"

CONFIG_TEMPLATE = """\
# OCGate development default, written by `make run`. ocserv syntax: edit and restart.
auth = "plain[passwd={s.passwd}]"
tcp-port = {port}
udp-port = {port}
server-cert = {s.server_cert}
server-key = {s.server_key}
ca-cert = {s.ca_cert}
socket-file = {s.socket_file}
pid-file = {s.pid_file}
occtl-socket-file = {s.occtl_socket}
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
    s = StateLayout.at(state)
    s.run_dir.mkdir(parents=True, exist_ok=True)
    s.certs_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(state, 0o755)  # workers (nobody) must reach nothing here but the socket dir
    password = None
    if not s.conf.exists() and not s.server_cert.exists():
        ca_key, ca_cert = pki.make_ca("OCGate development CA")
        names = [socket.gethostname()] if "." not in socket.gethostname() else []
        key, cert = pki.make_server_cert(ca_key, ca_cert, names=names or ["ocgate.local"],
                                         addresses=["127.0.0.1"])
        pki.write_key(s.ca_key, ca_key)
        pki.write_cert(s.ca_cert, ca_cert)
        pki.write_key(s.server_key, key)
        pki.write_cert(s.server_cert, cert)
    if not s.conf.exists() and not s.passwd.exists():
        password = secrets.token_urlsafe(12)
        s.passwd.write_text(f"{DEFAULT_USER}:*:{hash_password(password)}\n")
        os.chmod(s.passwd, 0o600)
    if not s.conf.exists():
        dns = str(next(iter(__import__("ipaddress").ip_network(network).hosts())))
        s.conf.write_text(CONFIG_TEMPLATE.format(s=s, port=port, network=network, dns=dns))
    return pki.pin_sha256(pki.load_cert(_server_cert_of(s))), password


def _server_cert_of(s: StateLayout) -> Path:
    """The certificate the configuration names (older state folders kept it elsewhere)."""
    from .vpn.config import ConfigDocument

    named = ConfigDocument.load(str(s.conf)).get("server-cert")
    return Path(named[0]) if named else s.server_cert


def _first_user(s: StateLayout) -> str:
    """The wizard's first VPN user (from its marker), else the throwaway default user."""
    import json

    try:
        marker = json.loads(s.setup_done.read_text())
    except (OSError, ValueError):
        return DEFAULT_USER
    user = marker.get("first_user") if isinstance(marker, dict) else None
    return user if isinstance(user, str) and user else DEFAULT_USER


def vpn_argv(conf: Path) -> list[str]:
    return [sys.executable, "-m", "appliance.vpn", "-f", "-c", str(conf)]


def reach_argv(state: Path) -> list[str]:
    """The reachability service, as ocgate-reach.service runs it on the device: it idles
    until reach.json turns it on and follows that file while it runs."""
    return [sys.executable, "-m", "appliance.reach", "run", "--state", str(state)]


def stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM, newest first (the reachability service removes its router mappings)."""
    for proc in reversed(procs):
        if proc.poll() is None:
            proc.terminate()
    for proc in reversed(procs):
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def serve(s: StateLayout) -> int:
    """The VPN server and the reachability service; ends (and ends both) with the server."""
    procs = [subprocess.Popen(vpn_argv(s.conf)), subprocess.Popen(reach_argv(s.root))]
    try:
        return procs[0].wait()
    except KeyboardInterrupt:
        return 130
    finally:
        stop_all(procs)


def print_connect(pin: str, port: int, user: str, host: str = "<this host>") -> None:
    print("Connect with:")
    suffix = "" if port == 443 else f":{port}"
    print(f"  openconnect --servercert {pin} -u {user} https://{host}{suffix}/")


def run_wizard_first(s: StateLayout, args: argparse.Namespace) -> int:
    """Setup is not done: the wizard, then the VPN server it configured (see module doc)."""
    from .firstboot.context import Final
    from .firstboot.service import WizardOptions, WizardService

    servers: list[subprocess.Popen[bytes]] = []

    def on_applied(final: Final) -> None:
        print(f"\nSetup applied. OCGate VPN server, configuration {s.conf}")
        print_connect(final.plan.certs.pin, args.port, final.plan.user.username,
                      final.plan.network.server_address)
        sys.stdout.flush()
        servers.append(subprocess.Popen(vpn_argv(s.conf)))
        servers.append(subprocess.Popen(reach_argv(s.root)))  # after apply wrote reach.json

    options = WizardOptions(state=s.root, hosts=args.wizard_host or ["0.0.0.0"],
                            port=args.wizard_port, vpn_port=args.port,
                            mdns=not args.no_mdns, policy=args.subnet_policy,
                            handover="none")
    service = WizardService(options, on_applied=on_applied)
    try:
        service.start()
        service.banner()
        service.wait()
        service.stop()
        if not servers:
            return 0
        print("Wizard closed; the VPN server keeps running (Ctrl-C stops it).", flush=True)
        return servers[0].wait()
    except KeyboardInterrupt:
        return 130
    finally:
        service.stop()
        stop_all(servers)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--state", default="state", help="state folder (created if missing)")
    p.add_argument("--port", type=int, default=443)
    p.add_argument("--network", default="203.0.113.0/24",
                   help="VPN pool for a --no-wizard default config")
    p.add_argument("--wizard-port", type=int, default=80, help="port of the setup wizard")
    p.add_argument("--wizard-host", action="append",
                   help="address the wizard listens on (repeatable; default all IPv4)")
    p.add_argument("--no-mdns", action="store_true", help="do not announce ocgate.local")
    p.add_argument("--subnet-policy", choices=["home", "documentation"], default="home",
                   help="the wizard's VPN subnet candidates ('documentation' for demos)")
    p.add_argument("--no-wizard", action="store_true",
                   help="skip the wizard: make a throwaway default configuration")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        print("make run needs root (TUN devices, port 443)", file=sys.stderr)
        return 1
    state = Path(args.state).resolve()
    s = StateLayout.at(state)
    state.mkdir(parents=True, exist_ok=True)
    from .firstboot.apply import recover

    recover(s)  # finish or undo a wizard apply that a crash interrupted
    if not s.is_setup_done() and not s.conf.exists() and not args.no_wizard:
        return run_wizard_first(s, args)
    pin, password = ensure_state(state, args.port, args.network)
    conf = s.conf
    print(f"OCGate VPN server, configuration {conf}")
    print_connect(pin, args.port, _first_user(s))
    if password:
        print(f"  user {DEFAULT_USER}, password {password}  (shown once; change it with "
              f"python3 -m appliance.vpn.ocpasswd -c {state}/ocpasswd {DEFAULT_USER})")
    sys.stdout.flush()
    return serve(s)


if __name__ == "__main__":
    sys.exit(main())
