"""Group rules: select-group, default-select-group, auto-select-group."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .base import GroupError

# --------------------------------------------------------------------------- groups


@dataclass(frozen=True)
class GroupPolicy:
    """select-group / default-select-group / auto-select-group (docs/protocol.md §2.4.3)."""

    choices: tuple[tuple[str, str], ...] = ()  # select-group: (name, friendly label)
    default_label: str | None = None  # default-select-group: the "my default" entry
    auto: bool = False  # auto-select-group: offer the back-end's groups too

    def requested(self, value: str | None) -> str | None:
        """Canonical group for a submitted value; None means "the user's default".

        AnyConnect submits the friendly label (§11 item 26), openconnect the name."""
        if not value or value == self.default_label:
            return None
        if any(value == name for name, _label in self.choices):
            return value
        for name, label in self.choices:
            if value == label:
                return name
        return value

    def label(self, name: str) -> str:
        return next((label for n, label in self.choices if n == name), name)

    def options(self, requested: str | None, extra: Sequence[str] = (),
                extra_text_only: bool = False) -> list[tuple[str, str]]:
        """The ``<select>`` entries as (value, label); value "" = a text-only option.

        The requested group comes first or openconnect restarts the login over and over
        (§11 item 12); then the default entry, then ``extra`` (certificate or back-end
        groups not configured), then the configured groups.
        """
        out: list[tuple[str, str]] = []
        seen: set[str] = set()
        if requested:
            out.append((requested, self.label(requested)))
            seen.add(requested)
        if self.default_label:
            out.append(("", self.default_label))
        configured = {name for name, _ in self.choices}
        for name in extra:
            if name not in seen and name not in configured:
                out.append(("", name) if extra_text_only else (name, name))
                seen.add(name)
        for name, label in self.choices:
            if name not in seen:
                out.append((name, label))
                seen.add(name)
        return out

    def choose(self, requested: str | None, member_of: Sequence[str]) -> str:
        """The session's group: the requested one if the user is in it, else the first
        of the user's groups (their default); GroupError for a group they are not in."""
        if requested is None:
            return member_of[0] if member_of else ""
        if requested in member_of:
            return requested
        raise GroupError(f"not a member of group '{requested}'")


def group_policy(select_groups: Sequence[tuple[str, str]], default_label: str | None,
                 auto: bool) -> GroupPolicy:
    return GroupPolicy(tuple(select_groups), default_label or None, auto)
