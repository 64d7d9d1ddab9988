"""Backup and restore: round trip, relocation, and hostile archives that must change nothing."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance import pki
from appliance.vpn.config import load_config
from appliance.vpn.passwd import load_passwd
from appliance.webui.backup import (
    MAX_ARCHIVE_BYTES,
    PREFIX,
    BackupError,
    make_backup,
    plan_restore,
    read_archive,
)
from tests.support.webui import (
    ALICE,
    UI,
    make_state,
    post,
)


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def archive(members: list[tuple[str, bytes]], manifest: dict | None = None,
            extra: list[tarfile.TarInfo] = ()) -> bytes:  # type: ignore[assignment]
    """Build an archive by hand (also hostile ones)."""
    files = {name[len(PREFIX + "files/"):]: data for name, data in members
             if name.startswith(PREFIX + "files/")}
    manifest = manifest if manifest is not None else {
        "format": "ocgate-backup", "version": 1, "created": "x", "state_root": "",
        "files": {k: hashlib.sha256(v).hexdigest() for k, v in files.items()}}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in [(PREFIX + "manifest.json", json.dumps(manifest).encode()),
                           *members]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info in extra:
            tar.addfile(info)
    return buffer.getvalue()


def members_of(data: bytes) -> list[tuple[str, bytes]]:
    _manifest, files = read_archive(data)
    return [(PREFIX + "files/" + rel, content) for rel, content in files.items()]


def upload(admin, data: bytes):  # noqa: ANN001, ANN201
    return post(admin, "/backup/restore", {"archive": (io.BytesIO(data), "backup.tar.gz")},
                form_page="/backup/", content_type="multipart/form-data")


def download(admin) -> bytes:  # noqa: ANN001
    response = post(admin, "/backup/download", form_page="/backup/")
    assert response.status_code == 200
    assert response.headers["Content-Disposition"].startswith(
        'attachment; filename="ocgate-backup-')
    return response.data


def test_backup_contains_config_users_and_certificates(ui: UI, admin) -> None:
    data = download(admin)
    manifest, files = read_archive(data)
    assert manifest["state_root"] == str(ui.layout.root)
    assert {"ocserv.conf", "ocpasswd", "admin.passwd", "certs/ca-cert.pem",
            "certs/ca-key.pem", "certs/server-cert.pem", "certs/server-key.pem"} <= set(files)
    assert files["certs/server-key.pem"] == ui.layout.server_key.read_bytes()


def test_download_is_post_only(admin) -> None:
    assert admin.get("/backup/download").status_code == 405


def test_restore_round_trip(ui: UI, admin) -> None:
    post(admin, f"/users/{ALICE}/settings", {"routes": "192.168.9.0/24"}, form_page="/users/")
    data = download(admin)
    before = snapshot(ui.layout.root)
    post(admin, f"/users/{ALICE}/delete", {"confirm": ALICE}, form_page="/users/")
    (ui.layout.root / "config-per-user" / "ghost").write_text("route = 10.9.9.0/24\n")
    assert ALICE not in load_passwd(ui.layout.passwd)
    response = upload(admin, data)
    assert response.status_code == 303, response.get_data(as_text=True)
    assert ALICE in load_passwd(ui.layout.passwd)
    assert (ui.layout.root / "config-per-user" / ALICE).read_text().count("192.168.9.0/24")
    assert not (ui.layout.root / "config-per-user" / "ghost").exists()
    after = snapshot(ui.layout.root)
    for rel in ("ocpasswd", "admin.passwd", "certs/server-key.pem", "ocserv.conf"):
        assert after[rel] == before[rel], rel
    assert ui.layout.server_key.stat().st_mode & 0o777 == 0o600
    assert ui.layout.server_cert.stat().st_mode & 0o777 == 0o644
    assert ("reload", None) in ui.vpn.calls
    assert "restored" in admin.get("/backup/").get_data(as_text=True)


def test_restore_into_another_folder_moves_paths(tmp_path: Path) -> None:
    source = make_state(tmp_path / "device-a")
    target = make_state(tmp_path / "device-b")
    plan = plan_restore(make_backup(source), target)
    conf = plan.files["ocserv.conf"].decode()
    assert str(source.root) not in conf and str(target.root) + "/ocpasswd" in conf
    assert plan.notes and plan.users == 1


BAD_ARCHIVES = {
    "traversal": lambda good: archive([(PREFIX + "files/../../../tmp/evil", b"x")]),
    "absolute": lambda good: archive([("/etc/ocgate-evil", b"x")]),
    "outside prefix": lambda good: archive([("elsewhere/ocserv.conf", b"x")]),
    "unknown file": lambda good: archive([*members_of(good),
                                          (PREFIX + "files/../admin.passwd", b"x")]),
    "not allowed name": lambda good: archive([*members_of(good),
                                              (PREFIX + "files/run/ocgate.pid", b"1")]),
    "symlink": lambda good: archive(members_of(good), extra=[_link()]),
    "bad checksum": lambda good: archive(
        [(n, d + b"# tampered\n" if n.endswith("ocpasswd") else d)
         for n, d in members_of(good)],
        manifest=read_archive(good)[0]),
    "no manifest": lambda good: _without_manifest(good),
    "not gzip": lambda good: b"PK\x03\x04 this is a zip",
    "invalid config": lambda good: archive(
        [(n, b"auth = plain[passwd=/x]\nmtu = tiny\n" if n.endswith("ocserv.conf") else d)
         for n, d in members_of(good)]),
    "no admin": lambda good: archive(
        [(n, b"" if n.endswith("admin.passwd") else d) for n, d in members_of(good)]),
    "key mismatch": lambda good: archive(
        [(n, _other_key() if n.endswith("server-key.pem") else d)
         for n, d in members_of(good)]),
    "gzip bomb": lambda good: _bomb(),
}


def _link() -> tarfile.TarInfo:
    info = tarfile.TarInfo(PREFIX + "files/certs/link.pem")
    info.type = tarfile.SYMTYPE
    info.linkname = "/etc/shadow"
    return info


def _without_manifest(good: bytes) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members_of(good):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _other_key() -> bytes:
    return pki.key_pem(pki.generate_key("ec"))


def _bomb() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=9) as tar:
        info = tarfile.TarInfo(PREFIX + "files/ocserv.conf")
        info.size = 64 << 20
        tar.addfile(info, io.BytesIO(b"\0" * info.size))
    assert len(buffer.getvalue()) < MAX_ARCHIVE_BYTES
    return buffer.getvalue()


@pytest.mark.parametrize("case", sorted(BAD_ARCHIVES))
def test_hostile_or_broken_archives_change_nothing(ui: UI, admin, case: str) -> None:
    good = download(admin)
    bad = BAD_ARCHIVES[case](good)
    before = snapshot(ui.layout.root)
    response = upload(admin, bad)
    assert response.status_code == 400, (case, response.get_data(as_text=True)[:500])
    assert "Nothing was changed" in response.get_data(as_text=True)
    assert snapshot(ui.layout.root) == before, case
    assert not Path("/tmp/evil").exists()


def test_oversized_upload_is_refused(ui: UI, admin) -> None:
    before = snapshot(ui.layout.root)
    response = upload(admin, b"\0" * (MAX_ARCHIVE_BYTES + 10))
    assert response.status_code == 413
    assert snapshot(ui.layout.root) == before


def test_restore_without_a_file(admin) -> None:
    response = post(admin, "/backup/restore", {}, form_page="/backup/")
    assert response.status_code == 400 and "Choose a backup file" in response.get_data(
        as_text=True)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=2048))
def test_random_bytes_are_a_clean_backup_error(tmp_path: Path, data: bytes) -> None:
    from appliance.state import StateLayout

    with pytest.raises(BackupError):
        plan_restore(data, StateLayout.at(tmp_path))


def test_restored_config_still_loads(ui: UI) -> None:
    plan = plan_restore(make_backup(ui.layout), ui.layout)
    assert load_config(str(ui.layout.conf)).ipv4_network is not None
    assert plan.users == 1
