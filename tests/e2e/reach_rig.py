"""A home network behind a router, seen from an "Internet", built from real Debian daemons.

    inet ns                         router ns                          lan ns
    lo: 198.18.100.53 bind9         wan 198.18.0.2/24 <-> 198.18.0.1  (inet side)
        198.18.100.14 pebble        lan 198.19.1.1/24 <-> 198.19.1.10  the appliance
        198.18.100.3/.4 coturn      nftables NAT + miniupnpd (UPnP IGD, NAT-PMP, PCP)
                                    (CGNAT: an "isp" ns masquerades 100.64.0.0/10 between)

miniupnpd refuses to forward when its WAN address is in a reserved range, and 198.18.0.0/15
is one: it learns its public address by STUN (RFC 5780, coturn on two addresses) instead.
NAT-PMP and PCP share UDP 5351 and one switch; to offer only one of them the router drops the
other by its version byte.  Every process is started here and ends with its namespace.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from appliance import pki
from tests.prereqs import require_command
from tests.support.harness import write_passwd
from tests.support.netns import Netns

BIND_IP = "198.18.100.53"
PEBBLE_IP = "198.18.100.14"
STUN_IPS = ("198.18.100.3", "198.18.100.4")
DDNS_IP = "198.18.100.80"  # the dyndns2/DuckDNS stand-in (tests/support/ddnsendpoint.py)
DDNS_PORT = 8245
INET_WAN = "198.18.0.1"
ROUTER_WAN = "198.18.0.2"
ROUTER_WAN2 = "198.18.0.3"  # the address after "the provider changed it"
ROUTER_LAN = "198.19.1.1"
APPLIANCE = "198.19.1.10"
# IPv6 (Home(ipv6=True)): documentation prefix, routed, no NAT; the router's firewall
# lets in only what miniupnpd opens (PCP pinholes)
INET6 = "2001:db8:100::1"
ROUTER_WAN6 = "2001:db8:100::2"
ROUTER_LAN6 = "2001:db8:101::1"
APPLIANCE6 = "2001:db8:101::10"
ISP_LAN = "100.64.0.1"
ROUTER_CGNAT = "100.64.0.2"
ZONE = "home.test"
NAME = "vpn.home.test"
TSIG_NAME = "ocgate-ddns"
TABLE = "ocgr"

REPO = Path(__file__).resolve().parents[2]


def require_tools() -> dict[str, str]:
    return {
        "named": require_command("named", "bind9"),
        "tsig-keygen": require_command("tsig-keygen", "bind9"),
        "dig": require_command("dig", "bind9-dnsutils"),
        "pebble": require_command("pebble", "pebble"),
        "miniupnpd": require_command("miniupnpd", "miniupnpd-nftables"),
        "turnserver": require_command("turnserver", "coturn"),
        "nft": require_command("nft", "nftables"),
    }


def _wait(what: str, check, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.1)
    raise TimeoutError(f"{what} not ready after {timeout:.0f} s")


@dataclass
class Home:
    work: Path
    protocols: tuple[str, ...] = ("upnp", "nat-pmp", "pcp")
    cgnat: bool = False
    ipv6: bool = False
    inet: Netns = field(init=False)
    router: Netns = field(init=False)
    lan: Netns = field(init=False)
    isp: Netns | None = field(init=False, default=None)
    procs: dict[str, subprocess.Popen[bytes]] = field(init=False, default_factory=dict)
    tsig_secret: str = field(init=False, default="")
    wan: str = field(init=False, default=ROUTER_WAN)

    # ------------------------------------------------------------ topology
    def __enter__(self) -> Home:
        self.tools = require_tools()
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _veth(self, a: Netns, a_if: str, b: Netns, b_if: str) -> None:
        a.ip("link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", b.name)
        a.ip("link", "set", a_if, "up")
        b.ip("link", "set", b_if, "up")

    def _build(self) -> None:
        self.inet = Netns.create("inet")
        self.router = Netns.create("router")
        self.lan = Netns.create("lan", private_resolv_conf=True)
        for ip in (BIND_IP, PEBBLE_IP, DDNS_IP, *STUN_IPS):
            self.inet.ip("addr", "add", f"{ip}/32", "dev", "lo")
        if self.cgnat:  # inet <-> isp (public side) <-> router (100.64/10 side)
            self.isp = Netns.create("isp")
            self._veth(self.inet, "up0", self.isp, "isp0")
            self.inet.ip("addr", "add", f"{INET_WAN}/24", "dev", "up0")
            self.isp.ip("addr", "add", f"{ROUTER_WAN}/24", "dev", "isp0")
            self.isp.ip("route", "add", "default", "via", INET_WAN)
            self._veth(self.isp, "isp1", self.router, "wan")
            self.isp.ip("addr", "add", f"{ISP_LAN}/24", "dev", "isp1")
            self.router.ip("addr", "add", f"{ROUTER_CGNAT}/24", "dev", "wan")
            self.router.ip("route", "add", "default", "via", ISP_LAN)
            self.isp.run(["sysctl", "-qw", "net.ipv4.ip_forward=1"])
            self.isp.run(["nft", "-f", "-"], input=(
                "table ip cgn {\n chain post {\n  type nat hook postrouting priority srcnat;\n"
                '  oifname "isp0" masquerade\n }\n}\n'))
        else:
            self._veth(self.inet, "up0", self.router, "wan")
            self.inet.ip("addr", "add", f"{INET_WAN}/24", "dev", "up0")
            self.router.ip("addr", "add", f"{ROUTER_WAN}/24", "dev", "wan")
            self.router.ip("route", "add", "default", "via", INET_WAN)
        self._veth(self.router, "lan", self.lan, "eth0")
        self.router.ip("addr", "add", f"{ROUTER_LAN}/24", "dev", "lan")
        self.lan.ip("addr", "add", f"{APPLIANCE}/24", "dev", "eth0")
        self.lan.ip("route", "add", "default", "via", ROUTER_LAN)
        self.router.run(["sysctl", "-qw", "net.ipv4.ip_forward=1"])
        if self.ipv6:
            self._ipv6()
        self._router_rules()
        self._start_bind()
        self._start_coturn()
        if self.protocols:  # a router with all of them off runs no miniupnpd at all
            self.start_miniupnpd()

    def _ipv6(self) -> None:
        for ns, steps in (
                (self.inet, [("addr", "add", f"{INET6}/64", "dev", "up0", "nodad"),
                             ("route", "add", "2001:db8:101::/64", "via", ROUTER_WAN6)]),
                (self.router, [("addr", "add", f"{ROUTER_WAN6}/64", "dev", "wan", "nodad"),
                               ("addr", "add", f"{ROUTER_LAN6}/64", "dev", "lan", "nodad"),
                               ("route", "add", "default", "via", INET6)]),
                (self.lan, [("addr", "add", f"{APPLIANCE6}/64", "dev", "eth0", "nodad"),
                            ("route", "add", "default", "via", ROUTER_LAN6)])):
            for step in steps:
                ns.ip(*step)
        self.router.run(["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"])

    def _router_rules(self) -> None:
        drop = []
        if "nat-pmp" not in self.protocols:
            drop.append('add rule inet ocgr input iifname "lan" udp dport 5351 @th,64,8 0 drop')
        if "pcp" not in self.protocols:
            drop.append('add rule inet ocgr input iifname "lan" udp dport 5351 @th,64,8 2 drop')
        stun = ", ".join(STUN_IPS)
        rules = f"""
add table inet {TABLE}
add chain inet {TABLE} miniupnpd
add chain inet {TABLE} prerouting_miniupnpd
add chain inet {TABLE} postrouting_miniupnpd
add chain inet {TABLE} prerouting {{ type nat hook prerouting priority dstnat; policy accept; }}
add chain inet {TABLE} postrouting {{ type nat hook postrouting priority srcnat; policy accept; }}
add chain inet {TABLE} forward {{ type filter hook forward priority filter; policy drop; }}
add chain inet {TABLE} input {{ type filter hook input priority filter; policy drop; }}
add rule inet {TABLE} prerouting iifname "wan" jump prerouting_miniupnpd
add rule inet {TABLE} postrouting jump postrouting_miniupnpd
add rule inet {TABLE} postrouting oifname "wan" masquerade
add rule inet {TABLE} forward ct state established,related accept
add rule inet {TABLE} forward iifname "lan" oifname "wan" accept
add rule inet {TABLE} forward iifname "wan" jump miniupnpd
add rule inet {TABLE} input iifname "lo" accept
add rule inet {TABLE} input meta l4proto ipv6-icmp accept
add rule inet {TABLE} input ct state established,related accept
add rule inet {TABLE} input ip saddr {{ {stun} }} udp sport {{ 3478, 3479 }} accept
{chr(10).join(drop)}
add rule inet {TABLE} input iifname "lan" accept
"""
        self.router.run(["nft", "-f", "-"], input=rules)

    # ------------------------------------------------------------ daemons
    def _spawn(self, name: str, ns: Netns, argv: list[str], **kw: object) -> None:
        log = open(self.work / f"{name}.log", "ab")  # noqa: SIM115 (lives with the process)
        self.procs[name] = ns.popen(argv, stdout=log, stderr=subprocess.STDOUT, **kw)

    def _start_bind(self) -> None:
        d = self.work / "bind"
        d.mkdir()
        key = subprocess.run([self.tools["tsig-keygen"], "-a", "hmac-sha256", TSIG_NAME],
                             check=True, capture_output=True, text=True).stdout
        self.tsig_secret = key.split('secret "')[1].split('"')[0]
        (d / f"{ZONE}.zone").write_text(
            f"$TTL 60\n@ IN SOA ns.{ZONE}. admin.{ZONE}. 1 60 60 600 60\n"
            f"@ IN NS ns.{ZONE}.\nns IN A {BIND_IP}\n")
        (d / "named.conf").write_text(f"""
options {{ directory "{d}"; listen-on {{ {BIND_IP}; }}; listen-on-v6 {{ none; }};
  recursion no; allow-query {{ any; }}; pid-file "{d}/named.pid";
  session-keyfile "{d}/session.key"; dnssec-validation no; }};
controls {{ }};
{key}
zone "{ZONE}" {{ type primary; file "{d}/{ZONE}.zone";
  update-policy {{ grant {TSIG_NAME} name {NAME}. A AAAA TXT; }}; }};
""")
        self._spawn("named", self.inet, [self.tools["named"], "-g", "-c", str(d / "named.conf")])
        _wait("bind9", lambda: "NOERROR" in self.dig("ns." + ZONE, full=True))

    def dig(self, name: str, rdtype: str = "A", *, full: bool = False) -> str:
        out = self.inet.run(["dig", "+time=1", "+tries=1", f"@{BIND_IP}", name, rdtype]
                            + ([] if full else ["+short"]), check=False).stdout
        return out.strip()

    def _start_coturn(self) -> None:
        argv = [self.tools["turnserver"], "-n", "--stun-only", "--no-cli", "--log-file",
                "stdout", "--simple-log", "--no-tls", "--no-dtls", "--listening-port", "3478",
                "--alt-listening-port", "3479", "--pidfile", str(self.work / "coturn.pid")]
        for ip in STUN_IPS:
            argv += ["--listening-ip", ip]
        self._spawn("coturn", self.inet, argv)
        _wait("coturn", lambda: "3478" in self.inet.run(["ss", "-Hlun"]).stdout)

    def start_miniupnpd(self) -> None:
        """(Re)start miniupnpd with an empty table, as after a router reboot."""
        d = self.work / "miniupnpd"
        d.mkdir(exist_ok=True)
        (d / "leases").unlink(missing_ok=True)
        self.router.run(["nft", "flush", "chain", "inet", TABLE, "miniupnpd"])
        self.router.run(["nft", "flush", "chain", "inet", TABLE, "prerouting_miniupnpd"])
        self.router.run(["nft", "flush", "chain", "inet", TABLE, "postrouting_miniupnpd"])
        stun = "" if self.cgnat else (f"ext_perform_stun=yes\next_stun_host={STUN_IPS[0]}\n"
                                      "ext_stun_port=3478\n")
        upnp = "yes" if "upnp" in self.protocols else "no"
        pmp = "yes" if {"nat-pmp", "pcp"} & set(self.protocols) else "no"
        (d / "miniupnpd.conf").write_text(f"""ext_ifname=wan
listening_ip=lan
http_port=5000
enable_upnp={upnp}
enable_natpmp={pmp}
{stun}secure_mode=no
system_uptime=no
lease_file={d}/leases
upnp_table_name={TABLE}
upnp_nat_table_name={TABLE}
upnp_forward_chain=miniupnpd
upnp_nat_chain=prerouting_miniupnpd
upnp_nat_postrouting_chain=postrouting_miniupnpd
min_lifetime=5
max_lifetime=86400
uuid=3d3cec3a-8cf0-11e0-98ee-001a6bd2d07b
allow 1-65535 198.19.1.0/24 1-65535
deny 0-65535 0.0.0.0/0 0-65535
""")
        self._spawn("miniupnpd", self.router, [self.tools["miniupnpd"], "-d", "-f",
                                               str(d / "miniupnpd.conf"),
                                               "-P", str(d / "miniupnpd.pid")])
        if pmp == "yes":
            _wait("miniupnpd", lambda: ":5351 " in self.router.run(["ss", "-Hlun"]).stdout)
        if upnp == "yes":
            _wait("miniupnpd", lambda: ":5000 " in self.router.run(["ss", "-Hltn"]).stdout)

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def restart_miniupnpd(self) -> None:
        self.stop("miniupnpd")
        self.start_miniupnpd()

    def change_wan(self) -> None:
        """The provider hands the router another address: the old one is gone."""
        self.router.ip("addr", "del", f"{ROUTER_WAN}/24", "dev", "wan")
        self.router.ip("addr", "add", f"{ROUTER_WAN2}/24", "dev", "wan")
        self.router.ip("route", "replace", "default", "via", INET_WAN)
        self.wan = ROUTER_WAN2
        self.router.run(["conntrack", "-F"], check=False)
        self.restart_miniupnpd()  # a router re-reads its WAN address on reconnect

    def log(self, name: str) -> str:
        path = self.work / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def close(self) -> None:
        for name in list(self.procs):
            self.stop(name)
        for ns in (getattr(self, "lan", None), getattr(self, "router", None), self.isp,
                   getattr(self, "inet", None)):
            if ns is not None:
                ns.delete()

    # ------------------------------------------------------------ the appliance side
    def reach(self, *args: str, timeout: float = 60.0) -> dict[str, object]:
        env = dict(os.environ, PYTHONPATH=str(REPO))
        out = self.lan.run(["python3", "-m", "appliance.reach", *args], timeout=timeout,
                           env=env, cwd=str(REPO))
        (self.work / "reach.log").open("a").write(out.stderr)
        return json.loads(out.stdout)

    def reach_service(self, *args: str) -> subprocess.Popen[bytes]:
        env = dict(os.environ, PYTHONPATH=str(REPO))
        self._spawn("reach", self.lan, ["python3", "-m", "appliance.reach", "run", *args],
                    env=env, cwd=str(REPO))
        return self.procs["reach"]

    def router_rules(self) -> str:
        return self.router.run(["nft", "list", "chain", "inet", TABLE,
                                "prerouting_miniupnpd"]).stdout

    def start_ddns_endpoint(self, accounts: dict[str, object]) -> Path:
        """The HTTP DDNS stand-in on the "Internet"; returns the JSON file it records in."""
        state = self.work / "ddns-endpoint.json"
        state.write_text(json.dumps(accounts))
        env = dict(os.environ, PYTHONPATH=str(REPO))
        self._spawn("ddns-endpoint", self.inet, ["python3", "-m", "tests.support.ddnsendpoint",
                                                 DDNS_IP, str(DDNS_PORT), str(state)],
                    env=env, cwd=str(REPO))
        _wait("DDNS endpoint", lambda: f":{DDNS_PORT} " in self.inet.run(["ss", "-Hltn"]).stdout)
        return state

    # ------------------------------------------------------------ the VPN server
    def start_vpn(self, users: dict[str, str]) -> Path:
        """OCGate on the appliance's TCP and UDP 443, with a self-signed (appliance CA)
        certificate to begin with; returns its folder (server-cert.pem, server-key.pem)."""
        d = self.work / "vpn"
        if not d.exists():
            d.mkdir(mode=0o755)
            ca_key, ca = pki.make_ca("OCGate reach test CA", days=2)
            key, cert = pki.make_server_cert(ca_key, ca, names=[NAME], addresses=[APPLIANCE],
                                             days=2)
            pki.write_key(d / "server-key.pem", key)
            pki.write_cert(d / "server-cert.pem", cert)
            # where the device keeps its own CA (StateLayout): the reach service tells a
            # certificate of its own from a public one by it
            pki.write_cert(d / "certs" / "ca-cert.pem", ca)
            write_passwd(d / "ocpasswd", users)
            (d / "ocserv.conf").write_text("\n".join([
                f'auth = "plain[passwd={d / "ocpasswd"}]"', "tcp-port = 443", "udp-port = 443",
                "run-as-user = nobody", "run-as-group = nogroup",
                f"socket-file = {d / 'ocserv.sock'}", f"pid-file = {d / 'ocserv.pid'}",
                f"server-cert = {d / 'server-cert.pem'}", f"server-key = {d / 'server-key.pem'}",
                "device = ocgr", "ipv4-network = 203.0.113.0", "ipv4-netmask = 255.255.255.0",
                "max-ban-score = 0", "rate-limit-ms = 0", "use-occtl = true",
                f"occtl-socket-file = {d / 'occtl.sock'}",
                "cookie-timeout = 300", ""]))
        env = dict(os.environ, PYTHONPATH=str(REPO))
        self._spawn("vpn", self.lan, ["python3", "-m", "appliance.vpn", "-f", "-c",
                                      str(d / "ocserv.conf")], env=env, cwd=str(REPO))
        _wait("VPN server", lambda: self.lan.tcp_listening(443), 20)
        return d

    # ------------------------------------------------------------ pebble
    def start_pebble(self, validity: int = 0) -> Path:
        """pebble with an API certificate of our own; returns the CA file to trust for it.
        ``validity``: the seconds its certificates live (pebble's default otherwise)."""
        d = self.work / "pebble"
        d.mkdir()
        ca_key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pebble API test CA")])
        ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
              .public_key(ca_key.public_key()).serial_number(1)
              .not_valid_before(now - datetime.timedelta(hours=1))
              .not_valid_after(now + datetime.timedelta(days=2))
              .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
              .sign(ca_key, hashes.SHA256()))
        key = ec.generate_private_key(ec.SECP256R1())
        leaf = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pebble")]))
                .issuer_name(ca_name).public_key(key.public_key()).serial_number(2)
                .not_valid_before(now - datetime.timedelta(hours=1))
                .not_valid_after(now + datetime.timedelta(days=2))
                .add_extension(x509.SubjectAlternativeName(
                    [x509.IPAddress(ipaddress.IPv4Address(PEBBLE_IP))]), critical=False)
                .sign(ca_key, hashes.SHA256()))
        pem = serialization.Encoding.PEM
        (d / "ca.pem").write_bytes(ca.public_bytes(pem))
        (d / "cert.pem").write_bytes(leaf.public_bytes(pem))
        (d / "key.pem").write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                      serialization.NoEncryption()))
        (d / "config.json").write_text(json.dumps({"pebble": {
            "listenAddress": f"{PEBBLE_IP}:14000",
            "managementListenAddress": f"{PEBBLE_IP}:15000",
            "certificate": str(d / "cert.pem"), "privateKey": str(d / "key.pem"),
            "httpPort": 80, "tlsPort": 443, "ocspResponderURL": "",
            "externalAccountBindingRequired": False,
            **({"certificateValidityPeriod": validity} if validity else {})}}))
        env = dict(os.environ, PEBBLE_VA_NOSLEEP="1", PEBBLE_WFE_NONCEREJECT="0",
                   PEBBLE_AUTHZREUSE="0")
        self._spawn("pebble", self.inet, [self.tools["pebble"], "-config",
                                          str(d / "config.json"), "-dnsserver",
                                          f"{BIND_IP}:53"], env=env)
        _wait("pebble", lambda: "14000" in self.inet.run(["ss", "-Hltn"]).stdout)
        return d / "ca.pem"

    def pebble_root(self) -> str:
        """The root pebble signs with (new at every start), from its management port."""
        out = self.inet.run(["python3", "-c", (
            "import ssl,urllib.request;c=ssl.create_default_context(cafile='"
            f"{self.work / 'pebble' / 'ca.pem'}');print(urllib.request.urlopen("
            f"'https://{PEBBLE_IP}:15000/roots/0',context=c).read().decode())")])
        return out.stdout

    def pebble_dir(self) -> str:
        return f"https://{PEBBLE_IP}:14000/dir"

    # ------------------------------------------------------------ a client on the Internet
    def tunnel(self, name: str, user: str, password: str, root: Path, address: str,
               tun: str) -> subprocess.Popen[bytes]:
        """openconnect from the Internet to https://vpn.home.test/ at ``address``, trusting
        only ``root``; its script routes only the appliance's LAN address into the tunnel
        (no DNS change: the namespace shares the host's resolv.conf)."""
        script = self.work / f"{name}-script.sh"
        script.write_text(
            "#!/bin/sh\n"
            'if [ "$reason" = connect ]; then\n'
            '  ip link set "$TUNDEV" up mtu "${INTERNAL_IP4_MTU:-1400}"\n'
            '  ip addr add "$INTERNAL_IP4_ADDRESS/32" dev "$TUNDEV"\n'
            f'  ip route add {APPLIANCE}/32 dev "$TUNDEV"\n'
            f'  touch {self.work / (name + ".up")}\n'
            "fi\n")
        script.chmod(0o700)
        (self.work / f"{name}.up").unlink(missing_ok=True)
        self._spawn(name, self.inet, ["openconnect", "-v", "--non-inter", "--passwd-on-stdin",
                                      "--user", user, "--cafile", str(root),
                                      f"--resolve={NAME}:{address}", "--script", str(script),
                                      "--interface", tun, f"https://{NAME}/"],
                    stdin=subprocess.PIPE)
        proc = self.procs[name]
        assert proc.stdin is not None
        proc.stdin.write(password.encode() + b"\n")
        proc.stdin.close()
        _wait(f"{name} tunnel", lambda: (self.work / f"{name}.up").exists()
              or proc.poll() is not None, 40)
        if proc.poll() is not None:
            raise RuntimeError(f"{name}: openconnect exited: {self.log(name)[-2000:]}")
        return proc
