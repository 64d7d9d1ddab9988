"""The boot loader's slot choice and try counters, as plain text both sides can edit.

The U-Boot script (``image/boot/boot.cmd``) and RAUC's custom boot backend
(:mod:`appliance.update.bootchooser`) share one small file on the FAT boot partition,
``bootenv.txt``, in the ``NAME=value`` lines U-Boot's ``env import -t`` reads and
``env export -t`` writes::

    BOOT_ORDER=B A        slots in the order the boot loader tries them
    BOOT_A_LEFT=3         tries left before the boot loader gives the slot up
    BOOT_B_LEFT=3
    OCGATE_ARGS=...       optional: more kernel arguments (the QEMU test's console output)

On every boot the script takes the first slot of BOOT_ORDER with tries left, decrements its
counter, writes the file back and boots it.  A healthy system resets its own counter
(``rauc status mark-good``); a system that keeps failing runs out of tries and the next
boot falls through to the other slot.  This is the scheme of RAUC's U-Boot integration,
kept in a text file because the appliance's U-Boot has no environment storage of its own.
This module is pure: text in, text out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SLOTS = ("A", "B")
TRIES = 3  # boots a slot gets before the boot loader falls back to the other one
FILENAME = "bootenv.txt"


class BootEnvError(ValueError):
    """The file or a request names something that is not a slot."""


@dataclass
class BootEnv:
    order: list[str] = field(default_factory=lambda: list(SLOTS))
    left: dict[str, int] = field(default_factory=lambda: {s: TRIES for s in SLOTS})
    extra: dict[str, str] = field(default_factory=dict)  # other variables, kept as they are

    # ---- what RAUC asks (custom backend: get-primary / get-state)
    def primary(self) -> str | None:
        """The slot the next boot will start, or None when every slot is out of tries."""
        for slot in self.order:
            if self.left.get(slot, 0) > 0:
                return slot
        return None

    def state(self, slot: str) -> str:
        _check(slot)
        return "good" if slot in self.order and self.left.get(slot, 0) > 0 else "bad"

    # ---- what RAUC tells (set-primary / set-state)
    def set_primary(self, slot: str) -> None:
        """Boot ``slot`` next, with a full set of tries (after an install, or mark-active)."""
        _check(slot)
        self.order = [slot] + [s for s in self.order if s != slot]
        self.left[slot] = TRIES

    def set_state(self, slot: str, state: str) -> None:
        _check(slot)
        if state == "good":
            if slot not in self.order:
                self.order.append(slot)
            self.left[slot] = TRIES
        elif state == "bad":
            self.order = [s for s in self.order if s != slot]
            self.left[slot] = 0
        else:
            raise BootEnvError(f"unknown slot state {state!r}")

    # ---- the file
    def render(self) -> str:
        lines = [f"BOOT_ORDER={' '.join(self.order)}"]
        lines += [f"BOOT_{s}_LEFT={self.left.get(s, 0)}" for s in SLOTS]
        lines += [f"{name}={value}" for name, value in sorted(self.extra.items())]
        return "\n".join(lines) + "\n"

    @classmethod
    def parse(cls, text: str) -> BootEnv:
        """Read what either side wrote; other names are kept, bad values refused.

        U-Boot's ``env export -t`` may end the text with NUL bytes; they are dropped.
        """
        env = cls(order=[], left={s: 0 for s in SLOTS})
        seen_order = False
        for raw in text.replace("\0", "").splitlines():
            line = raw.strip()
            if not line or line.startswith("#") or "=" not in line:
                continue
            name, value = (part.strip() for part in line.split("=", 1))
            if name == "BOOT_ORDER":
                env.order = [s for s in value.split() if s in SLOTS]
                seen_order = True
            elif name.startswith("BOOT_") and name.endswith("_LEFT") and name[5:-5] in SLOTS:
                try:
                    env.left[name[5:-5]] = max(0, int(value))
                except ValueError as exc:
                    raise BootEnvError(f"{name}={value!r} is not a number") from exc
            elif name.isidentifier():
                env.extra[name] = value
        if not seen_order:
            raise BootEnvError("no BOOT_ORDER line")
        return env


def _check(slot: str) -> None:
    if slot not in SLOTS:
        raise BootEnvError(f"unknown slot {slot!r} (slots: {', '.join(SLOTS)})")
