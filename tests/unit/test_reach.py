"""appliance/reach: NAT-PMP and PCP codecs from bytes, status words, DDNS request and answer
formats, backoff and renewal timing, the TLS-ALPN-01 challenge certificate."""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import struct

import pytest
from cryptography import x509

from appliance.reach import acmecert, challenges, ddns, jobs, natpmp, pcp, status


def test_natpmp_map_request_and_response_bytes() -> None:
    assert natpmp.encode_external_address_request() == b"\x00\x00"
    assert natpmp.encode_map_request("tcp", 443, 443, 3600) == \
        b"\x00\x02\x00\x00\x01\xbb\x01\xbb\x00\x00\x0e\x10"
    reply = natpmp.decode_response(b"\x00\x82\x00\x00" + struct.pack("!IHHI", 77, 443, 1443,
                                                                      3600))
    assert reply == natpmp.MapResult("tcp", 0, 77, 443, 1443, 3600)
    ext = natpmp.decode_response(b"\x00\x80\x00\x00\x00\x00\x00\x05" + bytes([198, 18, 0, 2]))
    assert ext == natpmp.ExternalAddress(0, 5, ipaddress.IPv4Address("198.18.0.2"))
    refused = natpmp.decode_response(b"\x00\x81\x00\x03" + bytes(4))
    assert isinstance(refused, natpmp.MapResult) and refused.result == 3


@pytest.mark.parametrize("data", [b"", b"\x00\x82\x00", b"\x02\x82" + bytes(14),
                                  b"\x00\x02" + bytes(14), b"\x00\x82\x00\x00" + bytes(4),
                                  b"\x00\x85" + bytes(14)])
def test_natpmp_malformed_is_refused(data: bytes) -> None:
    with pytest.raises(natpmp.NatPmpError):
        natpmp.decode_response(data)


def test_pcp_map_roundtrip_bytes() -> None:
    client = ipaddress.IPv4Address("198.19.1.10")
    nonce = bytes(range(12))
    req = pcp.encode_map_request(client, nonce, "udp", 443, 443, 120)
    assert len(req) == 60 and req[:4] == b"\x02\x01\x00\x00"
    assert req[8:24] == bytes(10) + b"\xff\xff" + client.packed
    assert req[24:36] == nonce and req[36] == 17
    resp = bytearray(req)
    resp[1] = 0x81
    resp[3] = 0  # result
    resp[8:12] = struct.pack("!I", 9)  # epoch
    resp[12:24] = bytes(12)
    resp[42:44] = struct.pack("!H", 2443)
    resp[44:60] = bytes(10) + b"\xff\xff" + bytes([198, 18, 0, 2])
    got = pcp.decode_response(bytes(resp))
    assert got.result == 0 and got.lifetime == 120 and got.epoch == 9
    assert got.map == pcp.MapInfo(nonce, "udp", 443, 2443, ipaddress.IPv4Address("198.18.0.2"))


@pytest.mark.parametrize("data", [b"\x00\x81\x00\x01", b"\x02", b"\x02\x81" + bytes(21),
                                  b"\x02\x01" + bytes(22), b"\x02\x81" + bytes(22) + b"\x00\x00",
                                  b"\x02\x80" + bytes(22) + b"\x01\x00\x00\x08"])
def test_pcp_malformed_is_refused(data: bytes) -> None:
    with pytest.raises(pcp.PcpError):
        pcp.decode_response(data)


def test_status_words_and_manual_rule() -> None:
    rules = (status.PortRule("tcp", 443, 443), status.PortRule("udp", 443, 443))
    common = {"lan_address": "198.19.1.10", "rules": rules, "failures": ()}
    assert status.classify(mapped_via="pcp", external_address="198.18.0.2", answered=("pcp",),
                           **common).kind == "reachable"
    cg = status.classify(mapped_via="", external_address="100.64.3.4", answered=("pcp",),
                         **common)
    assert cg.kind == "cgnat" and cg.manual_rule == ""
    private = str(next(status.PRIVATE_V4[0].hosts()))
    assert status.classify(mapped_via="upnp", external_address=private, answered=("upnp",),
                           **common).kind == "double-nat"
    none = status.classify(mapped_via="", external_address="", answered=(), **common)
    assert none.kind == "no-protocol"
    assert none.manual_rule == ("On your router, forward TCP port 443 to 198.19.1.10 port 443 "
                                "and UDP port 443 to 198.19.1.10 port 443.")
    hop = status.classify(mapped_via="", external_address="", answered=("pcp",),
                          upstream_hop="100.64.0.1", **common)
    assert hop.kind == "cgnat" and "100.64.0.1" in hop.explanation


def test_dyndns2_and_duckdns_formats() -> None:
    req = ddns.dyndns2_request("https://dyn.test", "u", "p", "vpn.home.test", "198.18.0.2",
                               None)
    assert req.url == "https://dyn.test/nic/update?hostname=vpn.home.test&myip=198.18.0.2"
    assert req.headers["Authorization"] == "Basic dTpw"
    assert ddns.dyndns2_parse("good 198.18.0.2\n") == "good"
    assert ddns.dyndns2_parse("nochg 198.18.0.2") == "nochg"
    with pytest.raises(ddns.DdnsError) as err:
        ddns.dyndns2_parse("badauth")
    assert err.value.permanent
    with pytest.raises(ddns.DdnsError) as err:
        ddns.dyndns2_parse("911")
    assert not err.value.permanent
    duck = ddns.duckdns_request("https://duck.test", "tok", "me.duckdns.org", "198.18.0.2", None)
    assert duck.url == "https://duck.test/update?domains=me&token=tok&ip=198.18.0.2"
    assert ddns.duckdns_parse("OK") == "OK"
    with pytest.raises(ddns.DdnsError):
        ddns.duckdns_parse("KO")


def test_backoff_and_renewal_time() -> None:
    assert jobs.backoff(1, rand=lambda: 0.5) == 5.0
    assert jobs.backoff(3, rand=lambda: 0.5) == 20.0
    assert jobs.backoff(30, rand=lambda: 0.5) == 900.0
    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    end = start + datetime.timedelta(days=90)
    assert acmecert.renew_at(start, end, rand=lambda: 0.0) == start + datetime.timedelta(days=60)
    assert acmecert.renew_at(start, end, rand=lambda: 1.0) == start + datetime.timedelta(
        days=55.5)


def test_alpn_challenge_certificate_and_store(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cert_pem, _ = challenges.alpn_challenge_certificate("vpn.home.test", "tok.thumb")
    cert = x509.load_pem_x509_certificate(cert_pem)
    ext = cert.extensions.get_extension_for_oid(challenges.ID_PE_ACME_IDENTIFIER)
    assert ext.critical
    assert ext.value.value == b"\x04\x20" + hashlib.sha256(b"tok.thumb").digest()
    store = challenges.AlpnChallengeStore(tmp_path)
    store.put("vpn.home.test", "tok.thumb")
    assert (tmp_path / "vpn.home.test.pem").stat().st_mode & 0o777 == 0o600
    assert store.lookup("VPN.home.test.") is not None
    assert store.lookup("../etc") is None and store.lookup("other.test") is None
    store.remove("vpn.home.test")
    assert store.lookup("vpn.home.test") is None
