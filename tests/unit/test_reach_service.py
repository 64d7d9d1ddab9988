"""reach run's pieces without a network: when the ACME job orders (acmejob.py) and what the
service resolves from the state folder, which decides when it rebuilds (service.py)."""

from __future__ import annotations

import argparse
import datetime
import json
from pathlib import Path

import pytest

from appliance import pki
from appliance.reach import acmecert, acmejob, service
from appliance.reach import settings as reach_settings
from appliance.reach.__main__ import build_parser
from appliance.state import StateLayout

NAME = "vpn.home.test"


def _pair(tmp: Path, *, own: bool, name: str = NAME, days: int = 30,
          now: datetime.datetime | None = None) -> tuple[Path, Path]:
    """(server-cert, appliance ca-cert): the leaf from the appliance CA or another one."""
    own_key, own_ca = pki.make_ca("OCGate test CA", days=60)
    other_key, other_ca = pki.make_ca("Some public CA", days=60)
    key, cert = pki.make_server_cert(own_key if own else other_key, own_ca if own else other_ca,
                                     names=[name], addresses=[], days=days, now=now)
    pki.write_cert(tmp / "server-cert.pem", cert)
    pki.write_cert(tmp / "ca-cert.pem", own_ca)
    return tmp / "server-cert.pem", tmp / "ca-cert.pem"


def test_public_certificate_is_recognised_and_its_renewal_time_is_stable(tmp_path: Path
                                                                         ) -> None:
    cert, ca = _pair(tmp_path, own=False)
    got = acmejob.current_public(cert, NAME, ca)
    assert got is not None
    life = got.not_after - got.not_before
    two_thirds = got.not_before + life * 2 / 3
    assert two_thirds - life / 20 <= got.renew_at <= two_thirds
    again = acmejob.current_public(cert, NAME, ca)
    assert again is not None and again.renew_at == got.renew_at, "a restart redraws jitter"
    assert acmejob.current_public(cert, "other.home.test", ca) is None


def test_own_ca_certificate_or_none_means_order(tmp_path: Path) -> None:
    cert, ca = _pair(tmp_path, own=True)
    assert acmejob.current_public(cert, NAME, ca) is None
    assert acmejob.current_public(tmp_path / "missing.pem", NAME, ca) is None


def test_expired_public_certificate_is_not_current(tmp_path: Path) -> None:
    past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=40)
    cert, ca = _pair(tmp_path, own=False, days=30, now=past)
    assert acmejob.current_public(cert, NAME, ca) is None


def _job(tmp: Path, cert: Path, ca: Path, ready: str, asked: list[str]) -> acmejob.AcmeJob:
    def why_not() -> str:
        asked.append(ready)
        return ready
    return acmejob.AcmeJob(NAME, "https://127.0.0.1:9/dir", tmp, cert, tmp / "key.pem",
                           why_not, own_ca=ca)


def test_job_sleeps_until_renewal_when_the_certificate_is_good(tmp_path: Path) -> None:
    cert, ca = _pair(tmp_path, own=False, days=30)
    asked: list[str] = []
    delay = _job(tmp_path, cert, ca, "", asked)()
    current = acmejob.current_public(cert, NAME, ca)
    assert current is not None
    left = (current.renew_at - datetime.datetime.now(datetime.UTC)).total_seconds()
    assert delay == pytest.approx(min(acmejob.MAX_SLEEP, left), abs=5)
    assert asked == [], "no order (nor a look at the mapping) while the certificate is good"


def test_job_waits_for_the_mapping_before_ordering(tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    cert, ca = _pair(tmp_path, own=True)
    asked: list[str] = []
    job = _job(tmp_path, cert, ca, "not-reachable", asked)
    caplog.set_level("INFO")
    assert job() == acmejob.WAIT_FOR_REACH and job() == acmejob.WAIT_FOR_REACH
    assert asked == ["not-reachable"] * 2
    waiting = [r for r in caplog.messages if "result=waiting" in r]
    assert waiting == [f"reach acme name={NAME} result=waiting reason=not-reachable"], \
        "the wait is said once, not at every look"


def test_job_orders_when_ready_and_a_failed_order_raises_for_the_backoff(tmp_path: Path
                                                                          ) -> None:
    cert, ca = _pair(tmp_path, own=True)
    job = _job(tmp_path, cert, ca, "", [])
    # nothing listens on loopback port 9: the order fails, and the scheduler must see it fail
    with pytest.raises(Exception):  # noqa: B017 (requests' or acme's error, either way)
        job()


def _state(tmp: Path, chosen: reach_settings.ReachSettings, conf: str) -> StateLayout:
    layout = StateLayout.at(tmp)
    reach_settings.save(layout.reach_settings, chosen)
    layout.conf.write_text(conf)
    return layout


def _args(state: Path, *extra: str) -> argparse.Namespace:
    return build_parser().parse_args(["run", "--state", str(state), "--lan-address",
                                      "198.19.1.10", *extra])


def test_state_folder_resolves_port_certificate_and_control_socket(tmp_path: Path) -> None:
    chosen = reach_settings.ReachSettings(True, "duckdns", "myvpn", acme=True,
                                          acme_directory="https://acme.test/dir")
    layout = _state(tmp_path, chosen, "tcp-port = 8443\nserver-cert = /x/cert.pem\n"
                    "server-key = /x/key.pem\nuse-occtl = true\n"
                    "occtl-socket-file = /x/occtl.sock\n")
    got = service.resolve(_args(tmp_path))
    assert got.enabled and got.port == 8443 and got.acme
    assert got.acme_name == "myvpn.duckdns.org", "DuckDNS names live under duckdns.org"
    assert (got.cert, got.key, got.occtl_socket) == ("/x/cert.pem", "/x/key.pem",
                                                     "/x/occtl.sock")
    assert got.acme_directory == "https://acme.test/dir"
    assert got.account_dir == str(layout.certs_dir) and got.own_ca == str(layout.ca_cert)
    assert got.status_file == str(layout.reach_status)


def test_rebuild_only_when_what_the_files_say_changes(tmp_path: Path) -> None:
    chosen = reach_settings.ReachSettings(True, "rfc2136", NAME, dns_server="198.18.100.53",
                                          dns_zone="home.test", tsig_name="k")
    layout = _state(tmp_path, chosen, "tcp-port = 443\n")
    layout.reach_secrets.write_text(json.dumps({"tsig_secret": "c2VjcmV0"}))
    layout.reach_secrets.chmod(0o600)
    args = _args(tmp_path)
    first = service.fingerprint(service.resolve(args))
    reach_settings.save(layout.reach_settings, chosen)  # saved again, unchanged
    layout.conf.write_text("tcp-port = 443\nbanner = hello\n")  # an unrelated VPN option
    assert service.fingerprint(service.resolve(args)) == first
    layout.reach_secrets.write_text(json.dumps({"tsig_secret": "bmV3"}))
    assert service.fingerprint(service.resolve(args)) != first, "a new TSIG key rebuilds"
    layout.reach_secrets.write_text(json.dumps({"tsig_secret": "c2VjcmV0"}))
    layout.conf.write_text("tcp-port = 8443\n")
    assert service.fingerprint(service.resolve(args)) != first, "a new VPN port rebuilds"
    layout.conf.write_text("tcp-port = 443\n")
    layout.reach_settings.unlink()  # factory reset
    off = service.resolve(args)
    assert not off.enabled and service.fingerprint(off) != first


def test_renewal_time_helper_is_two_thirds_minus_jitter() -> None:
    nb = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    na = nb + datetime.timedelta(seconds=90)
    assert acmecert.renew_at(nb, na, lambda: 0.0) == nb + datetime.timedelta(seconds=60)
    assert acmecert.renew_at(nb, na, lambda: 1.0) == nb + datetime.timedelta(seconds=55.5)


def test_ipv6_default_router_and_which_addresses_get_a_pinhole(tmp_path: Path) -> None:
    from ipaddress import IPv6Address

    from appliance.reach import gateway

    table = tmp_path / "ipv6_route"
    # kernel format: dest plen src plen next-hop metric refcnt use flags device
    table.write_text(
        "20010db8010100000000000000000000 40 00000000000000000000000000000000 00 "
        "00000000000000000000000000000000 00000100 00000001 00000000 00000001 eth0\n"
        "00000000000000000000000000000000 00 00000000000000000000000000000000 00 "
        "fe800000000000000000000000000001 00000400 00000002 00000000 00450003 eth0\n")
    assert gateway.default_gateway6(table) == IPv6Address("fe80::1%eth0")
    table.write_text(table.read_text().replace("fe800000000000000000000000000001",
                                               "20010db8010100000000000000000001"))
    assert gateway.default_gateway6(table) == IPv6Address("2001:db8:101::1")
    table.write_text(table.read_text().splitlines()[0] + "\n")
    assert gateway.default_gateway6(table) is None
    assert gateway.default_gateway6(tmp_path / "missing") is None
    assert gateway.reachable6(IPv6Address("2001:db8:101::10"))
    for unreachable in ("fe80::10", "fd00::10", "::1", "ff02::1"):
        assert not gateway.reachable6(IPv6Address(unreachable)), unreachable
