"""mDNS: ocgate.local and the wizard's service resolve, inside a private namespace only.

The announcer binds to 127.0.0.1 in a fresh network namespace whose loopback has
multicast switched on, so not one packet is sent on the host's interfaces.
"""

from __future__ import annotations

import os
import sys
import textwrap

import pytest

from appliance.firstboot.mdns import MdnsAnnouncer, MdnsError
from tests.prereqs import needs, needs_command, require_root
from tests.support.harness import REPO_ROOT
from tests.support.netns import Netns

PROBE = textwrap.dedent("""
    import zeroconf
    from appliance.firstboot.mdns import MdnsAnnouncer
    announcer = MdnsAnnouncer(["127.0.0.1"], hostname="ocgate")
    announcer.start()
    announcer.announce("_http._tcp", 8080)
    announcer.announce("_https._tcp", 443)
    zc = zeroconf.Zeroconf(interfaces=["127.0.0.1"], ip_version=zeroconf.IPVersion.V4Only)
    for kind, port in (("_http._tcp", 8080), ("_https._tcp", 443)):
        info = zc.get_service_info(kind + ".local.", "OCGate setup." + kind + ".local.",
                                   timeout=3000)
        assert info is not None and info.port == port, kind
        assert info.server == "ocgate.local." and info.parsed_addresses() == ["127.0.0.1"]
    host = zeroconf.AddressResolver("ocgate.local.")
    assert host.request(zc, 3000) and host.parsed_addresses() == ["127.0.0.1"]
    zc.close()
    announcer.stop()
    announcer.stop()
    print("MDNS-OK")
""")


def test_needs_an_address() -> None:
    with pytest.raises(MdnsError):
        MdnsAnnouncer([])
    with pytest.raises(MdnsError):
        MdnsAnnouncer(["127.0.0.1"]).announce("_http._tcp", 80)


@needs(lambda: require_root("a private network namespace"))
@needs_command("ip", "iproute2")
def test_announces_name_and_services_in_a_namespace() -> None:
    ns = Netns.create("m")
    try:
        ns.ip("link", "set", "lo", "multicast", "on")
        ns.ip("route", "add", "224.0.0.0/4", "dev", "lo")
        proc = ns.run([sys.executable, "-c", PROBE], check=False, timeout=60,
                      cwd=REPO_ROOT, env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)))
        assert "MDNS-OK" in proc.stdout, proc.stderr[-2000:]
    finally:
        ns.delete()
