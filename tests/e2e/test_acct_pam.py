"""Issue #17: ``acct = pam`` as ocserv 1.1.6 does it (acct/pam.c): when a session opens
(its first CONNECT, after whatever method logged the user in), PAM's account stack of the
``ocserv`` service must accept the user, or the session is refused.

The stack is real: ``pam_exec`` runs a script that records each call and refuses carol.
It is not written into the host's /etc/pam.d: the server namespace gets
/etc/netns/<ns>/pam.d, which ``ip netns exec`` binds over /etc/pam.d for the server only.
Both servers run the same stack.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.harness import server_command
from tests.support.netns import Netns, TestNet
from tests.support.rig import Clients, Rig

RECORDER = """#!/bin/sh
# pam_exec in the account stack: one line per call; carol's account is refused
echo "$PAM_TYPE $PAM_SERVICE $PAM_USER" >> {log}
[ "$PAM_USER" != carol ]
"""


def private_pam_stack(ns: Netns, workdir: Path) -> Path:
    """/etc/pam.d for processes of ``ns`` with our ``ocserv`` service; the record file."""
    log = workdir / "pam-acct.log"
    log.touch()
    script = workdir / "pam-acct-record.sh"
    script.write_text(RECORDER.format(log=log))
    script.chmod(0o700)
    pam_dir = ns.etc_dir / "pam.d"
    for _ in range(5):  # another test may remove an empty /etc/netns meanwhile
        try:
            shutil.copytree("/etc/pam.d", pam_dir, dirs_exist_ok=True)
            break
        except FileNotFoundError:
            continue
    (pam_dir / "ocserv").write_text(
        "# written by tests/e2e/test_acct_pam.py\n"
        "auth     required pam_deny.so\n"
        f"account  required pam_exec.so quiet {script}\n"
        "session  required pam_permit.so\n")
    return log


def calls(log: Path) -> list[str]:
    return log.read_text().splitlines()


@pytest.mark.parametrize("kind", ["ocserv", "ocgate"])
def test_acct_pam_checks_the_account_when_the_session_opens(
        kind: str, net: TestNet, workdir: Path, make_rig: Callable[..., Rig],
        clients: Clients, accounts: dict[str, str]) -> None:
    log = private_pam_stack(net.server_ns, workdir)
    rig = make_rig(kind, command=server_command(kind), net=net, workdir=workdir,
                   extra_conf=["acct = pam"])

    # a login alone (plain passwords) opens no session: PAM is not asked yet
    bob = clients.new(rig, "bob")
    cookie = bob.authenticate("bob", accounts["bob"])["COOKIE"]
    assert calls(log) == []
    assert bob.connect_with_cookie(cookie), bob.log
    assert calls(log) == ["account ocserv bob"]

    alice = clients.new(rig, "alice", new_link=True)
    assert alice.connect("alice", accounts["alice"]), alice.log
    assert calls(log) == ["account ocserv bob", "account ocserv alice"]
    assert sorted(u["Username"] for u in rig.users()) == ["alice", "bob"]

    # carol's password is right, her account is refused: no session
    carol = clients.new(rig, "carol")
    assert not carol.connect("carol", accounts["carol"])
    assert calls(log)[-1] == "account ocserv carol"
    assert sorted(u["Username"] for u in rig.users()) == ["alice", "bob"]
    if kind == "ocgate":  # ocserv's acct module writes to syslog only
        assert "acct=pam refused user 'carol'" in rig.server.log, rig.server.log
    assert bob.disconnect() == 0 and alice.disconnect() == 0
    rig.server.assert_running()
