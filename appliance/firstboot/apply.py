"""Apply the wizard's plan to the state folder, crash-safely, then hand over.

A power cut during first boot must never leave a device with, say, a new ocserv.conf that
points at a key that was not written yet.  Apply is therefore a small redo log:

1. every new file is written into ``STATE/.apply/`` and fsynced (nothing live changes);
2. ``STATE/.apply/MANIFEST.json`` is written atomically and fsynced: **the commit point**;
3. each file is installed at its final path atomically (temp file, fsync, rename;
   ocserv.conf through :func:`appliance.vpn.config.write_config_atomic`);
4. the ``setup-done`` marker is written (atomically) last, the setup code removed,
   the staging folder deleted.

:func:`recover` runs before anything reads the folder: a staging folder without a manifest
is discarded (the old state stays as it was), one with a manifest is installed again from
the start (every install step is idempotent).  So after any crash plus ``recover`` the
folder holds either the old state or the complete new one.

The hand-over (enable and start the VPN and admin UI units) is a list of commands run by
an injectable runner, so tests and ``make run`` never call systemctl.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..atomicfile import fsync_dir, write_atomic
from ..state import StateLayout
from ..vpn.config import write_config_atomic
from ..vpn.passwd import PasswdEntry, write_passwd_atomic
from .plan import SetupPlan, render_conf
from .setupcode import SetupCodeStore

log = logging.getLogger(__name__)

MANIFEST = "MANIFEST.json"
MARKER_VERSION = 1

Checkpoint = Callable[[str], None]


class ApplyError(RuntimeError):
    """Apply could not finish; the message says what to do."""


class AlreadySetUpError(ApplyError):
    """The device is set up already: a factory reset is needed to run the wizard again."""


@dataclass(frozen=True)
class StagedFile:
    relpath: str
    data: bytes
    mode: int


@dataclass
class ApplyResult:
    files: list[str]
    marker: dict[str, object]
    recovered: str = "none"


# --------------------------------------------------------------------------- low level


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------- the files


def plan_files(plan: SetupPlan, layout: StateLayout) -> list[StagedFile]:
    """Every file apply installs, with its final mode, in install order (marker excluded)."""
    rel = layout.relative
    files = [
        StagedFile(rel(layout.ca_cert), plan.certs.ca_cert_pem, 0o644),
        StagedFile(rel(layout.ca_key), plan.certs.ca_key_pem, 0o600),
        StagedFile(rel(layout.server_cert), plan.certs.server_cert_pem, 0o644),
        StagedFile(rel(layout.server_key), plan.certs.server_key_pem, 0o600),
    ]
    if plan.user.client_cert_pem is not None:
        path = layout.certs_dir / "clients" / f"{plan.user.username}-cert.pem"
        files.append(StagedFile(rel(path), plan.user.client_cert_pem, 0o644))
    files.append(StagedFile(rel(layout.admin_passwd), b"", 0o600))  # placeholder, see below
    files.append(StagedFile(rel(layout.passwd), b"", 0o600))
    if plan.reach is not None:
        files.append(StagedFile(rel(layout.reach_settings), plan.reach.settings.to_json(),
                                0o644))
        if plan.reach.secrets:
            files.append(StagedFile(rel(layout.reach_secrets), json.dumps(
                plan.reach.secrets, indent=1, sort_keys=True).encode() + b"\n", 0o600))
    files.append(StagedFile(rel(layout.conf), render_conf(plan, layout).encode(), 0o600))
    return files


def _passwd_text(entries: list[PasswdEntry], staging: Path, name: str) -> bytes:
    """ocpasswd-format text produced by the passwd module's own writer."""
    target = staging / f".{name}.render"
    write_passwd_atomic(target, entries)
    data = target.read_bytes()
    target.unlink()
    return data


def _fill_passwd(files: list[StagedFile], plan: SetupPlan, layout: StateLayout,
                 staging: Path) -> list[StagedFile]:
    admin = [PasswdEntry(plan.admin.username, ["admin"], plan.admin.password_hash)]
    users = []
    if plan.user.password_hash is not None:
        users.append(PasswdEntry(plan.user.username, [], plan.user.password_hash))
    out = []
    for f in files:
        if f.relpath == layout.relative(layout.admin_passwd):
            f = StagedFile(f.relpath, _passwd_text(admin, staging, "admin"), f.mode)
        elif f.relpath == layout.relative(layout.passwd):
            f = StagedFile(f.relpath, _passwd_text(users, staging, "ocpasswd"), f.mode)
        out.append(f)
    return out


def marker_data(plan: SetupPlan) -> dict[str, object]:
    return {
        "version": MARKER_VERSION,
        "completed_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "admin": plan.admin.username,
        "server": plan.network.server_address,
        "url": plan.url,
        "pin": plan.certs.pin,
        "first_user": plan.user.username,
    }


# --------------------------------------------------------------------------- apply


def _noop(_step: str) -> None:
    return None


def apply_plan(plan: SetupPlan, layout: StateLayout, *,
               checkpoint: Checkpoint = _noop) -> ApplyResult:
    """Write everything ``plan`` describes; see the module docstring for the protocol.

    ``checkpoint(step)`` is called after each durable step; tests use it to kill the
    process there and prove that :func:`recover` restores a consistent folder.
    """
    recovered = recover(layout)
    if layout.is_setup_done():
        raise AlreadySetUpError("this device is already set up; run a factory reset "
                                "(python3 -m appliance.firstboot --factory-reset) first")
    layout.root.mkdir(parents=True, exist_ok=True)
    staging = layout.staging
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(mode=0o700)
    files = _fill_passwd(plan_files(plan, layout), plan, layout, staging)
    entries: list[dict[str, object]] = []
    paths: list[str] = []
    for f in files:
        write_atomic(staging / "files" / f.relpath, f.data, 0o600)
        paths.append(f.relpath)
        entries.append({"path": f.relpath, "mode": f.mode, "sha256": _sha256(f.data)})
        checkpoint(f"stage:{f.relpath}")
    marker = marker_data(plan)
    manifest: dict[str, object] = {"version": MARKER_VERSION, "files": entries, "marker": marker}
    write_atomic(staging / MANIFEST, json.dumps(manifest, indent=1).encode(), 0o600)
    checkpoint("commit")
    _roll_forward(layout, manifest, checkpoint)
    log.info("setup applied: %d files written to %s", len(entries), layout.root)
    return ApplyResult(paths, marker, recovered)


def _load_manifest(layout: StateLayout) -> dict[str, object] | None:
    path = layout.staging / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        # The manifest is written atomically; an unreadable one means the disk is bad.
        raise ApplyError(f"{path} is unreadable ({exc}); the device needs a factory "
                         "reset") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), list):
        raise ApplyError(f"{path} is not a valid apply manifest")
    return manifest


def _install(layout: StateLayout, entry: dict[str, object]) -> None:
    rel = str(entry["path"])
    source = layout.staging / "files" / rel
    data = source.read_bytes()
    if _sha256(data) != entry["sha256"]:
        raise ApplyError(f"staged copy of {rel} is corrupt; the device needs a factory reset")
    target = layout.root / rel
    if Path(rel).is_absolute() or ".." in Path(rel).parts:
        raise ApplyError(f"refusing to install outside the state folder: {rel}")
    if target == layout.conf:
        write_config_atomic(str(target), data.decode("utf-8"))
        os.chmod(target, int(str(entry["mode"])))
    else:
        write_atomic(target, data, int(str(entry["mode"])))


def _roll_forward(layout: StateLayout, manifest: dict[str, object],
                  checkpoint: Checkpoint) -> None:
    files = manifest["files"]
    assert isinstance(files, list)
    # Readable folders: the server's unprivileged workers reach their socket in run/.
    for folder in (layout.certs_dir, layout.run_dir):
        folder.mkdir(parents=True, exist_ok=True)
        os.chmod(folder, 0o755)
    for entry in files:
        _install(layout, entry)
        checkpoint(f"install:{entry['path']}")
    marker = json.dumps(manifest.get("marker", {}), indent=1).encode() + b"\n"
    write_atomic(layout.setup_done, marker, 0o644)
    checkpoint("marker")
    SetupCodeStore(layout.setup_code).invalidate()
    # The manifest goes first: a half-deleted staging folder must never look committed.
    (layout.staging / MANIFEST).unlink()
    fsync_dir(layout.staging)
    shutil.rmtree(layout.staging)
    fsync_dir(layout.root)
    checkpoint("cleanup")


def recover(layout: StateLayout) -> str:
    """Finish or undo an interrupted apply: 'none', 'rolled-back' or 'rolled-forward'."""
    if not layout.staging.exists():
        return "none"
    manifest = _load_manifest(layout)
    if manifest is None:
        log.warning("discarding an unfinished apply in %s (crash before commit)",
                    layout.staging)
        shutil.rmtree(layout.staging)
        fsync_dir(layout.root)
        return "rolled-back"
    log.warning("completing an interrupted apply from %s", layout.staging)
    _roll_forward(layout, manifest, _noop)
    return "rolled-forward"


# --------------------------------------------------------------------------- hand-over


@dataclass(frozen=True)
class Units:
    """systemd units of the appliance (their files live in systemd/ of the image)."""

    vpn: str = "ocgate-vpn.service"
    reach: str = "ocgate-reach.service"
    webui: str = "ocgate-webui.service"
    wizard: str = "ocgate-firstboot.service"


def handover_commands(units: Units = Units()) -> list[list[str]]:
    """Right after apply: the VPN comes up, then the reachability service (it reads the
    reach.json apply just wrote, and TLS-ALPN-01 needs the VPN listening); the next boot
    starts the admin UI, not us."""
    return [
        ["systemctl", "enable", "--now", units.vpn],
        ["systemctl", "enable", "--now", units.reach],
        ["systemctl", "enable", units.webui],
        ["systemctl", "disable", units.wizard],
    ]


def switch_commands(units: Units = Units()) -> list[list[str]]:
    """When the user leaves the final page: the admin UI replaces the wizard now.

    ``--no-block`` because the admin UI unit declares ``Conflicts=`` with the wizard
    unit, so systemd stops this very process; we must not wait for that.
    """
    return [["systemctl", "start", "--no-block", units.webui]]


def factory_reset_commands(units: Units = Units()) -> list[list[str]]:
    """The reachability service first: stopping it removes its mappings from the router
    while it still knows them."""
    return [
        ["systemctl", "disable", "--now", units.reach],
        ["systemctl", "disable", "--now", units.vpn],
        ["systemctl", "disable", units.webui],
        ["systemctl", "enable", units.wizard],
    ]


@dataclass
class CommandResult:
    argv: list[str]
    ok: bool
    output: str = ""


Runner = Callable[[Sequence[str]], CommandResult]


def subprocess_runner(argv: Sequence[str]) -> CommandResult:
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=60,
                              check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return CommandResult(list(argv), False, str(exc))
    return CommandResult(list(argv), proc.returncode == 0,
                         (proc.stdout + proc.stderr).strip())


def logging_runner(argv: Sequence[str]) -> CommandResult:
    """For development and tests: say what would run, run nothing."""
    log.info("hand-over (not run): %s", " ".join(argv))
    return CommandResult(list(argv), True, "not run")


@dataclass
class Handover:
    """Runs a command list and remembers what happened (shown on the final page)."""

    runner: Runner = logging_runner
    results: list[CommandResult] = field(default_factory=list)

    def run(self, commands: list[list[str]]) -> list[CommandResult]:
        out = []
        for argv in commands:
            result = self.runner(argv)
            if not result.ok:
                log.error("hand-over step failed: %s: %s", " ".join(argv), result.output)
            out.append(result)
        self.results += out
        return out


# --------------------------------------------------------------------------- reset


def factory_reset(layout: StateLayout) -> list[str]:
    """Delete configuration, credentials, keys and the marker; returns what was removed.

    The next start of the wizard makes a new setup code.  The run/ folder and anything
    unknown are left alone.
    """
    removed = []
    targets = [layout.setup_done, layout.conf, Path(str(layout.conf) + ".bak"),
               layout.passwd, layout.admin_passwd, layout.staging, layout.certs_dir,
               layout.setup_code, layout.reach_settings, layout.reach_secrets,
               layout.reach_status]
    for path in targets:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
            removed.append(str(path))
        elif path.exists() or path.is_symlink():
            path.unlink()
            removed.append(str(path))
    if layout.root.exists():
        fsync_dir(layout.root)
    return removed
