"""Issue #17, sessions: what an ocserv admin's per-user files and scripts see, compared with
Debian's ocserv 1.1.6 in the same test.

Every test starts the same configuration under both servers (``KINDS``) with the real
openconnect and asserts that both give the same observable result: which logins a
``max-same-clients`` limit lets through, what connect-scripts find in ``DEVICE_PLATFORM`` /
``DEVICE_TYPE``, what ``route-add-cmd`` / ``route-del-cmd`` write, and whether an IPv6-only
pool carries traffic.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from tests.prereqs import needs_command
from tests.support.harness import (
    Client,
    Server,
    make_server_files,
    ping,
    server_command,
    write_passwd,
)
from tests.support.netns import TestNet
from tests.support.rig import make_accounts

pytestmark = [needs_command("ocserv", "ocserv")]

KINDS = ("ocserv", "ocgate")


@contextlib.contextmanager
def running(kind: str, workdir: Path, net: TestNet, users: Mapping[str, str], *,
            extra_conf: Sequence[str] = (), groups: Mapping[str, str] | None = None,
            replace: Mapping[str, str] | None = None) -> Iterator[Server]:
    """``kind``'s server on the harness's configuration plus ``extra_conf``; ``replace``
    swaps whole option lines (``{"max-same-clients": "max-same-clients = 1"}``)."""
    files = make_server_files(workdir / kind, net, users=users, extra_conf=extra_conf)
    if groups:
        write_passwd(files.passwd, users, groups)
    if replace:
        lines = [replace.get(line.split("=", 1)[0].strip(), line) for line in files.conf_lines]
        files.conf_lines = lines
        files.conf.write_text("\n".join(lines) + "\n")
    server = Server(net, files, server_command(kind)).start()
    try:
        yield server
    finally:
        server.stop()


# ------------------------------------------------------------------ max-same-clients


def _admitted(server: Server, net: TestNet, users: Mapping[str, str], user: str,
              tries: int) -> list[bool]:
    """Connect ``user`` ``tries`` times at once, each from a namespace of its own (a link
    whose vpnc-script ran a disconnect is not reused); which attempts got a tunnel."""
    clients = [Client(net, server.files, link=net.add_client(), name=f"{user}{i}")
               for i in range(tries)]
    try:
        return [c.connect(user, users[user]) for c in clients]
    finally:
        for c in clients:
            c.close()


@pytest.mark.parametrize("kind", KINDS)
def test_max_same_clients_per_user_and_per_group(net: TestNet, workdir: Path, kind: str) -> None:
    """Global 1; group "duo" 2; bob (in duo) has 0 in his user file, which means no limit
    and wins over the group's value; dave has no file at all and gets the global one."""
    users = make_accounts(("alice", "bob", "dave"))
    per_user = workdir / f"{kind}-users"
    per_group = workdir / f"{kind}-groups"
    for d in (per_user, per_group):
        d.mkdir(mode=0o755)
    (per_group / "duo").write_text("max-same-clients = 2\n")
    (per_user / "bob").write_text("max-same-clients = 0\n")
    conf = [f"config-per-user = {per_user}/", f"config-per-group = {per_group}/"]
    with running(kind, workdir, net, users, extra_conf=conf,
                 groups={"alice": "duo", "bob": "duo"},
                 replace={"max-same-clients": "max-same-clients = 1"}) as server:
        got = {user: _admitted(server, net, users, user, 3)
               for user in ("alice", "bob", "dave")}
    assert got == {"alice": [True, True, False], "bob": [True, True, True],
                   "dave": [True, False, False]}, got


# ------------------------------------------------------------------ DEVICE_PLATFORM / _TYPE

SCRIPT_KEYS = ("DEVICE_PLATFORM", "DEVICE_TYPE")


def _env_script(workdir: Path, name: str) -> tuple[Path, Path]:
    """A connect-script that writes its whole environment to ``<dir>/<pid>``."""
    dumps = workdir / f"{name}-env"
    dumps.mkdir(mode=0o777)
    script = workdir / f"{name}.sh"
    script.write_text(f"#!/bin/sh\nenv > {dumps}/$$\nexit 0\n")
    script.chmod(0o755)
    return script, dumps


def _last_env(dumps: Path, before: set[Path]) -> dict[str, str]:
    new = sorted(set(dumps.iterdir()) - before, key=lambda p: p.stat().st_mtime)
    assert new, "the connect-script did not run"
    return dict(line.split("=", 1) for line in new[-1].read_text().splitlines() if "=" in line)


def _device_view(kind: str, workdir: Path, net: TestNet) -> dict[str, object]:
    users = make_accounts(("alice",))
    script, dumps = _env_script(workdir, kind)
    conf = [f"connect-script = {script}", "idle-timeout = 1200", "mobile-idle-timeout = 2400"]
    seen: dict[str, object] = {}
    with running(kind, workdir, net, users, extra_conf=conf) as server:
        for os_name in ("android", "apple-ios", "linux-64", "win"):
            client = Client(net, server.files, link=net.add_client(), name=f"os-{os_name}")
            before = set(dumps.iterdir())
            try:
                assert client.connect("alice", users["alice"], extra_args=[f"--os={os_name}"])
                env = _last_env(dumps, before)
                cstp = client.cstp_headers()
            finally:
                client.close()
            seen[os_name] = ({k: env.get(k) for k in SCRIPT_KEYS},
                             cstp.get("X-CSTP-DPD"), cstp.get("X-CSTP-Idle-Timeout"))
        # the cookie of an android login, used by a linux-64 client: the auth request decides
        client = Client(net, server.files, link=net.add_client(), name="cookie")
        try:
            cookie = client.authenticate("alice", users["alice"],
                                         extra_args=["--os=android"])["COOKIE"]
            before = set(dumps.iterdir())
            assert client.connect_with_cookie(cookie, extra_args=["--os=linux-64"])
            env = _last_env(dumps, before)
            cstp = client.cstp_headers()
        finally:
            client.close()
        seen["cookie"] = ({k: env.get(k) for k in SCRIPT_KEYS}, cstp.get("X-CSTP-DPD"),
                          cstp.get("X-CSTP-Idle-Timeout"))
    return seen


def test_device_platform_and_type_come_from_the_auth_request(net: TestNet,
                                                             workdir: Path) -> None:
    got = {kind: _device_view(kind, workdir, net) for kind in KINDS}
    android = {"DEVICE_PLATFORM": "android", "DEVICE_TYPE": "android"}
    # what ocserv 1.1.6 does: the scripts see the login's identifiers (openconnect sends
    # them only for a mobile --os), mobile-dpd / mobile-idle-timeout follow the CONNECT's
    assert got["ocserv"]["android"] == (android, "1800", "2400"), got
    assert got["ocserv"]["linux-64"] == ({"DEVICE_PLATFORM": "", "DEVICE_TYPE": ""},
                                         "90", "1200"), got
    assert got["ocserv"]["cookie"] == (android, "90", "1200"), got
    assert got["ocgate"] == got["ocserv"], got


# ------------------------------------------------------------------ route-add-cmd / -del-cmd


def _wait_for(check, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return bool(check())


def _route_log(kind: str, workdir: Path, net: TestNet) -> dict[str, object]:
    """What the route commands wrote, with each session's TUN name replaced by DEV."""
    users = make_accounts(("bob", "carol"))
    per_user = workdir / f"{kind}-iroutes"
    per_user.mkdir(mode=0o755)
    (per_user / "bob").write_text("iroute = 198.18.200.0/24\niroute = 198.18.201.0/255.255.255.0\n")
    # the second route is bob's: while he is connected its "ip route add" fails, so carol
    # is refused and her first route is removed again
    (per_user / "carol").write_text("iroute = 198.18.202.0/24\niroute = 198.18.200.0/24\n")
    out = workdir / f"{kind}-routes.log"
    conf = [
        f"config-per-user = {per_user}/",
        f'route-add-cmd = "echo add R=%{{R}} r=%R RI=%{{RI}} D=%{{D}} d=%D >> {out} && '
        f'ip route add %{{R}} dev %{{D}} 2>/dev/null"',
        f'route-del-cmd = "echo del R=%{{R}} RI=%{{RI}} D=%D | tee -a {out} > /dev/null; '
        f'ip route delete %{{R}} dev %{{D}}"',
    ]
    seen: dict[str, object] = {}

    def lines() -> list[str]:
        return out.read_text().splitlines() if out.exists() else []

    with running(kind, workdir, net, users, extra_conf=conf) as server:
        bob = Client(net, server.files, link=net.add_client(), name="bob")
        carol = Client(net, server.files, link=net.add_client(), name="carol")
        try:
            assert bob.connect("bob", users["bob"])
            shown = net.server_ns.run(["ip", "-o", "route", "show", "root",
                                       "198.18.200.0/23"]).stdout.split("\n")
            devs = {line.split(" dev ")[1].split()[0] for line in shown if " dev " in line}
            assert len(devs) == 1, shown
            dev = devs.pop()
            seen["kernel"] = sorted(line.split()[0] for line in shown if line)
            seen["bob up"] = [x.replace(dev, "DEV") for x in lines()]
            carol.connect("carol", users["carol"])
            _wait_for(lambda: not any(u["Username"] == "carol" for u in json.loads(
                server.occtl("-j", "show", "users").stdout)))
            time.sleep(2)  # let a retrying client fail once more, if it does
            carol.close()
            seen["carol"] = sorted({x for x in lines()[2:] if "198.18.202." in x or
                                    "198.18.200." in x})
            seen["carol"] = [x.split(" D=")[0] for x in seen["carol"]]  # her own TUN names
            assert not any(u["Username"] == "carol" for u in json.loads(
                server.occtl("-j", "show", "users").stdout))
            mark = len(lines())
            bob.disconnect()
            assert _wait_for(lambda: len(lines()) >= mark + 2), lines()
            seen["bob down"] = [x.replace(dev, "DEV") for x in lines()[mark:]]
        finally:
            bob.close()
            carol.close()
    return seen


def test_route_commands_run_through_the_shell_with_every_placeholder(net: TestNet,
                                                                      workdir: Path) -> None:
    got = {kind: _route_log(kind, workdir, net) for kind in KINDS}
    add = ("add R=198.18.200.0/255.255.255.0 r=198.18.200.0/255.255.255.0 RI=198.18.200.0/24 "
           "D=DEV d=DEV")
    assert got["ocserv"]["bob up"][0] == add, got
    assert got["ocserv"]["kernel"] == ["198.18.200.0/24", "198.18.201.0/24"], got
    assert len(got["ocserv"]["bob down"]) == 2, got
    assert "del R=198.18.202.0/255.255.255.0 RI=198.18.202.0/24" in got["ocserv"]["carol"], got
    assert got["ocgate"] == got["ocserv"], got


# ------------------------------------------------------------------ IPv6-only pool

POOL6 = "2001:db8:7::/48"


def _ipv6_only_view(kind: str, workdir: Path) -> dict[str, object]:
    users = make_accounts(("alice",))
    script, dumps = _env_script(workdir, f"{kind}-v6")
    with TestNet(ipv6=True) as net:
        no_v4 = {"ipv4-network": "", "ipv4-netmask": "", "route": f"route = {net.route6}",
                 "dns": "dns = 2001:db8:5::53"}
        conf = [f"ipv6-network = {POOL6}", "ipv6-subnet-prefix = 64",
                f"connect-script = {script}"]
        with running(kind, workdir, net, users, extra_conf=conf, replace=no_v4) as server:
            client = Client(net, server.files, name="v6only")
            try:
                assert client.connect("alice", users["alice"], no_dtls=False)
                env = client.env()
                dtls = client.wait_dtls()
                pinged = ping(client.ns, net.inside_ip6, count=3).ok
                script_env = _last_env(dumps, set())
                rows = json.loads(server.occtl("-j", "show", "users").stdout)
            finally:
                client.close()
    return {
        "client": {k: env.get(k) for k in ("INTERNAL_IP4_ADDRESS", "INTERNAL_IP4_NETMASK",
                                           "INTERNAL_IP6_ADDRESS", "INTERNAL_IP6_NETMASK",
                                           "CISCO_IPV6_SPLIT_INC_0_ADDR",
                                           "CISCO_IPV6_SPLIT_INC_0_MASKLEN",
                                           "CISCO_SPLIT_INC")},
        "ping6": pinged,
        "dtls": dtls,
        "script": {k: (script_env[k].split("%")[0] if k in script_env else None)
                   for k in ("IP_LOCAL", "IP_REMOTE", "IPV6_LOCAL", "IPV6_REMOTE",
                             "IPV6_PREFIX")},
        "occtl": [(r.get("IPv4"), r.get("P-t-P IPv4"), r.get("IPv6"),
                   (r.get("P-t-P IPv6") or "").split("%")[0]) for r in rows],
    }


def test_ipv6_only_pool_carries_traffic(workdir: Path) -> None:
    """ipv6-network without ipv4-network: openconnect gets only an IPv6 address, pings the
    inside host over it (DTLS up), and scripts and occtl show no IPv4, on both servers."""
    got = {kind: _ipv6_only_view(kind, workdir) for kind in KINDS}
    assert got["ocserv"]["ping6"] and got["ocserv"]["dtls"], got
    assert got["ocserv"]["client"]["INTERNAL_IP4_ADDRESS"] is None, got
    assert got["ocgate"] == got["ocserv"], got
