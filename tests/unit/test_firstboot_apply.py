"""Apply: the files it writes, and crash safety proven by killing it at every step."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import signal
import stat
from pathlib import Path

import pytest

from appliance.firstboot.apply import (
    AlreadySetUpError,
    ApplyError,
    Handover,
    apply_plan,
    factory_reset,
    factory_reset_commands,
    handover_commands,
    recover,
    switch_commands,
)
from appliance.firstboot.certs import make_certificates, make_client
from appliance.firstboot.plan import (
    AdminAccount,
    FirstUser,
    NetworkChoice,
    SetupPlan,
    SubnetChoice,
    render_conf,
)
from appliance.firstboot.setupcode import SetupCodeStore
from appliance.state import StateLayout
from appliance.vpn.config import load_config
from appliance.vpn.passwd import hash_password, load_passwd, verify_password

OLD_CONF = 'auth = "plain[passwd=/old/ocpasswd]"\nipv4-network = 198.18.2.0/24\n'


@pytest.fixture(scope="module")
def plan() -> SetupPlan:
    certs = make_certificates("box", ["vpn.example.net"], ["198.18.2.10"])
    user = make_client(certs, "bob")
    user.password_hash = hash_password("violet Ocean lantern 42")
    return SetupPlan(
        admin=AdminAccount("admin", hash_password("quiet Harbor lantern 73")),
        network=NetworkChoice("vpn.example.net", ["vpn.example.net"], ["198.18.2.10"]),
        subnet=SubnetChoice(ipaddress.ip_network("10.73.0.0/24"),
                            ipaddress.ip_network("fd12:3456:789a::/64"), False,
                            [ipaddress.ip_network("198.18.2.0/24")], ["198.18.2.1"]),
        certs=certs,
        user=user,
    )


def old_state(root: Path) -> StateLayout:
    """A folder as ``make run`` left it before: a config but no setup marker."""
    layout = StateLayout.at(root)
    layout.root.mkdir()
    layout.conf.write_text(OLD_CONF)
    layout.passwd.write_text("old:*:$5$x$y\n")
    SetupCodeStore(layout.setup_code).ensure()
    return layout


def snapshot(layout: StateLayout) -> dict[str, object]:
    """Every file (content normalised for paths and timestamps); .bak and run/ ignored."""
    out: dict[str, object] = {}
    for path in sorted(layout.root.rglob("*")):
        rel = str(path.relative_to(layout.root))
        if path.is_dir() or rel.endswith(".bak") or rel.startswith("run/"):
            continue
        data = path.read_bytes()
        if path == layout.setup_done:
            marker = json.loads(data)
            marker.pop("completed_at")
            out[rel] = marker
            continue
        text = data.decode("utf-8", "replace").replace(str(layout.root), "ROOT")
        if path == layout.conf:
            text = re.sub(r"^# OCGate configuration, written.*$", "", text, flags=re.M)
        if rel.startswith("boot/"):
            text = "setup code"
        out[rel] = (text, stat.S_IMODE(path.stat().st_mode))
    return out


def all_steps(plan: SetupPlan, root: Path) -> tuple[list[str], dict[str, object]]:
    steps: list[str] = []
    layout = old_state(root)
    apply_plan(plan, layout, checkpoint=steps.append)
    return steps, snapshot(layout)


def test_apply_writes_a_complete_valid_state(plan: SetupPlan, tmp_path: Path) -> None:
    layout = old_state(tmp_path / "s")
    result = apply_plan(plan, layout)
    assert layout.is_setup_done() and not layout.staging.exists()
    assert not layout.setup_code.exists()
    cfg = load_config(str(layout.conf))
    assert str(cfg.ipv4_network) == "10.73.0.0/24" and str(cfg.ipv6_network) == \
        "fd12:3456:789a::/64"
    assert [str(r) for r in cfg.route] == ["198.18.2.0/24"] and cfg.dns == ["198.18.2.1"]
    assert cfg.isolate_workers and cfg.max_clients == 64 and cfg.tcp_port == 443
    assert cfg.ca_cert == str(layout.ca_cert) and cfg.cert_user_oid
    assert (layout.root / "ocserv.conf.bak").read_text() == OLD_CONF
    assert verify_password(load_passwd(layout.passwd)["bob"], "violet Ocean lantern 42")
    admin = load_passwd(layout.admin_passwd)["admin"]
    assert admin.groups == ["admin"] and verify_password(admin, "quiet Harbor lantern 73")
    modes = {p: stat.S_IMODE(p.stat().st_mode) for p in
             (layout.conf, layout.passwd, layout.admin_passwd, layout.ca_key,
              layout.server_key, layout.ca_cert, layout.server_cert)}
    assert all(m == 0o600 for p, m in modes.items() if "cert.pem" not in p.name), modes
    assert modes[layout.ca_cert] == modes[layout.server_cert] == 0o644
    assert (layout.certs_dir / "clients" / "bob-cert.pem").exists()
    assert not any(p.suffix == ".p12" for p in layout.root.rglob("*"))  # never on disk
    marker = json.loads(layout.setup_done.read_text())
    assert marker["pin"] == plan.certs.pin and marker["first_user"] == "bob"
    assert result.files[-1] == "ocserv.conf"
    with pytest.raises(AlreadySetUpError):
        apply_plan(plan, layout)


def test_conf_renders_through_the_config_module(plan: SetupPlan, tmp_path: Path) -> None:
    text = render_conf(plan, StateLayout.at(tmp_path))
    assert "route = 198.18.2.0/24" in text and "tunnel-all-dns" not in text
    full = SetupPlan(plan.admin, plan.network, SubnetChoice(
        ipaddress.ip_network("10.73.0.0/29"), dns=[]), plan.certs,
        FirstUser("x", "password", "h"))
    text = render_conf(full, StateLayout.at(tmp_path))
    assert "route = default" in text and "max-clients = 5" in text
    assert "enable-auth" not in text and not re.search(r"^dns =", text, re.M)


def _run_and_kill(plan: SetupPlan, layout: StateLayout, step: str) -> int:
    """Fork; the child applies and SIGKILLs itself right after ``step``; returns the signal."""
    pid = os.fork()
    if pid == 0:  # child: no cleanup handlers may run, exactly like a power cut
        def die(name: str) -> None:
            if name == step:
                os.kill(os.getpid(), signal.SIGKILL)
        try:
            apply_plan(plan, layout, checkpoint=die)
        finally:
            os._exit(7)
    _pid, status = os.waitpid(pid, 0)
    return os.WTERMSIG(status) if os.WIFSIGNALED(status) else -os.WEXITSTATUS(status)


def test_a_crash_at_any_step_leaves_old_or_complete_new_state(plan: SetupPlan,
                                                              tmp_path: Path) -> None:
    steps, new = all_steps(plan, tmp_path / "reference")
    assert steps[0].startswith("stage:") and "commit" in steps and steps[-1] == "cleanup"
    assert any(s.startswith("install:") for s in steps) and len(steps) >= 15
    for i, step in enumerate(steps):
        layout = old_state(tmp_path / f"crash{i}")
        old = snapshot(layout)
        assert _run_and_kill(plan, layout, step) == signal.SIGKILL, step
        if layout.is_setup_done():  # the marker is written only once everything is there
            files = {k: v for k, v in snapshot(layout).items() if k in new}
            assert files == new, step
        outcome = recover(layout)
        after = snapshot(layout)
        committed = steps.index(step) >= steps.index("commit")
        assert after == (new if committed else old), step
        assert outcome in (("rolled-forward", "none") if committed else ("rolled-back",))
        assert not layout.staging.exists()
        if not committed:  # a second run after the crash completes the setup
            apply_plan(plan, layout)
            assert snapshot(layout) == new, step


def test_recover_without_staging_does_nothing(tmp_path: Path) -> None:
    layout = old_state(tmp_path / "s")
    before = snapshot(layout)
    assert recover(layout) == "none" and snapshot(layout) == before


def test_corrupt_staged_file_stops_recovery(plan: SetupPlan, tmp_path: Path) -> None:
    layout = old_state(tmp_path / "s")
    assert _run_and_kill(plan, layout, "commit") == signal.SIGKILL
    staged = layout.staging / "files" / "certs" / "server-key.pem"
    staged.write_bytes(b"garbage")
    with pytest.raises(ApplyError, match="corrupt"):
        recover(layout)


def test_factory_reset_returns_to_first_boot(plan: SetupPlan, tmp_path: Path) -> None:
    layout = old_state(tmp_path / "s")
    apply_plan(plan, layout)
    (layout.run_dir / "keep.sock").write_text("")
    removed = factory_reset(layout)
    assert not layout.is_setup_done() and not layout.conf.exists()
    assert not layout.certs_dir.exists() and not layout.admin_passwd.exists()
    assert (layout.run_dir / "keep.sock").exists() and len(removed) >= 6
    assert factory_reset(layout) == []


def test_handover_commands_run_through_the_injected_runner() -> None:
    seen: list[list[str]] = []

    def runner(argv):  # noqa: ANN001, ANN202
        seen.append(list(argv))
        from appliance.firstboot.apply import CommandResult
        return CommandResult(list(argv), argv[1] != "disable", "boom")

    handover = Handover(runner)
    results = handover.run(handover_commands())
    assert seen == [["systemctl", "enable", "--now", "ocgate-vpn.service"],
                    ["systemctl", "enable", "--now", "ocgate-reach.service"],
                    ["systemctl", "enable", "ocgate-webui.service"],
                    ["systemctl", "disable", "ocgate-firstboot.service"]]
    assert [r.ok for r in results] == [True, True, True, False]
    assert switch_commands() == [["systemctl", "start", "--no-block", "ocgate-webui.service"]]
    reset = factory_reset_commands()
    assert ["systemctl", "enable", "ocgate-firstboot.service"] in reset
    # stopping the reachability service is what removes its mappings from the router, so it
    # goes before anything else (and before the files are deleted)
    assert reset[0] == ["systemctl", "disable", "--now", "ocgate-reach.service"]
