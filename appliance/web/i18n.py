"""Languages of the wizard and the admin UI (issue 21): which one a request gets, and the switch.

Every page is written in English with each user-visible string marked for gettext; the
catalogs live in ``appliance/web/translations`` (``.po`` in git, ``.mo`` compiled by
``make`` and by the image build).  A request's language is, in this order:

1. the ``ocgate_lang`` cookie: what this browser picked with the switch on any page;
2. the signed-in admin's stored choice (admin UI only; the switch stores it);
3. the device default: the language the first-boot wizard was completed in;
4. the browser's ``Accept-Language``;
5. English.

The switch is a small POST form (CSRF-checked like every other form, no JavaScript) on
every page.  Right-to-left languages get ``dir="rtl"`` on ``<html>``; the stylesheet uses
logical properties only, so the layout mirrors without a second stylesheet.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from flask import Blueprint, Flask, current_app, redirect, request
from flask_babel import Babel, get_locale
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response as WerkzeugResponse

from . import l10n

log = logging.getLogger(__name__)

TRANSLATIONS = Path(__file__).resolve().parent / "translations"
DOMAIN = "messages"
EXTENSION = "ocgate_i18n"
COOKIE = "ocgate_lang"
COOKIE_MAX_AGE = 365 * 24 * 3600


@dataclass(frozen=True)
class Language:
    """One supported language: its catalog name, BCP 47 tag, own name and direction."""

    code: str
    tag: str
    name: str
    rtl: bool = False


LANGUAGES: tuple[Language, ...] = (
    Language("en", "en", "English"),
    Language("de", "de", "Deutsch"),
    Language("es", "es", "Español"),
    Language("fr", "fr", "Français"),
    Language("fa", "fa", "فارسی", rtl=True),
    Language("zh_Hans", "zh-Hans", "简体中文"),
    Language("ru", "ru", "Русский"),
    Language("tr", "tr", "Türkçe"),
)
BY_CODE = {lang.code: lang for lang in LANGUAGES}
DEFAULT = "en"
#: Languages that need a compiled catalog (English is the source text).
TRANSLATED = tuple(lang.code for lang in LANGUAGES if lang.code != DEFAULT)


def known(code: object) -> str | None:
    """``code`` if it names a supported language exactly, else None (cookies, files)."""
    return code if isinstance(code, str) and code in BY_CODE else None


def match_tag(tag: str) -> str | None:
    """The supported language for one Accept-Language tag (``fa-IR`` -> ``fa``).

    Chinese needs care: ``zh``, ``zh-CN``, ``zh-SG`` and ``zh-Hans-*`` are Simplified;
    ``zh-TW``, ``zh-HK``, ``zh-MO`` and ``zh-Hant-*`` are Traditional, which we do not have,
    so they match nothing rather than a script the reader may not read.
    """
    parts = tag.strip().replace("_", "-").lower().split("-")
    if not parts or not parts[0]:
        return None
    if parts[0] == "zh":
        rest = set(parts[1:])
        if "hant" in rest or (rest & {"tw", "hk", "mo"} and "hans" not in rest):
            return None
        return "zh_Hans"
    return parts[0] if parts[0] in BY_CODE else None


def from_accept_language(header_values: list[tuple[str, float]]) -> str | None:
    """First supported language in the (tag, quality) pairs, best quality first."""
    for tag, quality in sorted(header_values, key=lambda item: -item[1]):
        if quality <= 0 or tag == "*":
            continue
        code = match_tag(tag)
        if code is not None:
            return code
    return None


@dataclass
class I18nHooks:
    """What an app tells the language selection; the defaults know nothing stored."""

    device_default: Callable[[], str | None] = lambda: None
    account_language: Callable[[], str | None] = lambda: None
    remember: Callable[[str], None] = lambda code: None
    https: bool = False
    cookie: str = field(default=COOKIE)


def _hooks() -> I18nHooks:
    hooks: I18nHooks = current_app.extensions[EXTENSION]
    return hooks


def cookie_language() -> str | None:
    return known(request.cookies.get(_hooks().cookie))


def select_locale() -> str:
    """The language of the current request (order in the module docstring)."""
    hooks = _hooks()
    for candidate in (cookie_language, hooks.account_language, hooks.device_default):
        try:
            code = known(candidate())
        except Exception:  # a broken preferences file must not break every page
            log.exception("language preference unreadable")
            code = None
        if code is not None:
            return code
    accepted = [(str(tag), float(q)) for tag, q in request.accept_languages]
    return from_accept_language(accepted) or DEFAULT


def current() -> Language:
    """The request's language (English outside a request)."""
    locale = get_locale()
    return BY_CODE.get(str(locale), BY_CODE[DEFAULT]) if locale is not None else \
        BY_CODE[DEFAULT]


def _local_get_path(path: str) -> bool:
    """True for a path of this app that answers GET: where the switch may send you back."""
    if not path.startswith("/") or path.startswith("//") or "\\" in path:
        return False
    adapter = current_app.url_map.bind("localhost")
    try:
        adapter.match(path.split("?", 1)[0], method="GET")
    except HTTPException as exc:
        # a redirect (trailing slash) still ends on a GET page
        return getattr(exc, "code", 0) in (301, 308)
    return True


def back_to() -> str:
    """Where the switch on the current page returns to (the page itself if it can GET)."""
    path = request.full_path.rstrip("?") if request.method == "GET" else request.path
    return path if _local_get_path(path.split("?", 1)[0]) else "/"


def make_blueprint(url: str) -> Blueprint:
    bp = Blueprint("i18n", __name__)

    @bp.post(url, endpoint="switch")
    def switch() -> WerkzeugResponse:
        code = known(request.form.get("lang"))
        target = request.form.get("next", "/")
        if not _local_get_path(target.split("?", 1)[0]):
            target = "/"
        response = redirect(target, code=303)
        if code is None:
            return response
        hooks = _hooks()
        response.set_cookie(hooks.cookie, code, max_age=COOKIE_MAX_AGE, path="/",
                            secure=hooks.https, httponly=True, samesite="Lax")
        try:
            hooks.remember(code)
        except OSError as exc:  # the cookie still works; the account default did not save
            log.error("could not store the language %s: %s", code, exc)
        log.info("language switched to %s", code)
        return response

    return bp


def init_i18n(app: Flask, hooks: I18nHooks | None = None, *, url: str = "/language") -> None:
    """Flask-Babel with our catalogs and selection, the switch at ``url``, Jinja globals."""
    hooks = hooks or I18nHooks()
    if hooks.https:
        hooks.cookie = "__Host-" + COOKIE
    app.extensions[EXTENSION] = hooks
    app.jinja_env.policies["ext.i18n.trimmed"] = True  # same as babel.cfg's trimmed
    Babel(app, default_locale=DEFAULT, default_translation_directories=str(TRANSLATIONS),
          locale_selector=select_locale)
    app.register_blueprint(make_blueprint(url))
    app.jinja_env.globals.update(languages=LANGUAGES, current_language=current,
                                 language_back_to=back_to)
    app.jinja_env.filters.update(bytes=l10n.format_bytes, rate=l10n.format_rate,
                                 duration=l10n.format_duration, epoch=l10n.format_epoch,
                                 day=l10n.format_day, number=l10n.format_number,
                                 percent=l10n.format_percent)


def missing_catalogs() -> list[str]:
    """Languages whose compiled catalog is absent or older than its ``.po`` file."""
    missing = []
    for code in TRANSLATED:
        folder = TRANSLATIONS / code / "LC_MESSAGES"
        po, mo = folder / f"{DOMAIN}.po", folder / f"{DOMAIN}.mo"
        if not mo.exists() or (po.exists() and po.stat().st_mtime > mo.stat().st_mtime):
            missing.append(code)
    return missing
