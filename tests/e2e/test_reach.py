"""Reachability through a real home router (tests/e2e/reach_rig.py): miniupnpd maps the VPN's
ports by UPnP IGD, NAT-PMP or PCP, bind9 takes the RFC 2136 updates, pebble issues the
certificate, and traffic from the "Internet" namespace reaches the appliance through the
router's NAT.  Nothing leaves the namespaces."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import reach_rig
from tests.e2e.reach_rig import APPLIANCE, BIND_IP, NAME, PEBBLE_IP, ROUTER_WAN, ROUTER_WAN2, Home
from tests.prereqs import needs

pytestmark = [needs(reach_rig.require_tools)]

RULE = (f"On your router, forward TCP port 443 to {APPLIANCE} port 443 and UDP port 443 to "
        f"{APPLIANCE} port 443.")

# A TCP banner and a UDP echo on the appliance's port 443: what comes back through the
# router proves the mapping forwards, not only that the router says it does.
_ECHO = """
import socket, sys, threading
port = int(sys.argv[1])
t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(("", port)); t.listen(8)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("", port))
def udp():
    while True:
        data, peer = u.recvfrom(2048); u.sendto(b"echo:" + data, peer)
threading.Thread(target=udp, daemon=True).start()
while True:
    c, _ = t.accept(); c.sendall(b"ocgate-lan\\n"); c.close()
"""

_PROBE = """
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
with socket.create_connection((host, port), timeout=3) as c:
    tcp = c.recv(64).decode().strip()
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(3)
u.sendto(b"dtls?", (host, port))
print(tcp, u.recvfrom(64)[0].decode())
"""


def wait_for(what: str, check: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (OSError, ValueError, KeyError, subprocess.SubprocessError) as exc:
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(0.5)
    pytest.fail(f"{what}: not within {timeout:.0f} s (last: {last!r})")


def status(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


def start_echo(home: Home) -> None:
    home._spawn("echo", home.lan, ["python3", "-c", _ECHO, "443"])
    wait_for("echo server", lambda: home.lan.tcp_listening(443), 10)


def through_router(home: Home, port: int = 443) -> str:
    out = home.inet.run(["python3", "-c", _PROBE, home.wan, str(port)], check=False)
    return out.stdout.strip()


def service(home: Home, tmp: Path, *extra: str) -> Path:
    status_file = tmp / "status.json"
    home.reach_service("--lan-address", APPLIANCE, "--status-file", str(status_file),
                       "--probe-target", BIND_IP, *extra)
    return status_file


def reach_log(home: Home) -> str:
    return home.log("reach")


@pytest.mark.parametrize("protocol", ["upnp", "nat-pmp", "pcp"])
def test_each_protocol_alone_maps_forwards_and_removes(tmp_path: Path, protocol: str) -> None:
    with Home(tmp_path, protocols=(protocol,)) as home:
        start_echo(home)
        assert through_router(home) == "", "nothing may be forwarded before the mapping"
        st = service(home, tmp_path, "--lifetime", "120", "--check-every", "2")
        got = wait_for("mapping", lambda: status(st).get("via") == protocol and status(st), 30)
        assert got["status"]["kind"] == "reachable", got
        assert got["external_address"] == ROUTER_WAN
        assert {(lease["protocol"], lease["external_port"]) for lease in got["leases"]} == \
            {("tcp", 443), ("udp", 443)}
        assert APPLIANCE in home.router_rules()
        assert through_router(home) == "ocgate-lan echo:dtls?"
        proc = home.procs["reach"]
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
        assert APPLIANCE not in home.router_rules(), "mappings left on the router after stop"
        assert through_router(home) == ""
        log = reach_log(home)
        for proto in ("tcp", "udp"):
            assert (f"reach mapping via={protocol} proto={proto} external_port=443 "
                    f"internal_port=443 lifetime=") in log
            assert f"reach mapping via={protocol} proto={proto} external_port=443 " \
                   "result=removed" in log


_HOLD = """
import socket, time
t = socket.socket(); t.bind(("", 443)); t.listen(1)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("", 443))
time.sleep(3600)
"""


@pytest.mark.parametrize("protocol", ["upnp", "nat-pmp", "pcp"])
def test_taken_external_port_gives_another_one(tmp_path: Path, protocol: str) -> None:
    """The router itself uses 443 (its own remote admin page, say): miniupnpd will not map
    it, we get another port, the same for TCP and UDP, and the status (what client-facing
    URLs are built from) carries it."""
    with Home(tmp_path, protocols=(protocol,)) as home:
        home._spawn("router443", home.router, ["python3", "-c", _HOLD])
        wait_for("router's own 443", lambda: home.router.tcp_listening(443), 10)
        start_echo(home)
        got = home.reach("run", "--once", "--keep", "--only", protocol, "--lan-address",
                         APPLIANCE, "--lifetime", "300")
        ports = {lease["external_port"] for lease in got["leases"]}
        assert len(ports) == 1 and 443 not in ports, got
        assert got["status"]["kind"] == "reachable"
        assert {r["external_port"] for r in got["status"]["rules"]} == ports
        assert through_router(home, ports.pop()) == "ocgate-lan echo:dtls?"


def test_no_mapping_protocol_gives_the_manual_rule(tmp_path: Path) -> None:
    with Home(tmp_path, protocols=()) as home:
        got = home.reach("run", "--once", "--lan-address", APPLIANCE, timeout=90)
    assert got["status"]["kind"] == "no-protocol"
    assert got["status"]["manual_rule"] == RULE
    assert "UPnP IGD, NAT-PMP and PCP" in got["status"]["explanation"]


def test_cgnat_is_detected_and_said(tmp_path: Path) -> None:
    with Home(tmp_path, cgnat=True) as home:
        got = home.reach("run", "--once", "--lan-address", APPLIANCE, "--probe-target", BIND_IP,
                         timeout=90)
    st = got["status"]
    assert st["kind"] == "cgnat", st
    assert "100.64.0.0/10" in st["explanation"] and reach_rig.ISP_LAN in st["explanation"]
    assert st["manual_rule"] == "", "no rule on the home router can help behind CGNAT"


def test_router_restart_remaps_and_dns_follows_wan_change(tmp_path: Path) -> None:
    with Home(tmp_path) as home:
        secrets = tmp_path / "reach-secrets.json"
        secrets.write_text(json.dumps({"tsig_secret": home.tsig_secret}))
        os.chmod(secrets, 0o600)
        start_echo(home)
        st = service(home, tmp_path, "--lifetime", "30", "--check-every", "2",
                     "--ddns", "rfc2136", "--name", NAME, "--secrets", str(secrets),
                     "--dns-server", BIND_IP, "--dns-zone", reach_rig.ZONE,
                     "--tsig-name", reach_rig.TSIG_NAME)
        wait_for("A record", lambda: home.dig(NAME) == ROUTER_WAN, 30)
        via = status(st)["via"]
        mapped = time.monotonic()
        time.sleep(6)  # router uptime (its epoch) long enough for a restart to show
        # the router restarts with an empty table; the renewal is 15 s after the mapping, so
        # a re-mapping before that comes from noticing the restart
        home.restart_miniupnpd()
        assert APPLIANCE not in home.router_rules()
        wait_for("re-mapping", lambda: APPLIANCE in home.router_rules(), 8)
        wait_for("traffic after the re-mapping",
                 lambda: through_router(home) == "ocgate-lan echo:dtls?", 8)
        assert time.monotonic() - mapped < 15, "re-mapped by the renewal, not on the restart"
        assert f"reach mapping via={via} proto=tcp" in reach_log(home) and \
            "result=remapped" in reach_log(home)
        # the provider changes the router's address: the name follows within 60 s
        changed = time.monotonic()
        home.change_wan()
        wait_for("A record after the WAN change", lambda: home.dig(NAME) == ROUTER_WAN2, 60)
        took = time.monotonic() - changed
        wait_for("traffic to the new WAN address",
                 lambda: through_router(home) == "ocgate-lan echo:dtls?", 10)
        # a lease of 30 s is renewed at half its life: within 15 s of the last (re-)mapping
        assert took < 60
        wait_for("a renewal", lambda: "result=renewed" in reach_log(home), 20)
        log = reach_log(home)
        assert f"reach ddns via=rfc2136 name={NAME} a={ROUTER_WAN2}" in log
        assert home.tsig_secret not in log, "the TSIG secret must never be logged"


def test_certificate_from_pebble_by_http01(tmp_path: Path) -> None:
    with Home(tmp_path) as home:
        ca = home.start_pebble()
        secrets = tmp_path / "reach-secrets.json"
        secrets.write_text(json.dumps({"tsig_secret": home.tsig_secret}))
        os.chmod(secrets, 0o600)
        home.reach("run", "--once", "--keep", "--lan-address", APPLIANCE, "--ddns", "rfc2136",
                   "--name", NAME, "--secrets", str(secrets), "--dns-server", BIND_IP,
                   "--dns-zone", reach_rig.ZONE, "--tsig-name", reach_rig.TSIG_NAME)
        assert home.dig(NAME) == ROUTER_WAN
        state = tmp_path / "acme"
        got = home.reach("cert", "--directory", f"https://{PEBBLE_IP}:14000/dir", "--ca-bundle",
                         str(ca), "--name", NAME, "--state", str(state), "--cert",
                         str(state / "server-cert.pem"), "--key", str(state / "server-key.pem"),
                         "--challenge", "http-01", "--map-http01", "--lan-address", APPLIANCE,
                         timeout=120)
        assert "dport 80" not in home.router_rules() and " 80 " not in home.router_rules(), \
            "port 80 must be mapped only while the challenge runs"
        root = tmp_path / "pebble-root.pem"
        root.write_text(home.pebble_root())
        chain = (state / "server-cert.pem").read_text()
        leaf = chain[:chain.index("-----END CERTIFICATE-----") + 26]
        (tmp_path / "leaf.pem").write_text(leaf)
        verify = subprocess.run(["openssl", "verify", "-CAfile", str(root), "-untrusted",
                                 str(state / "server-cert.pem"), "-verify_hostname", NAME,
                                 str(tmp_path / "leaf.pem")], capture_output=True, text=True)
        assert verify.returncode == 0, verify.stdout + verify.stderr
        assert oct((state / "server-key.pem").stat().st_mode & 0o777) == "0o600"
        assert "reach acme name=vpn.home.test challenge=http-01 result=answered" in \
            (tmp_path / "reach.log").read_text()
        assert got["renew_at"] < got["not_after"]


def _s_client(home: Home, name: str) -> subprocess.CompletedProcess[str]:
    """An acme-tls/1 ClientHello for ``name`` from the Internet to the router's 443."""
    return home.inet.run(["openssl", "s_client", "-connect", f"{home.wan}:443", "-servername",
                          name, "-alpn", "acme-tls/1", "-brief"], input="", check=False,
                         timeout=20)


def test_certificate_from_pebble_by_tls_alpn01(tmp_path: Path) -> None:
    """The sec-mod answers pebble's TLS-ALPN-01 validation on the VPN's own port, through
    the router's mapping (no port 80 anywhere); then openconnect from the Internet logs in
    to https://vpn.home.test/ trusting only pebble's root."""
    with Home(tmp_path) as home:
        ca = home.start_pebble()
        vpn = home.start_vpn({"vpnuser": "reach-pass-1"})
        secrets = tmp_path / "reach-secrets.json"
        secrets.write_text(json.dumps({"tsig_secret": home.tsig_secret}))
        os.chmod(secrets, 0o600)
        home.reach("run", "--once", "--keep", "--lan-address", APPLIANCE, "--ddns", "rfc2136",
                   "--name", NAME, "--secrets", str(secrets), "--dns-server", BIND_IP,
                   "--dns-zone", reach_rig.ZONE, "--tsig-name", reach_rig.TSIG_NAME)
        assert home.dig(NAME) == ROUTER_WAN
        # no challenge waiting: an acme-tls/1 hello fails, the real certificate is not shown
        refused = _s_client(home, NAME)
        assert refused.returncode != 0, refused.stdout + refused.stderr
        assert "ALPN protocol: acme-tls/1" not in refused.stdout + refused.stderr
        assert f"acme-tls/1 name={NAME} result=refused reason=no-challenge" in home.log("vpn")
        got = home.reach("cert", "--directory", f"https://{PEBBLE_IP}:14000/dir", "--ca-bundle",
                         str(ca), "--name", NAME, "--state", str(tmp_path / "acme"), "--cert",
                         str(vpn / "server-cert.pem"), "--key", str(vpn / "server-key.pem"),
                         "--occtl-socket", str(vpn / "occtl.sock"), timeout=120)
        assert got["renew_at"] < got["not_after"]
        reach_log_text = (tmp_path / "reach.log").read_text()
        assert f"reach acme name={NAME} challenge=tls-alpn-01 result=answered" in reach_log_text
        assert f"acme-tls/1 name={NAME} result=answered" in home.log("vpn")
        assert not list((vpn / "acme-alpn").iterdir()), "challenge file left behind"
        assert " 80 " not in home.router_rules() and "dport 80" not in home.router_rules()
        root = tmp_path / "pebble-root.pem"
        root.write_text(home.pebble_root())
        # the running VPN server took the new certificate (occtl reload), no restart
        assert "reach acme reload result=ok" in reach_log_text
        login = home.inet.run(["openconnect", "--authenticate", "--non-inter",
                               "--passwd-on-stdin", "--user", "vpnuser", "--cafile", str(root),
                               f"--resolve={NAME}:{home.wan}", f"https://{NAME}/"],
                              input="reach-pass-1\n", check=False, timeout=60)
        assert login.returncode == 0 and "COOKIE=" in login.stdout, login.stdout + login.stderr
        assert "servercert" not in login.stderr.lower()


@pytest.mark.format_test
@pytest.mark.parametrize("kind", ["dyndns2", "duckdns"])
def test_http_ddns_publishes_the_router_address(tmp_path: Path, kind: str) -> None:
    """Format test: the reach service, mapping through the router, sends the router's WAN
    address to a stand-in that speaks the documented dyndns2 / DuckDNS format."""
    with Home(tmp_path, protocols=("pcp",)) as home:
        secret = {"dyndns2": {"username": "owner", "password": "pw-not-logged-1"},
                  "duckdns": {"token": "tok-not-logged-2"}}[kind]
        name = {"dyndns2": NAME, "duckdns": "myvpn"}[kind]
        state = home.start_ddns_endpoint(
            {"dyndns2": {"owner": ["pw-not-logged-1", [NAME]]},
             "duckdns": {"tok-not-logged-2": ["myvpn"]}})
        secrets = tmp_path / "reach-secrets.json"
        secrets.write_text(json.dumps(secret))
        os.chmod(secrets, 0o600)
        url = f"http://{reach_rig.DDNS_IP}:{reach_rig.DDNS_PORT}"
        got = home.reach("run", "--once", "--lan-address", APPLIANCE, "--ddns", kind,
                         "--name", name, "--secrets", str(secrets), "--ddns-url", url)
        assert got["dns"] == {"name": name, "published": [ROUTER_WAN, None]}
        seen = json.loads(state.read_text())
        host = NAME if kind == "dyndns2" else "myvpn.duckdns.org"
        assert seen["records"][host] == {"A": ROUTER_WAN}
        log = (tmp_path / "reach.log").read_text()
        assert f"reach ddns via={kind} name={name} a={ROUTER_WAN}" in log
        assert "not-logged" not in log, "a DDNS password or token was logged"


def _leaf(path: Path) -> Any:
    from cryptography import x509
    return x509.load_pem_x509_certificate(path.read_bytes())


def _seen_by_openconnect(home: Home, root: Path, address: str) -> str:
    """A fresh ``openconnect --authenticate`` from the Internet, trusting only pebble's root:
    the pin of the certificate it was shown (its FINGERPRINT line)."""
    login = home.inet.run(["openconnect", "--authenticate", "--non-inter", "--passwd-on-stdin",
                           "--user", "vpnuser", "--cafile", str(root),
                           f"--resolve={NAME}:{address}", f"https://{NAME}/"],
                          input="reach-pass-1\n", check=False, timeout=60)
    assert login.returncode == 0 and "COOKIE=" in login.stdout, login.stdout + login.stderr
    return login.stdout.split("FINGERPRINT='")[1].split("'")[0]


def _ping_counts(output: str) -> tuple[int, int]:
    import re
    m = re.search(r"(\d+) packets transmitted, (\d+) (?:packets )?received", output)
    assert m, output
    return int(m.group(1)), int(m.group(2))


def test_service_applies_settings_issues_renews_and_follows_the_wan(tmp_path: Path) -> None:
    """The service as the device runs it (``run --state``): idle until reach.json turns it
    on, then it maps, publishes, gets a pebble certificate by TLS-ALPN-01 and has the VPN
    reload it; pebble's certificates live 90 s, so the renewal (2/3 of the lifetime minus
    jitter) comes while an openconnect session pings through it, and a new openconnect
    sees the new certificate.  Then the provider changes the router's address: the record
    follows within 60 s and a client that reconnects by the name gets in."""
    from appliance import pki
    from appliance.reach import settings as reach_settings

    with Home(tmp_path) as home:
        ca = home.start_pebble(validity=90)
        vpn = home.start_vpn({"vpnuser": "reach-pass-1"})
        own_pin = pki.pin_sha256(_leaf(vpn / "server-cert.pem"))
        (vpn / "reach-secrets.json").write_text(json.dumps({"tsig_secret": home.tsig_secret}))
        os.chmod(vpn / "reach-secrets.json", 0o600)
        home.reach_service("--state", str(vpn), "--probe-target", BIND_IP, "--lifetime", "120",
                           "--check-every", "2", "--watch-every", "1", "--acme-ca-bundle",
                           str(ca), "--acme-retry", "3")
        wait_for("idle service", lambda: "reach service result=idle" in reach_log(home), 20)
        assert APPLIANCE not in home.router_rules(), "reachability is off: nothing mapped"
        # the admin turns it on (what the wizard and the settings page write)
        reach_settings.save(vpn / "reach.json", reach_settings.ReachSettings(
            enabled=True, ddns="rfc2136", name=NAME, dns_server=BIND_IP,
            dns_zone=reach_rig.ZONE, tsig_name=reach_rig.TSIG_NAME, acme=True,
            acme_directory=home.pebble_dir()))
        wait_for("A record", lambda: home.dig(NAME) == ROUTER_WAN, 30)
        wait_for("first certificate",
                 lambda: "result=installed" in reach_log(home) and
                 pki.pin_sha256(_leaf(vpn / "server-cert.pem")) != own_pin, 90)
        log = reach_log(home)
        assert f"reach acme name={NAME} result=ordering reason=no-public-certificate" in log
        assert f"reach acme name={NAME} challenge=tls-alpn-01 result=answered" in log
        assert "reach acme reload result=ok" in log
        first = _leaf(vpn / "server-cert.pem")
        root = tmp_path / "pebble-root.pem"
        root.write_text(home.pebble_root())
        assert _seen_by_openconnect(home, root, ROUTER_WAN) == pki.pin_sha256(first), \
            "the running VPN server must show the new certificate without a restart"
        status_file = vpn / "reach-status.json"
        assert status(status_file)["status"]["kind"] == "reachable"
        # a session from the Internet pings through the renewal
        session = home.tunnel("session", "vpnuser", "reach-pass-1", root, ROUTER_WAN, "ocgr0")
        life = (first.not_valid_after_utc - first.not_valid_before_utc).total_seconds()
        due = first.not_valid_before_utc.timestamp() + life * 2 / 3 - time.time()
        count = int((max(due, 0) + 25) / 0.2)
        pinger = home.inet.popen(["ping", "-n", "-q", "-i", "0.2", "-W", "1", "-c", str(count),
                                  APPLIANCE], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        wait_for("renewed certificate", lambda: _leaf(vpn / "server-cert.pem").serial_number
                 != first.serial_number, max(due, 0) + 60)
        second = _leaf(vpn / "server-cert.pem")
        assert second.not_valid_before_utc > first.not_valid_before_utc
        renewed_at = time.time()
        assert renewed_at < first.not_valid_after_utc.timestamp(), "renewed only after expiry"
        assert renewed_at >= first.not_valid_before_utc.timestamp() + life * (2 / 3 - 1 / 20) \
            - 3, "renewed long before two thirds of the lifetime"
        wait_for("the new certificate in use",
                 lambda: _seen_by_openconnect(home, root, ROUTER_WAN) == pki.pin_sha256(second),
                 15)
        out, _ = pinger.communicate(timeout=count * 0.2 + 30)
        sent, received = _ping_counts(out.decode())
        assert sent == count and received >= sent * 0.95, out.decode()
        assert session.poll() is None, "the session ended during the renewal"
        assert "reconnect" not in home.log("session").lower(), home.log("session")[-2000:]
        assert f"reach acme name={NAME} result=ordering reason=renewal-due" in reach_log(home)
        home.stop("session")
        # the provider changes the router's address: the name follows, a client gets in
        changed = time.monotonic()
        home.change_wan()
        wait_for("A record after the WAN change", lambda: home.dig(NAME) == ROUTER_WAN2, 60)
        assert time.monotonic() - changed < 60
        again = home.tunnel("again", "vpnuser", "reach-pass-1", root, home.dig(NAME), "ocgr1")
        ping = home.inet.run(["ping", "-n", "-q", "-c", "3", "-i", "0.2", "-W", "2", APPLIANCE],
                             check=False)
        assert _ping_counts(ping.stdout)[1] == 3, ping.stdout
        assert again.poll() is None
        home.stop("again")
        # turning it off takes the mappings off the router at once
        reach_settings.save(vpn / "reach.json", reach_settings.ReachSettings())
        wait_for("mappings removed", lambda: APPLIANCE not in home.router_rules(), 20)
        wait_for("status file removed", lambda: not status_file.exists(), 10)
        assert home.tsig_secret not in reach_log(home)


_COUNT = """
table inet ocgcount {{
 counter tls_in {{}}
 counter tls_out {{}}
 counter udp_in {{}}
 counter udp_out {{}}
 chain in {{ type filter hook input priority 0; policy accept;
  ip saddr {wan} tcp sport 443 counter name tls_in
  ip saddr {wan} udp sport 443 counter name udp_in
 }}
 chain out {{ type filter hook output priority 0; policy accept;
  ip daddr {wan} tcp dport 443 counter name tls_out
  ip daddr {wan} udp dport 443 counter name udp_out
 }}
}}
"""


def _counters(home: Home) -> dict[str, tuple[int, int]]:
    """(packets, bytes) between the Internet client and the router's port 443."""
    out = home.inet.run(["nft", "-j", "list", "counters", "table", "inet", "ocgcount"]).stdout
    return {c["counter"]["name"]: (c["counter"]["packets"], c["counter"]["bytes"])
            for c in json.loads(out)["nftables"] if "counter" in c}


def test_openconnect_from_the_internet_moves_10mb_each_way_over_dtls(tmp_path: Path) -> None:
    """The full path of the issue: mapping, name, pebble certificate by TLS-ALPN-01; then
    openconnect in the Internet namespace, trusting only pebble's root, reaches the inside
    through the router and moves 10 MB each way; the checksums match and the counters on
    the client's side show the data went in UDP datagrams (DTLS), not over TLS."""
    from tests.support.dtls import udp_snmp
    from tests.support.harness import transfer_between

    mb = 1 << 20
    with Home(tmp_path) as home:
        ca = home.start_pebble()
        vpn = home.start_vpn({"vpnuser": "reach-pass-1"})
        secrets = tmp_path / "reach-secrets.json"
        secrets.write_text(json.dumps({"tsig_secret": home.tsig_secret}))
        os.chmod(secrets, 0o600)
        home.reach("run", "--once", "--keep", "--lan-address", APPLIANCE, "--ddns", "rfc2136",
                   "--name", NAME, "--secrets", str(secrets), "--dns-server", BIND_IP,
                   "--dns-zone", reach_rig.ZONE, "--tsig-name", reach_rig.TSIG_NAME)
        home.reach("cert", "--directory", home.pebble_dir(), "--ca-bundle", str(ca), "--name",
                   NAME, "--state", str(tmp_path / "acme"), "--cert", str(vpn / "server-cert.pem"),
                   "--key", str(vpn / "server-key.pem"), "--occtl-socket", str(vpn / "occtl.sock"),
                   timeout=120)
        root = tmp_path / "pebble-root.pem"
        root.write_text(home.pebble_root())
        home.inet.run(["nft", "-f", "-"], input=_COUNT.format(wan=ROUTER_WAN))
        session = home.tunnel("dtls", "vpnuser", "reach-pass-1", root, home.dig(NAME), "ocgr2")
        wait_for("DTLS", lambda: "Established DTLS connection" in home.log("dtls"), 15)
        ping = home.inet.run(["ping", "-n", "-q", "-c", "3", "-i", "0.2", "-W", "2", APPLIANCE],
                             check=False)
        assert _ping_counts(ping.stdout)[1] == 3, ping.stdout
        for direction in ("up", "down"):
            before, snmp_before = _counters(home), udp_snmp(session.pid)
            got = transfer_between(home.lan, home.inet, APPLIANCE, 10 * mb, direction,
                                   timeout=120)
            after, snmp = _counters(home), udp_snmp(session.pid)
            delta = {k: (after[k][0] - before[k][0], after[k][1] - before[k][1]) for k in after}
            assert got.sha_sent == got.sha_received, f"{direction}: SHA-256 mismatch"
            carried = delta["udp_out" if direction == "up" else "udp_in"]
            assert carried[1] >= 10 * mb, (direction, delta)
            # datagrams as the sockets saw them (the hook may see GRO-merged packets)
            key = "OutDatagrams" if direction == "up" else "InDatagrams"
            assert snmp[key] - snmp_before[key] >= 10 * mb // 1500, (direction, snmp)
            tls = delta["tls_in"][1] + delta["tls_out"][1]
            assert tls < 64 * 1024, f"{direction}: the data went over TLS: {delta}"
            print(f"\n[e2e] reach 10 MB {direction} in {got.seconds:.1f} s: {delta}")
        assert session.poll() is None, home.log("dtls")[-2000:]
        assert "Established DTLS connection" in home.log("dtls")


_ECHO6 = """
import socket, sys, threading
port = int(sys.argv[1])
t = socket.socket(socket.AF_INET6); t.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); t.bind(("::", port)); t.listen(8)
u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
u.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1); u.bind(("::", port))
def udp():
    while True:
        data, peer = u.recvfrom(2048); u.sendto(b"echo6:" + data, peer)
threading.Thread(target=udp, daemon=True).start()
while True:
    c, _ = t.accept(); c.sendall(b"ocgate-lan6\\n"); c.close()
"""

_PROBE6 = """
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
try:
    with socket.create_connection((host, port), timeout=2) as c:
        tcp = c.recv(64).decode().strip()
except OSError:
    tcp = "-"
u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); u.settimeout(2)
u.sendto(b"dtls?", (host, port))
try:
    udp = u.recvfrom(64)[0].decode()
except OSError:
    udp = "-"
print(tcp, udp)
"""


def test_ipv6_pinhole_by_pcp_and_aaaa(tmp_path: Path) -> None:
    """With a global IPv6 address the service opens the VPN's TCP and UDP port in the
    router's IPv6 firewall by PCP (a MAP over IPv6), publishes the AAAA record, and closes
    the pinhole on stop; nothing gets through from the Internet before or after."""
    with Home(tmp_path, protocols=("pcp",), ipv6=True) as home:
        home._spawn("echo6", home.lan, ["python3", "-c", _ECHO6, "443"])
        wait_for("IPv6 echo server", lambda: home.lan.tcp_listening(443), 10)

        def probe() -> str:
            return home.inet.run(["python3", "-c", _PROBE6, reach_rig.APPLIANCE6, "443"],
                                 check=False, timeout=20).stdout.strip()

        assert probe() == "- -", "the router's IPv6 firewall must be closed before"
        secrets = tmp_path / "reach-secrets.json"
        secrets.write_text(json.dumps({"tsig_secret": home.tsig_secret}))
        os.chmod(secrets, 0o600)
        st = service(home, tmp_path, "--lifetime", "120", "--check-every", "2", "--ddns",
                     "rfc2136", "--name", NAME, "--secrets", str(secrets), "--dns-server",
                     BIND_IP, "--dns-zone", reach_rig.ZONE, "--tsig-name", reach_rig.TSIG_NAME)
        got = wait_for("pinholes", lambda: (status(st).get("ipv6") or {}).get("leases")
                       and status(st), 30)
        assert got["ipv6"]["address"] == reach_rig.APPLIANCE6 and \
            got["ipv6"]["via"] == "pcp-ipv6", got
        assert {(x["protocol"], x["external_port"]) for x in got["ipv6"]["leases"]} == \
            {("tcp", 443), ("udp", 443)}
        wait_for("AAAA record", lambda: home.dig(NAME, "AAAA") == reach_rig.APPLIANCE6, 20)
        assert home.dig(NAME) == ROUTER_WAN
        assert probe() == "ocgate-lan6 echo6:dtls?"
        home.procs["reach"].send_signal(signal.SIGTERM)
        home.procs["reach"].wait(20)
        assert probe() == "- -", "the pinholes must close when the service stops"
        log = reach_log(home)
        for proto in ("tcp", "udp"):
            assert f"reach mapping via=pcp-ipv6 proto={proto} external_port=443 " \
                   "internal_port=443 lifetime=" in log
            assert f"reach mapping via=pcp-ipv6 proto={proto} external_port=443 " \
                   "result=removed" in log
        assert f"a={ROUTER_WAN} aaaa={reach_rig.APPLIANCE6}" in log

