"""One-file backup of the appliance (config, users, certificates) and a careful restore.

The archive is a gzip'd tar with a fixed shape::

    ocgate-backup/manifest.json          format, version, state folder, sha256 per file
    ocgate-backup/files/ocserv.conf      ... every file relative to the state folder

A restore file comes from the network and is treated as hostile until proven otherwise:
its size, member count, unpacked size and every member name are checked (no absolute
paths, no '..', no links or devices, only names from a fixed list of places), checksums
must match the manifest, and the content must validate (the configuration parses, the
password files parse, certificates and the key load and belong together).  Only then is
anything on disk replaced, file by file atomically, the configuration last.  Paths inside
ocserv.conf that point into the old state folder are moved to this one, so a backup from
another device (or folder) restores cleanly.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import logging
import re
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from flask_babel import gettext as _

from ..atomicfile import write_atomic
from ..state import StateLayout
from ..vpn.config import ConfigError, parse_config, parse_user_config, write_config_atomic
from ..vpn.passwd import parse_passwd
from ..web.l10n import format_bytes
from .clientcerts import ClientCertError, parse_issued
from .totp import TotpError, parse_records

log = logging.getLogger(__name__)

FORMAT = "ocgate-backup"
VERSION = 1
PREFIX = "ocgate-backup/"
MAX_ARCHIVE_BYTES = 1 << 20  # the upload itself
MAX_MEMBER_BYTES = 1 << 20
MAX_TOTAL_BYTES = 8 << 20  # unpacked: a gzip bomb stops here
MAX_MEMBERS = 512
SETTINGS_DIR = "config-per-user"

_NAME = r"[A-Za-z0-9][A-Za-z0-9._@-]{0,127}"
ALLOWED = re.compile(
    rf"(ocserv\.conf|ocpasswd|admin\.passwd|admin-totp\.json|client-certs\.json"
    rf"|certs/{_NAME}|certs/clients/{_NAME}"
    rf"|{SETTINGS_DIR}/{_NAME})\Z")
KEY_FILES = re.compile(r".*key.*\.pem\Z")
CRL_FILES = re.compile(r"(.*/)?crl[^/]*\.pem\Z")


class BackupError(ValueError):
    """The archive is unusable; the message says why (shown to the admin)."""


@dataclass
class RestorePlan:
    """A validated archive, ready to install."""

    files: dict[str, bytes]
    created: str
    source_root: str
    users: int
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- backup


def _collect(layout: StateLayout) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for path in (layout.conf, layout.passwd, layout.admin_passwd, layout.admin_totp,
                 layout.client_certs):
        if path.is_file():
            files[layout.relative(path)] = path.read_bytes()
    for folder in (layout.certs_dir, layout.certs_dir / "clients",
                   layout.root / SETTINGS_DIR):
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            rel = layout.relative(path)
            if path.is_file() and not path.is_symlink() and ALLOWED.match(rel):
                files[rel] = path.read_bytes()
    return files


def make_backup(layout: StateLayout, now: datetime.datetime | None = None) -> bytes:
    """The archive bytes (a few KiB: keys, certificates and text files)."""
    stamp = (now or datetime.datetime.now(datetime.UTC)).isoformat(timespec="seconds")
    files = _collect(layout)
    manifest = {"format": FORMAT, "version": VERSION, "created": stamp,
                "state_root": str(layout.root),
                "files": {rel: hashlib.sha256(data).hexdigest() for rel, data in files.items()}}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=9) as tar:
        _add(tar, PREFIX + "manifest.json", json.dumps(manifest, indent=1).encode())
        for rel, data in files.items():
            _add(tar, PREFIX + "files/" + rel, data)
    return buffer.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o600
    info.mtime = 0
    tar.addfile(info, io.BytesIO(data))


# --------------------------------------------------------------------------- reading


def _safe_member_name(name: str) -> str:
    """The path below ``ocgate-backup/``; refuses anything that could land elsewhere."""
    if "\\" in name or "\x00" in name or name.startswith("/"):
        raise BackupError(_("Refusing archive member '%(name)s' (unsafe name).",
                            name=name[:80]))
    parts = name.split("/")
    if any(part in ("..", ".", "") for part in parts) or not name.startswith(PREFIX):
        raise BackupError(_("Refusing archive member '%(name)s' (outside the backup).",
                            name=name[:80]))
    return name[len(PREFIX):]


def read_archive(data: bytes) -> tuple[dict[str, object], dict[str, bytes]]:
    """Manifest and files of an archive; every structural check happens here."""
    if len(data) > MAX_ARCHIVE_BYTES:
        raise BackupError(_("The file is larger than %(size)s; this is not an OCGate "
                            "backup.", size=format_bytes(MAX_ARCHIVE_BYTES)))
    try:
        tar = tarfile.open(fileobj=io.BytesIO(data), mode="r:gz")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise BackupError(_("This is not a gzip'd tar archive (%(reason)s).",
                            reason=exc)) from None
    manifest: dict[str, object] | None = None
    files: dict[str, bytes] = {}
    total = 0
    try:
        with tar:
            for count, member in enumerate(tar, start=1):
                if count > MAX_MEMBERS:
                    raise BackupError(_("The archive has too many members."))
                rel = _safe_member_name(member.name.rstrip("/") if member.isdir()
                                        else member.name)
                if member.isdir():
                    continue
                if not member.isreg():
                    raise BackupError(_("Refusing '%(name)s': links and special files "
                                        "are not allowed.", name=member.name[:80]))
                if member.size > MAX_MEMBER_BYTES or total + member.size > MAX_TOTAL_BYTES:
                    raise BackupError(_("The archive unpacks to more than the allowed "
                                        "size."))
                handle = tar.extractfile(member)
                content = handle.read(member.size + 1) if handle else b""
                if len(content) != member.size:
                    raise BackupError(_("'%(name)s' is truncated.", name=member.name[:80]))
                total += len(content)
                if rel == "manifest.json":
                    manifest = _load_manifest(content)
                elif rel.startswith("files/") and ALLOWED.match(rel[6:]):
                    if rel[6:] in files:
                        raise BackupError(_("'%(name)s' appears twice.", name=rel[6:]))
                    files[rel[6:]] = content
                else:
                    raise BackupError(_("Refusing archive member '%(name)s' (not part of "
                                        "a backup).", name=member.name[:80]))
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise BackupError(_("The archive is damaged (%(reason)s).", reason=exc)) from None
    if manifest is None:
        raise BackupError(_("The archive has no manifest; this is not an OCGate backup."))
    _check_checksums(manifest, files)
    return manifest, files


def _load_manifest(content: bytes) -> dict[str, object]:
    try:
        manifest = json.loads(content)
    except (ValueError, RecursionError):  # RecursionError: "[[[[...", found by tests/fuzz
        raise BackupError(_("The manifest is not JSON.")) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError(_("This is not an OCGate backup."))
    if manifest.get("version") != VERSION:
        raise BackupError(_("Backup format version %(found)s is not supported (this device "
                            "reads version %(version)s).",
                            found=repr(manifest.get("version")), version=VERSION))
    if not isinstance(manifest.get("files"), dict):
        raise BackupError(_("The manifest lists no files."))
    return manifest


def _check_checksums(manifest: dict[str, object], files: dict[str, bytes]) -> None:
    listed = manifest["files"]
    assert isinstance(listed, dict)
    if set(listed) != set(files):
        raise BackupError(_("The files in the archive do not match its manifest."))
    for rel, data in files.items():
        if listed[rel] != hashlib.sha256(data).hexdigest():
            raise BackupError(_("'%(name)s' does not match its checksum (damaged archive).",
                                name=rel))


# --------------------------------------------------------------------------- validating


def _text(files: dict[str, bytes], rel: str) -> str:
    try:
        return files[rel].decode("utf-8")
    except KeyError:
        raise BackupError(_("The backup has no %(name)s.", name=rel)) from None
    except UnicodeDecodeError:
        raise BackupError(_("%(name)s is not UTF-8 text.", name=rel)) from None


def _relocate(text: str, old_root: str, new_root: str) -> str:
    if not old_root or old_root == new_root:
        return text
    return text.replace(old_root.rstrip("/") + "/", new_root.rstrip("/") + "/")


def _check_certs(files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        if not rel.startswith("certs/"):
            continue
        try:
            if KEY_FILES.match(rel):
                serialization.load_pem_private_key(data, password=None)
            elif CRL_FILES.match(rel):
                x509.load_pem_x509_crl(data)
            else:
                x509.load_pem_x509_certificate(data)
        except (ValueError, TypeError) as exc:
            raise BackupError(_("%(name)s is not a valid PEM file (%(reason)s).", name=rel,
                                reason=exc)) from None
    cert, key = files.get("certs/server-cert.pem"), files.get("certs/server-key.pem")
    if cert is None or key is None:
        raise BackupError(_("The backup lacks the server certificate or its key."))
    public = x509.load_pem_x509_certificate(cert).public_key()
    private = serialization.load_pem_private_key(key, password=None)
    der = serialization.Encoding.DER
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    if public.public_bytes(der, spki) != private.public_key().public_bytes(der, spki):
        raise BackupError(_("The server key does not belong to the server certificate."))


def _check_json(files: dict[str, bytes]) -> None:
    """The TOTP and issued-certificate files must be what this version writes."""
    for rel, parse in (("admin-totp.json", parse_records), ("client-certs.json", parse_issued)):
        if rel not in files:
            continue
        try:
            parse(json.loads(_text(files, rel)))
        except (ValueError, TotpError, ClientCertError) as exc:
            raise BackupError(_("%(name)s in the backup is invalid: %(reason)s", name=rel,
                                reason=exc)) from None


def plan_restore(data: bytes, layout: StateLayout) -> RestorePlan:
    """Everything a restore would write, fully validated; touches nothing."""
    manifest, files = read_archive(data)
    source_root = str(manifest.get("state_root") or "")
    conf = _relocate(_text(files, "ocserv.conf"), source_root, str(layout.root))
    try:
        parse_config(conf, str(layout.conf))
    except ConfigError as exc:
        raise BackupError(_("The configuration in the backup is invalid: %(reason)s",
                            reason=exc)) from None
    files["ocserv.conf"] = conf.encode()
    admins = parse_passwd(_text(files, "admin.passwd"))
    if not any(entry.hash.startswith("$") for entry in admins.values()):
        raise BackupError(_("The backup has no usable admin account; restoring it would "
                            "lock you out."))
    users = parse_passwd(_text(files, "ocpasswd")) if "ocpasswd" in files else {}
    _check_json(files)
    _check_certs(files)
    for rel in files:
        if rel.startswith(SETTINGS_DIR + "/"):
            try:
                parse_user_config(_text(files, rel), rel)
            except ConfigError as exc:
                raise BackupError(_("Invalid per-user settings: %(reason)s",
                                    reason=exc)) from None
    notes = []
    if source_root and source_root != str(layout.root):
        notes.append(_("The paths were moved from %(old)s to %(new)s.", old=source_root,
                       new=layout.root))
    return RestorePlan(files, str(manifest.get("created", "?")), source_root, len(users),
                       notes)


# --------------------------------------------------------------------------- installing


def _mode(rel: str) -> int:
    return 0o644 if rel.startswith("certs/") and not KEY_FILES.match(rel) else 0o600


def install(plan: RestorePlan, layout: StateLayout) -> list[str]:
    """Write the validated files (configuration last); returns the paths written."""
    written = []
    ordered = sorted(plan.files, key=lambda rel: (rel == "ocserv.conf", rel))
    layout.certs_dir.mkdir(parents=True, exist_ok=True)
    layout.certs_dir.chmod(0o755)
    settings = layout.root / SETTINGS_DIR
    for rel in ordered:
        target = layout.root / rel
        if Path(rel).is_absolute() or ".." in Path(rel).parts:  # read_archive made sure
            raise BackupError(_("Refusing to write outside the state folder: %(name)s",
                                name=rel))
        if rel == "ocserv.conf":
            write_config_atomic(str(target), plan.files[rel].decode())
        else:
            write_atomic(target, plan.files[rel], _mode(rel))
        written.append(rel)
    for rel in ("admin-totp.json", "client-certs.json"):
        if rel not in plan.files:  # the backup's admin had no TOTP / issued no certificates
            (layout.root / rel).unlink(missing_ok=True)
    keep = {rel.split("/", 1)[1] for rel in plan.files if rel.startswith(SETTINGS_DIR + "/")}
    if settings.is_dir():
        for path in settings.iterdir():
            if path.is_file() and path.name not in keep:
                path.unlink()  # a user deleted since the backup must not keep settings
    log.info("restored %d files from a backup made %s", len(written), plan.created)
    return written
