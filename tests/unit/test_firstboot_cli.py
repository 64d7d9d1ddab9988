"""`python3 -m appliance.firstboot`: factory reset, already-set-up start, the service."""

from __future__ import annotations

import http.client
import io
import ipaddress
import json
import time
from pathlib import Path

import pytest

from appliance.firstboot import __main__ as cli
from appliance.firstboot.apply import CommandResult
from appliance.firstboot.network import InterfaceAddress, NetworkInfo
from appliance.firstboot.service import WizardOptions, WizardService, run_factory_reset
from appliance.state import StateLayout


def done_state(root: Path) -> StateLayout:
    layout = StateLayout.at(root)
    layout.certs_dir.mkdir(parents=True)
    layout.conf.write_text("x\n")
    layout.passwd.write_text("")
    layout.admin_passwd.write_text("")
    layout.server_key.write_text("k")
    layout.setup_done.write_text(json.dumps({"version": 1}))
    return layout


def test_factory_reset_asks_first(tmp_path: Path) -> None:
    layout = done_state(tmp_path / "s")
    options = WizardOptions(state=layout.root, handover="none")
    out = io.StringIO()
    assert run_factory_reset(options, assume_yes=False, ask=lambda _q: "no", out=out) == 1
    assert layout.is_setup_done() and "Nothing was changed" in out.getvalue()

    def eof(_q: str) -> str:
        raise EOFError

    assert run_factory_reset(options, assume_yes=False, ask=eof, out=out) == 1
    assert run_factory_reset(options, assume_yes=False, ask=lambda _q: "RESET", out=out) == 0
    assert not layout.is_setup_done() and not layout.server_key.exists()


def test_factory_reset_cli_with_yes_and_systemd_runner(tmp_path: Path) -> None:
    layout = done_state(tmp_path / "s")
    ran: list[list[str]] = []
    options = WizardOptions(state=layout.root)

    def runner(argv):  # noqa: ANN001, ANN202
        ran.append(list(argv))
        return CommandResult(list(argv), True)

    assert run_factory_reset(options, assume_yes=True, out=io.StringIO(), runner=runner) == 0
    assert ["systemctl", "disable", "--now", "ocgate-vpn.service"] in ran
    assert cli.main(["--factory-reset", "--yes", "--handover", "none", "--state",
                     str(layout.root)]) == 0


def test_start_on_a_set_up_device_only_hands_over(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    layout = done_state(tmp_path / "s")
    assert cli.main(["--state", str(layout.root), "--handover", "none", "--no-mdns"]) == 0
    assert "--factory-reset" in capsys.readouterr().out


def test_parser_defaults() -> None:
    args = cli.build_parser().parse_args([])
    assert args.port == 80 and args.subnet_policy == "home" and args.handover == "systemd"
    assert str(args.state) == "/var/lib/ocgate"


def fake_probe() -> NetworkInfo:
    return NetworkInfo(addresses=[InterfaceAddress(
        "eth0", ipaddress.ip_interface("198.18.2.10/24"))], hostname="box")


def test_service_serves_prints_the_code_and_lingers_out(tmp_path: Path) -> None:
    options = WizardOptions(state=tmp_path / "s", hosts=["127.0.0.1"], port=0, mdns=False,
                            handover="none", linger=0.2)
    finished: list[bool] = []
    service = WizardService(options, probe=fake_probe, on_finish=lambda: finished.append(True))
    out = io.StringIO()
    service.start()
    try:
        assert service.server is not None
        port = service.server.port
        service.options.port = port
        service.banner(out)
        text = out.getvalue()
        assert service.code and service.code in text
        assert str(service.layout.setup_code) in text
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/anything", headers={"Host": "127.0.0.1"})
        response = conn.getresponse()
        assert response.status == 302 and response.getheader("Location") == "/setup/"
        conn.close()
        service.applied_at = time.monotonic() - 1  # as if apply had just finished
        service.wait()
        assert finished == [True] and service.ctx.finished.is_set()
    finally:
        service.stop()
    assert service.server is None
