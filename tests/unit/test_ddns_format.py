"""Format tests of the HTTP dynamic-DNS updaters (reach/ddns.py) against a loopback endpoint
that speaks the documented dyndns2 and DuckDNS request/response formats
(tests/support/ddnsendpoint.py).  The real services are out of reach: these prove the
requests have the documented shape and every documented answer is read right."""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator

import pytest

from appliance.reach import ddns
from tests.support.ddnsendpoint import Accounts, Endpoint

pytestmark = pytest.mark.format_test

PASSWORD = "s3cret-pass:with colon"
TOKEN = "a7c4d0ad-114e-40ef-ba1d-d217904a50f2"


@pytest.fixture
def service() -> Iterator[Endpoint]:
    acc = Accounts(dyndns2={"owner": (PASSWORD, {"vpn.example-ddns.test"})},
                   duckdns={TOKEN: {"myvpn"}})
    endpoint = Endpoint("127.0.0.1", acc).start()
    yield endpoint
    endpoint.close()


def test_dyndns2_good_then_nochg(service: Endpoint) -> None:
    up = ddns.Dyndns2(service.url, "owner", PASSWORD)
    assert up.update("vpn.example-ddns.test", "198.18.0.2", None) == "good"
    assert service.accounts.records["vpn.example-ddns.test"] == {"A": "198.18.0.2"}
    assert up.update("vpn.example-ddns.test", "198.18.0.2", None) == "nochg"
    assert up.update("vpn.example-ddns.test", "198.18.0.3", "2001:db8::5") == "good"
    assert service.accounts.records["vpn.example-ddns.test"] == \
        {"A": "198.18.0.3", "AAAA": "2001:db8::5"}
    req = service.accounts.requests[-1]
    assert req["path"] == "/nic/update"
    assert req["query"] == {"hostname": ["vpn.example-ddns.test"],
                            "myip": ["198.18.0.3,2001:db8::5"]}
    assert base64.b64decode(req["authorization"].removeprefix("Basic ")).decode() == \
        f"owner:{PASSWORD}"
    assert req["user_agent"].startswith("OCGate/")


@pytest.mark.parametrize(("setup", "user", "password", "host", "word", "permanent"), [
    (None, "owner", "wrong", "vpn.example-ddns.test", "badauth", True),
    (None, "nobody", PASSWORD, "vpn.example-ddns.test", "badauth", True),
    (None, "owner", PASSWORD, "other.example-ddns.test", "nohost", True),
    (None, "owner", PASSWORD, "localhost", "notfqdn", True),
    ("locked", "owner", PASSWORD, "vpn.example-ddns.test", "abuse", True),
    ("trouble", "owner", PASSWORD, "vpn.example-ddns.test", "911", False),
])
def test_dyndns2_refusals(service: Endpoint, setup: str | None, user: str, password: str,
                          host: str, word: str, permanent: bool) -> None:
    if setup == "locked":
        service.accounts.locked.add("owner")
    elif setup == "trouble":
        service.accounts.trouble = True
    with pytest.raises(ddns.DdnsError) as err:
        ddns.Dyndns2(service.url, user, password).update(host, "198.18.0.2", None)
    assert str(err.value) == f"dyndns2: {word}"
    assert err.value.permanent is permanent
    assert "vpn.example-ddns.test" not in service.accounts.records


def test_duckdns_ok_ipv6_and_ko(service: Endpoint) -> None:
    up = ddns.DuckDns(TOKEN, service.url)
    assert up.update("myvpn.duckdns.org", "198.18.0.2", None) == "OK"
    assert service.accounts.records["myvpn.duckdns.org"] == {"A": "198.18.0.2"}
    assert up.update("myvpn", "198.18.0.3", "2001:db8::7") == "OK"
    assert service.accounts.records["myvpn.duckdns.org"] == \
        {"A": "198.18.0.3", "AAAA": "2001:db8::7"}
    req = service.accounts.requests[-1]
    assert req["path"] == "/update"
    assert req["query"] == {"domains": ["myvpn"], "token": [TOKEN], "ip": ["198.18.0.3"],
                            "ipv6": ["2001:db8::7"]}
    with pytest.raises(ddns.DdnsError) as err:
        ddns.DuckDns("0" * 36, service.url).update("myvpn.duckdns.org", "198.18.0.4", None)
    assert err.value.permanent and "KO" in str(err.value)
    with pytest.raises(ddns.DdnsError):
        up.update("someone-else.duckdns.org", "198.18.0.4", None)
    assert service.accounts.records["myvpn.duckdns.org"]["A"] == "198.18.0.3"


def test_duckdns_empty_ip_means_the_sender(service: Endpoint) -> None:
    """Only IPv6 known: DuckDNS is sent ip= (empty), which it reads as the request's source."""
    assert ddns.DuckDns(TOKEN, service.url).update("myvpn", None, "2001:db8::9") == "OK"
    assert service.accounts.requests[-1]["query"]["ip"] == [""]
    assert service.accounts.records["myvpn.duckdns.org"] == \
        {"A": "127.0.0.1", "AAAA": "2001:db8::9"}


def test_publisher_sends_only_changes_and_never_logs_secrets(
        service: Endpoint, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    pubs = [ddns.Publisher(ddns.Dyndns2(service.url, "owner", PASSWORD),
                           "vpn.example-ddns.test"),
            ddns.Publisher(ddns.DuckDns(TOKEN, service.url), "myvpn.duckdns.org")]
    for pub in pubs:
        assert pub.publish("198.18.0.2") is True
        assert pub.publish("198.18.0.2") is False  # unchanged: no request at all
        assert pub.publish("198.18.0.3") is True
    assert len(service.accounts.requests) == 4
    assert "reach ddns via=dyndns2 name=vpn.example-ddns.test a=198.18.0.3" in caplog.text
    assert "reach ddns via=duckdns name=myvpn.duckdns.org a=198.18.0.3" in caplog.text
    assert PASSWORD not in caplog.text and TOKEN not in caplog.text
    assert base64.b64encode(f"owner:{PASSWORD}".encode()).decode() not in caplog.text


def test_unreachable_service_names_the_host_not_the_token(service: Endpoint) -> None:
    url = service.url
    service.close()
    with pytest.raises(ddns.DdnsError) as err:
        ddns.DuckDns(TOKEN, url).update("myvpn", "198.18.0.2", None)
    assert TOKEN not in str(err.value) and "127.0.0.1" in str(err.value)
    assert not err.value.permanent
