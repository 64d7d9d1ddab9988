"""The admin UI's update page with the real ``rauc`` behind it (file-backed slots).

Upload (the request body, as update.js sends it), RAUC's check with version and signer on
the page, refusal of a bundle signed by another CA, install with progress, the reboot
request, and the banner after a rollback.  The browser side (progress bar, the script)
is tested in tests/browser/test_webui_update.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from appliance.update.bootenv import BootEnv
from appliance.update.history import ROLLED_BACK, History, Outcome
from appliance.webui.updates import CHUNK_BYTES, Updates
from tests.support.rauc import RaucDevice, make_bundle, mk, require_rauc, small_rootfs
from tests.support.webui import UI, build_ui, sign_in, token


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    require_rauc()
    base = tmp_path_factory.mktemp("keys")
    return {"ours": mk.ensure_signing_keys(base / "ours"),
            "theirs": mk.ensure_signing_keys(base / "theirs", name="Somebody else")}


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory,
            keys: dict[str, object]) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("bundles")
    rootfs = small_rootfs(base)
    return {"ours": make_bundle(base, rootfs, keys["ours"], fmt="plain", name="o.raucb"),
            "theirs": make_bundle(base, rootfs, keys["theirs"], fmt="verity",
                                  name="t.raucb")}


@pytest.fixture
def device(tmp_path: Path, keys: dict[str, object],
           monkeypatch: pytest.MonkeyPatch) -> Iterator[RaucDevice]:
    with RaucDevice(tmp_path / "dev", keys["ours"].ca_cert) as dev:  # type: ignore[attr-defined]
        for name in ("DBUS_SESSION_BUS_ADDRESS", "DBUS_STARTER_BUS_TYPE"):
            monkeypatch.setenv(name, dev.env[name])
        yield dev


@pytest.fixture
def setup(tmp_path: Path, device: RaucDevice) -> tuple[UI, FlaskClient, list[str]]:
    ui = build_ui(tmp_path / "state")
    release = tmp_path / "release"
    release.write_text("1.0\n")
    reboots: list[str] = []
    ui.ctx.updates = Updates(ui.layout, conf=device.conf, cmdline=device.cmdline,
                             release_file=release, reboot=lambda: reboots.append("reboot"),
                             reboot_delay=0.0)
    client = ui.client()
    assert sign_in(client).status_code == 303
    return ui, client, reboots


def upload(client: FlaskClient, bundle: Path) -> tuple[int, dict[str, object]]:
    """As update.js does: pieces at their offsets, then the check."""
    headers = {"X-CSRF-Token": token(client, "/update/"),
               "Content-Type": "application/octet-stream"}
    data = bundle.read_bytes()
    for offset in range(0, len(data), CHUNK_BYTES):
        piece = client.post(f"/update/upload?offset={offset}",
                            data=data[offset:offset + CHUNK_BYTES], headers=headers)
        assert piece.status_code == 200, piece.get_json()
        assert piece.get_json()["received"] == min(len(data), offset + CHUNK_BYTES)
    answer = client.post("/update/check", headers=headers)
    return answer.status_code, answer.get_json()


def test_pieces_out_of_order_are_refused(setup: tuple[UI, FlaskClient, list[str]]) -> None:
    ui, client, _ = setup
    headers = {"X-CSRF-Token": token(client, "/update/")}
    assert client.post("/update/upload?offset=0", data=b"x" * 10,
                       headers=headers).status_code == 200
    skipped = client.post("/update/upload?offset=20", data=b"y", headers=headers)
    assert skipped.status_code == 400 and "interrupted" in skipped.get_json()["error"]
    too_big = client.post("/update/upload?offset=10", data=b"z" * (CHUNK_BYTES + 1),
                          headers=headers)
    assert too_big.status_code in (400, 413)
    assert client.post("/update/upload?offset=x", headers=headers).status_code == 400
    empty = client.post("/update/check", headers={"X-CSRF-Token": token(client, "/update/"),
                                                  "Content-Type": "text/plain"})
    assert ui.ctx.updates is not None
    assert empty.status_code == 400  # 10 bytes of "x": RAUC refuses them, the file goes
    assert not ui.ctx.updates.upload_file.exists() and not ui.ctx.updates.part_file.exists()


def test_page_shows_release_and_slot(setup: tuple[UI, FlaskClient, list[str]]) -> None:
    _ui, client, _ = setup
    page = client.get("/update/").get_data(as_text=True)
    assert '<dd id="release">1.0</dd>' in page and '<dd id="slot">A</dd>' in page
    assert 'href="/update/"' in client.get("/").get_data(as_text=True)  # in the navigation


def test_foreign_bundle_is_refused_and_deleted(
        setup: tuple[UI, FlaskClient, list[str]], device: RaucDevice,
        bundles: dict[str, Path]) -> None:
    ui, client, _ = setup
    status, answer = upload(client, bundles["theirs"])
    assert status == 400 and not answer["ok"]
    assert "signature" in str(answer["error"])
    assert ui.ctx.updates is not None and not ui.ctx.updates.upload_file.exists()
    assert 'id="ready"' not in client.get("/update/").get_data(as_text=True)


def test_upload_check_install_reboot(setup: tuple[UI, FlaskClient, list[str]],
                                     device: RaucDevice, bundles: dict[str, Path]) -> None:
    ui, client, reboots = setup
    status, answer = upload(client, bundles["ours"])
    assert status == 200 and answer["ok"] and answer["version"] == "2.0"
    page = client.get("/update/").get_data(as_text=True)
    assert '<dd id="bundle-version">2.0</dd>' in page
    assert "OCGate updates signer" in page
    slot_b_before = device.slot_b.read_bytes()[:64]
    answer_install = client.post("/update/install",
                                 data={"csrf_token": token(client, "/update/")})
    assert answer_install.status_code == 303
    deadline = time.monotonic() + 60
    while (progress := client.get("/update/progress").get_json())["state"] == "installing":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert progress["state"] == "done" and progress["percent"] == 100, progress
    deadline = time.monotonic() + 10
    while not reboots and time.monotonic() < deadline:
        time.sleep(0.05)
    assert reboots == ["reboot"]
    assert device.slot_b.read_bytes()[:64] != slot_b_before
    assert BootEnv.parse(device.bootenv.read_text()).primary() == "B"
    pending = History(ui.layout.root / "update").pending()
    assert pending is not None and pending.version == "2.0" and pending.slot == "B"
    assert 'id="pending"' in client.get("/update/").get_data(as_text=True)


def test_rolled_back_update_is_reported(setup: tuple[UI, FlaskClient, list[str]]) -> None:
    ui, client, _ = setup
    History(ui.layout.root / "update").finish(Outcome(ROLLED_BACK, "2.0", "B", "1.0", "A",
                                                      time.time()))
    page = client.get("/update/").get_data(as_text=True)
    assert 'id="rolled-back"' in page and "2.0" in page and "1.0" in page
