"""``make run`` on a fresh state folder: wizard first, then the VPN server it configured.

devrun runs in the server namespace (wizard on port 80 of the namespace's link address,
no mDNS, documentation subnets); a form client in the client namespace completes the
wizard; devrun must then start the VPN server, which a real openconnect client uses.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance import pki
from appliance.state import StateLayout
from tests.support import harness
from tests.support.netns import INSIDE_DNS, TestNet

USER, PASSWORD = "carol", "amber Falcon river 58 tundra"


def _wait_for(predicate, timeout: float, what: str, log: Path) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen:\n{log.read_text(errors='replace')}")
        time.sleep(0.1)


@pytest.fixture
def devrun(net: TestNet, workdir: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    device = net.server_ns
    device.etc_dir.mkdir(parents=True, exist_ok=True)
    (device.etc_dir / "resolv.conf").write_text(f"nameserver {INSIDE_DNS}\n")
    log = workdir / "devrun.log"
    argv = [sys.executable, "-u", "-m", "appliance.devrun", "--state", str(workdir / "state"),
            "--wizard-host", net.server_ip, "--no-mdns", "--subnet-policy", "documentation"]
    env = dict(os.environ, PYTHONPATH=str(harness.REPO_ROOT))
    with log.open("wb") as out:
        proc = device.popen(argv, stdout=out, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, cwd=harness.REPO_ROOT, env=env)
    try:
        yield proc, log
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def test_make_run_runs_the_wizard_then_the_vpn_server(
    net: TestNet, workdir: Path, devrun: tuple[subprocess.Popen[bytes], Path],
) -> None:
    proc, log = devrun
    layout = StateLayout.at(workdir / "state")
    _wait_for(lambda: net.server_ns.tcp_listening(80), 20, "wizard start", log)
    code = layout.setup_code.read_text().split()[-1]
    # The banner follows the listening socket: wait for it rather than race it.
    _wait_for(lambda: code in log.read_text(), 20, "setup code on the console", log)
    assert not net.server_ns.tcp_listening(443)  # no VPN before setup

    env = dict(os.environ, PYTHONPATH=str(harness.REPO_ROOT))
    result = net.client_ns.run(
        [sys.executable, "-m", "tests.browser.formclient", f"http://{net.server_ip}/", code,
         USER, PASSWORD, "203.0.113.128/26"],
        check=False, timeout=60, cwd=harness.REPO_ROOT, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    pin = result.stdout.split("DONE ", 1)[1].split()[0]
    assert pin == pki.pin_sha256(pki.load_cert(layout.server_cert))

    _wait_for(lambda: net.server_ns.tcp_listening(443), 20, "VPN server start", log)
    _wait_for(lambda: "keeps running" in log.read_text(), 15, "wizard exit", log)
    assert f"openconnect --servercert {pin} -u {USER}" in log.read_text()
    assert not net.server_ns.tcp_listening(80)  # Finish closed the wizard

    files = harness.ServerFiles(
        dir=workdir, conf=layout.conf, cert=layout.server_cert, key=layout.server_key,
        ca=layout.ca_cert, ca_key=layout.ca_key, passwd=layout.passwd, pin=pin, sha1="",
        device="vpns", users={USER: PASSWORD}, socket_file=layout.socket_file,
        occtl_socket=layout.occtl_socket, pid_file=layout.pid_file)
    client = harness.Client(net, files, name="devrun-client")
    try:
        assert client.connect(USER, PASSWORD), client.log
        assert client.address().startswith("203.0.113.1")
        assert harness.ping(net.client_ns, net.inside_ip).ok
    finally:
        client.close()
    proc.send_signal(signal.SIGINT)
    proc.wait(15)
    _wait_for(lambda: not net.server_ns.tcp_listening(443), 10, "VPN server stop", log)
