"""Cheap checks of what goes into the appliance image; no image is built here.

systemd units (``systemd-analyze verify`` and what the wizard's hand-over expects), the
nftables ruleset and sysctl drop-in, the rootfs overlay (modes, links, scripts), the
BR2_EXTERNAL tree (kconfiglib, package .mk files), genimage on dummy partition images for
both pipelines, and the pure parts of image/mkimage.py.  ``make image`` and
``make image-test`` do the expensive rest.
"""

from __future__ import annotations

import configparser
import importlib.util
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from appliance.firstboot.apply import Units, factory_reset_commands, handover_commands
from appliance.state import DEVICE_STATE_DIR, StateLayout
from tests.prereqs import require_command, require_module, require_root

REPO = Path(__file__).resolve().parents[2]
UNITS_DIR = REPO / "systemd"
BR = REPO / "buildroot-overlay"
OVERLAY = BR / "rootfs"
STATE = StateLayout(DEVICE_STATE_DIR)


def load_mkimage() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ocgate_mkimage", REPO / "image/mkimage.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while executing it
    spec.loader.exec_module(module)
    return module


mk = load_mkimage()


def need(tool: str) -> str:
    return require_command(tool, TOOL_PACKAGES.get(tool, tool))


TOOL_PACKAGES = {"genimage": "genimage", "mcopy": "mtools", "mkfs.vfat": "dosfstools",
                 "systemd-analyze": "systemd", "nft": "nftables", "sfdisk": "fdisk",
                 "mke2fs": "e2fsprogs"}


def read_unit(name: str) -> configparser.ConfigParser:
    """A unit file as sections of (possibly repeated) keys: values joined by newlines."""
    parser = configparser.ConfigParser(strict=False, interpolation=None,
                                       dict_type=_MultiDict, empty_lines_in_values=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNITS_DIR / name)
    return parser


class _MultiDict(dict):  # type: ignore[type-arg]
    """configparser dict that keeps every value of a repeated key (systemd allows them)."""

    def __setitem__(self, key: str, value: object) -> None:
        if isinstance(value, list) and key in self:
            self[key].extend(value)
            return
        super().__setitem__(key, value)


def values(unit: configparser.ConfigParser, section: str, key: str) -> list[str]:
    raw = unit[section].get(key)
    return [] if raw is None else [v for v in raw.split("\n") if v]


# --------------------------------------------------------------------------- units


UNIT_FILES = sorted(p.name for p in UNITS_DIR.glob("*.service"))


def test_unit_names_match_the_wizard_handover() -> None:
    units = Units()
    for name in (units.vpn, units.webui, units.wizard):
        assert (UNITS_DIR / name).is_file(), f"the wizard hands over to {name}"
    named = {argv[-1] for argv in handover_commands() + factory_reset_commands()}
    assert named <= set(UNIT_FILES)


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = need("systemd-analyze")
    root = tmp_path / "root"
    system = root / "usr/lib/systemd/system"
    # the distribution's units (targets, ssh, nftables) that ours order themselves against
    shutil.copytree("/usr/lib/systemd/system", system, symlinks=True)
    for name in UNIT_FILES:
        shutil.copyfile(UNITS_DIR / name, system / name)
    for exe in ("usr/bin/python3", "usr/lib/ocgate/firstboot-init", "bin/kill", "bin/sh",
                "usr/bin/ssh-keygen"):
        (root / exe).parent.mkdir(parents=True, exist_ok=True)
        (root / exe).write_text("#!/bin/sh\n")
        (root / exe).chmod(0o755)
    proc = subprocess.run([analyze, "verify", f"--root={root}",
                           *(str(system / n) for n in UNIT_FILES)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # unknown keys and bad values are only warnings; treat every one as an error
    assert proc.stdout + proc.stderr == ""


def test_systemd_analyze_catches_a_typo(tmp_path: Path) -> None:
    """The check above is only worth something if verify complains about mistakes."""
    analyze = need("systemd-analyze")
    bad = tmp_path / "bad.service"
    bad.write_text("[Service]\nExecStart=/bin/true\nProtectSystm=strict\n")
    proc = subprocess.run([analyze, "verify", str(bad)], capture_output=True, text=True,
                          timeout=60, check=False)
    assert "ProtectSystm" in proc.stdout + proc.stderr


def test_vpn_unit_is_notify_restarting_reloadable_and_hardened() -> None:
    u = read_unit("ocgate-vpn.service")
    s = u["Service"]
    assert s["Type"] == "notify" and s["NotifyAccess"] == "main"
    assert s["Restart"] == "on-failure"
    assert s["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert s["ExecStart"] == f"/usr/bin/python3 -m appliance.vpn -f -c {STATE.conf}"
    for key, want in (("ProtectSystem", "strict"), ("ProtectHome", "yes"),
                      ("PrivateTmp", "yes"), ("NoNewPrivileges", "yes")):
        assert s[key] == want, key
    caps = set(s["CapabilityBoundingSet"].split())
    assert {"CAP_NET_ADMIN", "CAP_NET_BIND_SERVICE", "CAP_SETUID", "CAP_SETGID"} <= caps
    assert not caps & {"CAP_SYS_ADMIN", "CAP_SYS_MODULE", "CAP_SYS_PTRACE", "CAP_SYS_RAWIO"}
    assert values(u, "Service", "ReadWritePaths") == [str(DEVICE_STATE_DIR)]
    assert s["DeviceAllow"] == "/dev/net/tun rw"
    # isolate-workers: the workers load their own seccomp filter, which needs seccomp(2)
    assert "seccomp" in " ".join(values(u, "Service", "SystemCallFilter")).split()
    assert f"{STATE.setup_done}" in values(u, "Unit", "ConditionPathExists")


def test_reach_unit_runs_the_service_on_the_state_folder_after_setup() -> None:
    u = read_unit(Units().reach)
    s = u["Service"]
    assert s["ExecStart"] == f"/usr/bin/python3 -m appliance.reach run --state {DEVICE_STATE_DIR}"
    assert s["ExecReload"] == "/bin/kill -HUP $MAINPID"  # SIGHUP: re-read the settings
    assert s["Restart"] == "on-failure"
    assert values(u, "Unit", "ConditionPathExists") == [str(STATE.setup_done)]
    assert Units().vpn in u["Unit"]["After"].split()  # TLS-ALPN-01 needs the VPN's port
    assert values(u, "Service", "ReadWritePaths") == [str(DEVICE_STATE_DIR)]
    caps = set(s["CapabilityBoundingSet"].split())
    assert not caps & {"CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_SYS_ADMIN", "CAP_SETUID"}


def test_wizard_runs_only_until_setup_is_done() -> None:
    u = read_unit("ocgate-firstboot.service")
    assert values(u, "Unit", "ConditionPathExists") == [f"!{STATE.setup_done}"]
    assert u["Service"]["ExecStart"] == \
        f"/usr/bin/python3 -m appliance.firstboot --state {DEVICE_STATE_DIR}"
    assert "console" in u["Service"]["StandardOutput"]  # the setup code on the console
    web = read_unit("ocgate-webui.service")
    assert web["Unit"]["Conflicts"] == Units().wizard
    assert values(web, "Unit", "ConditionPathExists") == [str(STATE.setup_done)]


def test_firstboot_init_is_a_oneshot_before_ssh_and_the_wizard() -> None:
    u = read_unit("ocgate-firstboot-init.service")
    assert u["Service"]["Type"] == "oneshot"
    before = u["Unit"]["Before"].split()
    assert {"ssh.service", Units().wizard, Units().vpn} <= set(before)


def test_every_unit_names_the_device_state_folder() -> None:
    for name in UNIT_FILES:
        text = (UNITS_DIR / name).read_text()
        for path in re.findall(r"/var/lib/[\w./-]+", text):
            assert path.startswith(str(DEVICE_STATE_DIR)), (name, path)


def test_modules_the_units_start_exist() -> None:
    for name in UNIT_FILES:
        for line in (UNITS_DIR / name).read_text().splitlines():
            m = re.match(r"Exec\w+=/usr/bin/python3 -m ([\w.]+)", line)
            if not m:
                continue
            module = m.group(1)
            if module == "appliance.webui" and \
                    importlib.util.find_spec("appliance.webui.__main__") is None:
                continue  # the admin UI is written in another issue; the unit waits for it
            assert importlib.util.find_spec(module) is not None, (name, module)


def test_nftables_ruleset_parses() -> None:
    nft = need("nft")
    require_root("nft -c talks netlink")
    proc = subprocess.run([nft, "-c", "-f", str(UNITS_DIR / "ocgate.nft")],
                          capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 0, proc.stderr


def test_nftables_nats_what_comes_from_the_vpn_devices() -> None:
    text = (UNITS_DIR / "ocgate.nft").read_text()
    assert "flush ruleset" not in text  # never wipe other tables
    assert re.search(r'iifname "vpns\*" ct mark set (0x[0-9a-f]+)', text)
    mark = re.search(r'iifname "vpns\*" ct mark set (0x[0-9a-f]+)', text).group(1)
    assert f"ct mark {mark} masquerade" in text
    conf = (REPO / "appliance/firstboot/plan.py").read_text()
    assert '("device", ["vpns"])' in conf, "the ruleset keys on the wizard's device name"


def test_sysctl_dropin_names_real_keys() -> None:
    seen = {}
    for line in (UNITS_DIR / "ocgate-sysctl.conf").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, line
        key, value = key.strip(), value.strip()
        seen[key] = value
        assert Path("/proc/sys", key.replace(".", "/")).exists(), key
    assert seen["net.ipv4.ip_forward"] == "1"
    assert int(seen["net.core.rmem_max"]) >= 1 << 20


# --------------------------------------------------------------------------- overlay


def overlay_entries() -> list[Path]:
    return sorted(OVERLAY.rglob("*"))


def test_overlay_modes() -> None:
    """Scripts (and only scripts) executable; what lands on the device is 0755/0644.

    git keeps only the x bit, so the tree's other bits depend on the checkout's umask;
    mkimage normalises them and this checks both the tree and the result.
    """
    for path in overlay_entries():
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode) or path.is_dir():
            continue
        rel = path.relative_to(OVERLAY)
        assert not st.st_mode & 0o002, f"{rel} is world-writable"
        script = path.read_bytes().startswith(b"#!")
        assert bool(st.st_mode & 0o100) == script, rel
        assert mk.overlay_mode(path) == (0o755 if script else 0o644), rel


def test_overlay_enabled_units_point_at_shipped_or_debian_units() -> None:
    debian_units = {"nftables.service", "systemd-networkd.service",
                    "systemd-resolved.service"}
    links = [p for p in overlay_entries() if p.is_symlink() and ".wants" in str(p)]
    assert links
    for link in links:
        target = os.readlink(link)
        assert target.startswith("/usr/lib/systemd/system/"), link
        name = Path(target).name
        assert name == link.name
        assert (UNITS_DIR / name).exists() or name in debian_units, name


def preset_rules() -> dict[str, str]:
    rules = {}
    for preset in sorted((OVERLAY / "usr/lib/systemd/system-preset").glob("*.preset")):
        for line in preset.read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                verb, name = line.split()
                assert verb in ("enable", "disable") and name not in rules, line
                rules[name] = verb
    return rules


def enabled_in_overlay() -> set[str]:
    """Enabled at boot: the links in the image plus what first-boot presets enable."""
    linked = {p.name for p in (OVERLAY / "etc/systemd/system").glob("*.wants/*")}
    rules = preset_rules()
    # systemd applies presets on the first boot ("uninitialized" machine-id) and enables
    # every unit that has no rule: so each of ours needs one
    return {n for n in linked | set(UNIT_FILES) if rules.get(n, "enable") == "enable"}


def test_every_unit_has_a_preset_rule_that_matches_the_image() -> None:
    rules = preset_rules()
    linked = {p.name for p in (OVERLAY / "etc/systemd/system").glob("*.wants/*")}
    for name in UNIT_FILES:
        assert name in rules, f"{name} has no preset rule (first boot would enable it)"
        assert (rules[name] == "enable") == (name in linked), name


def test_every_unit_is_enabled_where_its_install_section_says() -> None:
    # the admin UI is enabled by the wizard's hand-over, never in the image (see below)
    for name in set(UNIT_FILES) - {Units().webui}:
        u = read_unit(name)
        if not u.has_section("Install"):
            continue  # started only on request (the boot report: systemd.wants=)
        for target in values(u, "Install", "WantedBy"):
            link = OVERLAY / "etc/systemd/system" / f"{target}.wants" / name
            assert link.is_symlink(), f"{name} is not enabled in the overlay ({link})"


def test_no_two_units_enabled_at_boot_conflict() -> None:
    """Both in the boot transaction => systemd drops one job before any Condition= runs.

    (Found by the QEMU boot: with the admin UI enabled as well, the wizard never started.)
    """
    enabled = enabled_in_overlay()
    assert Units().webui not in enabled and Units().wizard in enabled
    for name in enabled & set(UNIT_FILES):
        for other in values(read_unit(name), "Unit", "Conflicts"):
            for conflict in other.split():
                assert conflict not in enabled, (name, conflict)


def test_systemd_firstboot_is_masked() -> None:
    """The image's machine-id is "uninitialized": unmasked, systemd-firstboot would stop the
    boot at an interactive locale/timezone/root-password prompt on the console."""
    link = OVERLAY / "etc/systemd/system/systemd-firstboot.service"
    assert link.is_symlink() and os.readlink(link) == "/dev/null"


def test_overlay_scripts_parse() -> None:
    scripts = [p for p in overlay_entries() + sorted((BR / "board").rglob("*.sh"))
               + sorted((REPO / "image/hooks").glob("*.sh"))
               if p.is_file() and p.read_bytes().startswith(b"#!/bin/sh")]
    assert scripts
    for script in scripts:
        proc = subprocess.run(["sh", "-n", str(script)], capture_output=True, text=True,
                              check=False)
        assert proc.returncode == 0, (script, proc.stderr)


def test_fstab_labels_match_the_file_systems_mkimage_makes() -> None:
    fstab = (OVERLAY / "etc/fstab").read_text()
    mounts = {fields[1]: fields[0] for fields in
              (line.split() for line in fstab.splitlines())
              if fields and not fields[0].startswith("#")}
    # "/" is slot A or B, both labelled rootfs: the boot loader names it by PARTUUID
    assert mounts == {"/boot/firmware": "LABEL=BOOT", str(DEVICE_STATE_DIR): "LABEL=data"}
    source = (REPO / "image/mkimage.py").read_text()
    for label in ("rootfs", "BOOT", "data"):
        assert f'label="{label}"' in source


def test_state_boot_folder_is_the_boot_partition() -> None:
    link = OVERLAY / STATE.boot_dir.relative_to("/")
    assert link.is_symlink() and os.readlink(link) == "/boot/firmware"


# --------------------------------------------------------------------------- BR2_EXTERNAL


UPSTREAM_SYMBOLS = (
    "BR2_PACKAGE_PYTHON3", "BR2_INIT_SYSTEMD", "BR2_PACKAGE_PYTHON3_SSL",
    "BR2_PACKAGE_PYTHON3_ZLIB", "BR2_PACKAGE_PYTHON_CRYPTOGRAPHY",
    "BR2_PACKAGE_PYTHON_PYOPENSSL", "BR2_PACKAGE_PYTHON_PYROUTE2", "BR2_PACKAGE_PYTHON_FLASK",
    "BR2_PACKAGE_PYTHON_WAITRESS", "BR2_PACKAGE_PYTHON_PSUTIL", "BR2_PACKAGE_PYTHON_ZEROCONF",
    "BR2_PACKAGE_NFTABLES", "BR2_PACKAGE_IPROUTE2", "BR2_PACKAGE_LZ4", "BR2_PACKAGE_RAUC",
    "BR2_PACKAGE_RAUC_JSON",
    "BR2_PACKAGE_LINUX_PAM", "BR2_ENABLE_LOCALE", "BR2_USE_WCHAR", "BR2_STATIC_LIBS",
)


def external_name() -> str:
    desc = dict(line.split(":", 1) for line in (BR / "external.desc").read_text().splitlines()
                if ":" in line)
    return desc["name"].strip()


def test_kconfig_tree_lints_clean(tmp_path: Path) -> None:
    kconfiglib = require_module("kconfiglib")
    name = external_name()
    assert re.fullmatch(r"[A-Za-z0-9_]+", name)
    stubs = "".join(f"config {sym}\n\tbool\n\tdefault y\n\n" for sym in UPSTREAM_SYMBOLS)
    top = tmp_path / "Config.in"
    top.write_text(stubs + 'source "$BR2_EXTERNAL_OCGATE_PATH/Config.in"\n')
    env = {**os.environ, f"BR2_EXTERNAL_{name}_PATH": str(BR), "srctree": str(tmp_path)}
    old = os.environ.copy()
    os.environ.update(env)
    try:
        kconf = kconfiglib.Kconfig(str(top), warn_to_stderr=False)
    finally:
        os.environ.clear()
        os.environ.update(old)
    assert kconf.warnings == []
    ours = {s for s in kconf.syms if s.startswith("BR2_PACKAGE_") and s not in UPSTREAM_SYMBOLS}
    # every symbol we select or depend on is either ours or a known upstream one
    for sym in kconf.unique_defined_syms:
        for item in (sym.selects, sym.direct_dep):
            text = str(item)
            for ref in re.findall(r"BR2_\w+", text):
                assert ref in ours or ref in UPSTREAM_SYMBOLS, (sym.name, ref)
    packages = {p.name for p in (BR / "package").iterdir() if p.is_dir()}
    for pkg in packages:
        symbol = "BR2_PACKAGE_" + pkg.upper().replace("-", "_")
        assert symbol in ours, symbol
    # the defconfig enables our package and only symbols of ours that exist
    defconfig = (BR / "configs/ocgate_rpi64_defconfig").read_text()
    assert "BR2_PACKAGE_OCGATE=y" in defconfig
    for sym in re.findall(r"^(BR2_PACKAGE_(?:OCGATE|PYTHON_OCGATE)\w*)=", defconfig, re.M):
        assert sym in ours, sym


def test_package_makefiles_follow_buildroot_conventions() -> None:
    reserved = {"python-pam", "python-lz4"}  # see docs/image.md
    for pkg_dir in sorted((BR / "package").iterdir()):
        pkg = pkg_dir.name
        assert pkg not in reserved
        mk_file = pkg_dir / f"{pkg}.mk"
        assert mk_file.is_file() and (pkg_dir / "Config.in").is_file(), pkg
        prefix = pkg.upper().replace("-", "_")
        text = mk_file.read_text()
        assert f"# {pkg}\n" in text
        assigned = re.findall(r"^([A-Z0-9_]+)\s*[+:]?=", text, re.M)
        assert assigned and all(v.startswith(prefix + "_") for v in assigned), (pkg, assigned)
        assert re.search(r"^\$\(eval \$\((host-)?python-package\)\)$", text, re.M), pkg
        version = re.search(rf"^{prefix}_VERSION = (\S+)$", text, re.M)
        assert version, pkg
        if f"{prefix}_SITE_METHOD = local" in text:
            continue
        hash_file = pkg_dir / f"{pkg}.hash"
        source = re.search(rf"^{prefix}_SOURCE = (\S+)$", text, re.M).group(1)
        source = source.replace(f"$({prefix}_VERSION)", version.group(1))
        assert re.search(rf"^sha256  [0-9a-f]{{64}}  {re.escape(source)}$",
                         hash_file.read_text(), re.M), pkg


def test_buildroot_package_versions_match_the_pins() -> None:
    pins = dict(d.split("==") for d in mk.pinned_requirements(REPO / "pyproject.toml"))
    for pkg, pypi in (("python-ocgate-lz4", "lz4"), ("python-ocgate-pam", "python-pam"),
                      ("python-ocgate-libpass", "libpass")):
        text = (BR / "package" / pkg / f"{pkg}.mk").read_text()
        assert f"_VERSION = {pins[pypi]}\n" in text, pkg


def test_external_tree_files() -> None:
    assert (BR / "external.mk").read_text().strip() == \
        "include $(sort $(wildcard $(BR2_EXTERNAL_OCGATE_PATH)/package/*/*.mk))"
    defconfig = (BR / "configs/ocgate_rpi64_defconfig").read_text()
    for ref in re.findall(r"\$\(BR2_EXTERNAL_OCGATE_PATH\)/([\w./-]+)", defconfig):
        assert (BR / ref).exists(), ref
    for script in (BR / "board/ocgate").glob("*.sh"):
        assert os.access(script, os.X_OK), script


# --------------------------------------------------------------------------- genimage


def genimage_run(cfg: Path, inputpath: Path, outputpath: Path, tmp: Path) -> None:
    root = tmp / "emptyroot"
    root.mkdir(exist_ok=True)
    proc = subprocess.run([need("genimage"), "--config", str(cfg), "--inputpath",
                           str(inputpath), "--outputpath", str(outputpath), "--tmppath",
                           str(tmp / "gitmp"), "--rootpath", str(root)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def partition_table(image: Path) -> list[dict[str, object]]:
    proc = subprocess.run([need("sfdisk"), "--json", str(image)], capture_output=True,
                          text=True, timeout=30, check=True)
    table = json.loads(proc.stdout)["partitiontable"]
    assert table["label"] == "dos"
    return table["partitions"]


def assert_layout(parts: list[dict[str, object]], layout: object) -> None:
    sector = 512
    mib = 1 << 20
    assert [p["type"] for p in parts] == ["c", "83", "83", "83"]
    assert parts[0]["start"] * sector == layout.boot_offset_mib * mib
    assert parts[0].get("bootable") is True
    sizes = [p["size"] * sector // mib for p in parts]
    assert sizes == [layout.boot_mib, layout.root_mib, layout.root_mib, layout.data_mib]
    for a, b in zip(parts, parts[1:], strict=False):
        assert a["start"] + a["size"] <= b["start"]


def test_debian_genimage_cfg_on_dummy_partitions(tmp_path: Path) -> None:
    need("genimage")
    layout = mk.Layout(boot_mib=8, root_mib=16, data_mib=4)
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name, mib in (("boot.vfat", 8), ("rootfs.ext4", 16), ("data.ext4", 4)):
        with open(inputs / name, "wb") as fh:
            fh.truncate(mib << 20)
    cfg = tmp_path / "genimage.cfg"
    cfg.write_text(mk.render_genimage_cfg(layout, image_name="disk.img", boot="boot.vfat",
                                          root="rootfs.ext4", data="data.ext4"))
    out = tmp_path / "out"
    genimage_run(cfg, inputs, out, tmp_path)
    image = out / "disk.img"
    assert image.stat().st_size == layout.total_mib() << 20
    assert_layout(partition_table(image), layout)


def test_buildroot_genimage_cfg_on_dummy_binaries(tmp_path: Path) -> None:
    need("genimage")
    need("mcopy")
    need("mkfs.vfat")
    cfg_text = (BR / "board/ocgate/genimage.cfg").read_text()
    binaries = tmp_path / "images"
    files = re.findall(r'^\s*"([^"]+)",?\s*$', cfg_text, re.M)
    assert "Image" in files and "rpi-firmware/config.txt" in files
    for name in files:
        path = binaries / name
        if name.endswith("overlays"):
            path.mkdir(parents=True)
            (path / "miniuart-bt.dtbo").write_bytes(b"\xd0\x0d\xfe\xed")
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"dummy " + name.encode())
    for name, mib in (("rootfs.ext4", 1024), ("data.ext4", 64)):
        with open(binaries / name, "wb") as fh:
            fh.truncate(mib << 20)  # sparse: costs no disk
    genimage_run(BR / "board/ocgate/genimage.cfg", binaries, binaries, tmp_path)
    # same partition layout as the Debian pipeline's default
    assert_layout(partition_table(binaries / "sdcard.img"), mk.Layout())


# --------------------------------------------------------------------------- mkimage


def test_pins_are_exact() -> None:
    reqs = mk.pinned_requirements(REPO / "pyproject.toml")
    assert reqs and all("==" in r for r in reqs)


def test_unpinned_dependency_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "pyproject.toml"
    p.write_text('[project]\nname = "x"\ndependencies = ["flask>=3"]\n')
    with pytest.raises(mk.BuildError):
        mk.pinned_requirements(p)


def test_round_up_and_digest() -> None:
    assert mk.round_up_mib(1) == 64
    assert mk.round_up_mib(64 << 20) == 64
    assert mk.round_up_mib((64 << 20) + 1) == 128
    assert mk.round_up_mib(100 << 20, step_mib=4) == 100
    assert mk.digest(["a", "b"]) == mk.digest(["a", "b"])
    assert mk.digest(["a", "b"]) != mk.digest(["ab"])


def test_rootfs_cache_key_follows_packages_and_hooks(tmp_path: Path) -> None:
    a = mk.Build(mk.TARGETS["arm64"], tmp_path, tmp_path / "o", tmp_path / "w")
    b = mk.Build(mk.TARGETS["amd64"], tmp_path, tmp_path / "o", tmp_path / "w")
    assert a.rootfs_key() != b.rootfs_key()
    assert a.rootfs_key() == mk.Build(mk.TARGETS["arm64"], tmp_path, tmp_path,
                                      tmp_path).rootfs_key()
    assert "raspi-firmware" in a.packages() and "raspi-firmware" not in b.packages()


def test_mmdebstrap_command(tmp_path: Path) -> None:
    b = mk.Build(mk.TARGETS["arm64"], tmp_path, tmp_path / "o", tmp_path / "w")
    argv = b.mmdebstrap_argv(tmp_path / "x.tar", tmp_path / "apt")
    assert argv[0] == "mmdebstrap" and "--architectures=arm64" in argv
    assert "--variant=apt" in argv
    include = next(a for a in argv if a.startswith("--include="))
    assert "linux-image-arm64" in include and "python3-cryptography" not in include
    hooks = [a for a in argv if a.startswith("--essential-hook=")]
    assert hooks and "essential.sh" in hooks[0]
    # only Debian's own archive: no other network source in the build
    urls = re.findall(r"https?://[^\s'\"]+", " ".join(argv))
    assert urls and all(u.startswith("http://deb.debian.org/") for u in urls)


def test_pip_download_command_is_binary_only_for_the_target(tmp_path: Path) -> None:
    b = mk.Build(mk.TARGETS["arm64"], tmp_path, tmp_path / "o", tmp_path / "w")
    argv = b.pip_download_argv(tmp_path, ["lz4==4.4.5"])
    assert "--only-binary=:all:" in argv
    platforms = [argv[i + 1] for i, a in enumerate(argv) if a == "--platform"]
    assert platforms[0].endswith("aarch64") and "any" in platforms
    assert argv[argv.index("--python-version") + 1] == mk.PYTHON_VERSION


def test_apply_overlay_and_configure_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "usr/lib/systemd/system").mkdir(parents=True)
    (root / "etc/ssh").mkdir(parents=True)
    (root / "etc/ssh/ssh_host_ed25519_key").write_text("build machine key")
    (root / "etc/machine-id").write_text("0123456789abcdef0123456789abcdef\n")
    mk.apply_overlay(root, OVERLAY, UNITS_DIR)
    mk.configure_root(root, mk.TARGETS["arm64"])
    for name in UNIT_FILES:
        installed = root / "usr/lib/systemd/system" / name
        assert installed.read_bytes() == (UNITS_DIR / name).read_bytes()
        assert stat.S_IMODE(installed.stat().st_mode) == 0o644
    assert (root / "usr/lib/sysctl.d/60-ocgate.conf").is_file()
    assert (root / "etc/nftables.conf").read_bytes() == (UNITS_DIR / "ocgate.nft").read_bytes()
    script = root / "usr/lib/ocgate/firstboot-init"
    assert stat.S_IMODE(script.stat().st_mode) == 0o755
    for src in OVERLAY.rglob("*"):
        path = root / src.relative_to(OVERLAY)
        if not path.is_symlink():
            assert stat.S_IMODE(path.stat().st_mode) in (0o755, 0o644), path
    assert (root / "etc/machine-id").read_text() == "uninitialized\n"
    assert not list((root / "etc/ssh").glob("ssh_host_*"))
    assert os.readlink(root / "var/lib/ocgate/boot") == "/boot/firmware"
    assert (root / "var/lib/ocgate/run").is_dir()


def test_buildroot_post_build_matches_configure_root(tmp_path: Path) -> None:
    deb = tmp_path / "deb"
    brt = tmp_path / "br"
    for root in (deb, brt):
        (root / "etc/ssh").mkdir(parents=True)
        (root / "etc/ssh/ssh_host_rsa_key").write_text("x")
    mk.configure_root(deb, mk.TARGETS["arm64"])
    subprocess.run(["sh", str(BR / "board/ocgate/post-build.sh"), str(brt)], check=True)
    for rel in ("etc/machine-id",):
        assert (deb / rel).read_text() == (brt / rel).read_text()
    for rel in ("var/lib/ocgate", "var/lib/ocgate/run", "boot/firmware"):
        assert (deb / rel).is_dir() and (brt / rel).is_dir(), rel
    assert not list((brt / "etc/ssh").glob("ssh_host_*"))


def test_small_disk_end_to_end(tmp_path: Path) -> None:
    """mkfs from folders + genimage, exactly as make image does, at toy sizes."""
    need("mke2fs")
    need("mkfs.vfat")
    need("mcopy")
    need("genimage")
    boot = tmp_path / "bootsrc"
    (boot / "overlays").mkdir(parents=True)
    (boot / "config.txt").write_text("arm_64bit=1\n")
    (boot / "overlays/x.dtbo").write_bytes(b"\0" * 10)
    data = tmp_path / "datasrc"
    data.mkdir()
    os.symlink("/boot/firmware", data / "boot")
    parts = tmp_path / "parts"
    parts.mkdir()
    mk.make_vfat(parts / "boot.vfat", boot, 40, label="BOOT")
    mk.make_ext4(parts / "rootfs.ext4", OVERLAY, 16, label="rootfs")
    mk.make_ext4(parts / "data.ext4", data, 8, label="data")
    layout = mk.Layout(boot_mib=40, root_mib=16, data_mib=8)
    cfg = tmp_path / "g.cfg"
    cfg.write_text(mk.render_genimage_cfg(layout, image_name="t.img", boot="boot.vfat",
                                          root="rootfs.ext4", data="data.ext4"))
    mk.run_genimage(cfg, inputpath=parts, outputpath=tmp_path / "out", work=tmp_path)
    assert_layout(partition_table(tmp_path / "out/t.img"), layout)
    listing = subprocess.run(["mdir", "-b", "-i", str(parts / "boot.vfat"), "::/overlays"],
                             capture_output=True, text=True, check=True).stdout
    assert "x.dtbo" in listing
    label = subprocess.run(["blkid", "-o", "value", "-s", "LABEL", str(parts / "data.ext4")],
                           capture_output=True, text=True, check=False).stdout.strip()
    assert label in ("data", "")  # blkid may be missing its cache in containers
    mk.write_sha256sums(tmp_path / "SHA256SUMS", [parts / "data.ext4"])
    line = (tmp_path / "SHA256SUMS").read_text()
    assert re.fullmatch(r"[0-9a-f]{64}  data\.ext4\n", line)


def test_copy_package_data_adds_only_what_is_missing(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "templates/wizard").mkdir(parents=True)
    (src / "__pycache__").mkdir()
    (src / "templates/wizard/code.html").write_text("<form>")
    (src / "mod.py").write_text("x = 1\n")
    (src / "__pycache__/mod.cpython-311.pyc").write_bytes(b"\0")
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "mod.py").write_text("x = 2\n")  # installed copy wins
    assert mk.copy_package_data(src, dest) == ["templates/wizard/code.html"]
    assert (dest / "mod.py").read_text() == "x = 2\n"
    assert not (dest / "__pycache__").exists()
    assert mk.copy_package_data(src, dest) == []
