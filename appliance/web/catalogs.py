"""The translation catalogs: extract, update and compile them the same way everywhere.

``make translations`` (part of ``make run``/``make test``) and the image build compile
the ``.po`` files in git into ``.mo`` files next to them; ``make catalog`` re-extracts the
marked strings after a code change and merges them into every language (new strings
arrive empty, never fuzzy-guessed, so the completeness test names them).
``tests/unit/test_i18n.py`` runs :func:`extract` itself and fails when the catalogs lag
behind the code.  Run as ``python3 -m appliance.web.catalogs compile|extract|update``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from babel.messages.frontend import CommandLineInterface

from .i18n import DOMAIN, TRANSLATED, TRANSLATIONS

REPO = Path(__file__).resolve().parents[2]
MAPPING = REPO / "babel.cfg"
TEMPLATE = TRANSLATIONS / f"{DOMAIN}.pot"
#: gettext functions besides Babel's defaults (_, gettext, ngettext, ...): the lazy ones.
KEYWORDS = ("_l", "lazy_gettext", "lazy_ngettext:1,2")


def _run(argv: list[str]) -> None:
    CommandLineInterface().run(["pybabel", "-q", *argv])


def extract(out: Path = TEMPLATE, root: Path = REPO) -> Path:
    """All marked strings of the wizard and the admin UI under ``root`` (the repository;
    the tests give a scratch tree) as a ``.pot`` file at ``out``."""
    argv = ["extract", "-F", str(MAPPING), "-o", str(out), "--no-location", "--omit-header",
            "--sort-output"]
    for keyword in KEYWORDS:
        argv += ["-k", keyword]
    out.parent.mkdir(parents=True, exist_ok=True)
    _run([*argv, str(root)])
    return out


def update(translations: Path = TRANSLATIONS, template: Path = TEMPLATE) -> None:
    """Merge the template into every language (``--no-fuzzy-matching``: no guesses).

    The header block of each ``.po`` stays: it carries ``Plural-Forms``, without which
    ``ngettext`` falls back to English plural rules (Russian has three forms, Chinese one).
    Only the template is extracted without a header, so that it diffs cleanly."""
    extract(template)
    for code in TRANSLATED:
        po = translations / code / "LC_MESSAGES" / f"{DOMAIN}.po"
        if po.exists():
            _run(["update", "-i", str(template), "-o", str(po), "-l", code,
                  "--no-fuzzy-matching", "--ignore-obsolete"])
        else:
            _run(["init", "-i", str(template), "-o", str(po), "-l", code])


def compile_all() -> None:
    """``.po`` -> ``.mo`` for every language; fuzzy entries are not used."""
    for code in TRANSLATED:
        folder = TRANSLATIONS / code / "LC_MESSAGES"
        _run(["compile", "-i", str(folder / f"{DOMAIN}.po"), "-o",
              str(folder / f"{DOMAIN}.mo"), "-l", code])


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    actions = {"extract": lambda: print(extract()), "update": update,
               "compile": compile_all}
    if len(args) != 1 or args[0] not in actions:
        print("usage: python3 -m appliance.web.catalogs compile|extract|update",
              file=sys.stderr)
        return 2
    actions[args[0]]()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
