"""Issue 21: every string people read is marked, the catalogs follow the code, every
language is complete, and the language selection, switch and formats behave.

The checks read the source (Python AST, Jinja AST, the stylesheets and the script), so a
new unmarked sentence, a catalog not refreshed with ``make catalog``, or an empty or fuzzy
translation fails here with the file and the text.
"""

from __future__ import annotations

import ast
import re
import tempfile
from collections.abc import Iterator
from gettext import c2py
from html.parser import HTMLParser
from pathlib import Path

import pytest
from babel.messages.plurals import get_plural
from babel.messages.pofile import read_po
from flask import Flask
from flask_babel import force_locale
from jinja2 import Environment, nodes

from appliance.web import catalogs, i18n, l10n
from appliance.web.app import create_base_app
from appliance.web.i18n import LANGUAGES, TRANSLATED, TRANSLATIONS, from_accept_language

REPO = Path(__file__).resolve().parents[2]
APPLIANCE = REPO / "appliance"
UI_PACKAGES = [APPLIANCE / "web", APPLIANCE / "webui", APPLIANCE / "firstboot"]
TEMPLATES = sorted(APPLIANCE.glob("*/templates/**/*.html"))
GETTEXT = {"_", "_l", "gettext", "ngettext", "lazy_gettext", "lazy_ngettext"}

# ---------------------------------------------------------------- Python strings

#: Contexts whose text is not shown on a page: logs, command lines, argument parsers,
#: regular expressions, and the control-socket commands.  (Logs and CLIs stay English.)
NOT_SHOWN_CALLS = {"print", "add_argument", "ArgumentParser", "compile", "sub", "match",
                   "fullmatch", "search", "_call", "_records", "write_text"}
#: Exceptions that carry log text, or details that a page shows inside a translated frame
#: ("Applying the settings failed: %(reason)s"): technical, never a page's own sentence.
INTERNAL_ERRORS = {"ValueError", "RuntimeError", "TypeError", "OSError", "CsrfError",
                   "VpnUnavailable", "ApplyError", "AlreadySetUpError", "NetworkParseError",
                   "SetupCodeError", "MdnsError", "NoFreeSubnetError", "PkiError"}
#: Whole files that write no page text: CLIs, console banners, files on disk, Prometheus.
NOT_SHOWN_FILES = {"__main__.py", "catalogs.py", "i18nextract.py", "metrics.py",
                   "service.py", "plan.py", "setupcode.py", "logsource.py"}
#: The remaining literals that look like words but are no sentence for a reader, each with
#: the reason (file name, start of the text).
NOT_SHOWN_TEXT = {
    ("passwords.py", "\n123456"): "the list of common passwords",
    ("vpnclient.py", "reload requested"): "server text, translated by servermessages.py",
    ("apply.py", "not run"): "hand-over result in the log",
    ("certs.py", "OCGate CA ("): "certificate subject",
    ("mdns.py", "OCGate setup"): "mDNS service name",
    ("userstore.py", "# Settings for VPN user"): "comment in the per-user file",
    ("settingsform.py", "^invalid value for"): "regular expression",
    ("app.py", "not signed in"): "JSON error of /api/live for the script, not shown",
    ("pages/metrics.py", "Bearer realm="): "HTTP header",
    ("network.py", "ip addr"): "the command whose output failed to parse (log detail)",
    ("network.py", "ip route"): "the command whose output failed to parse (log detail)",
}
SENTENCE = re.compile(r"[A-Za-z]{2,}[ ,;:]+[A-Za-z]{2,}")


def _call_name(call: ast.Call) -> str:
    func = call.func
    if isinstance(func, ast.Name):
        return func.id
    return func.attr if isinstance(func, ast.Attribute) else ""


def _is_log_call(call: ast.Call) -> bool:
    func = call.func
    return (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)
            and func.value.id in ("log", "logging", "logger"))


def _exempt(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    parent = parents.get(node)
    while parent is not None:
        if isinstance(parent, ast.Call):
            name = _call_name(parent)
            if name in GETTEXT or name in NOT_SHOWN_CALLS or _is_log_call(parent):
                return True
        if isinstance(parent, ast.Raise) and isinstance(parent.exc, ast.Call) \
                and _call_name(parent.exc) in INTERNAL_ERRORS:
            return True
        parent = parents.get(parent)
    return False


def unmarked_python(path: Path) -> Iterator[tuple[int, str]]:
    """(line, text) of sentence-like literals outside gettext and the exempt contexts."""
    tree = ast.parse(path.read_text(), str(path))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    docstrings = {body[0].value for node in ast.walk(tree)
                  if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef)
                  and (body := node.body) and isinstance(body[0], ast.Expr)
                  and isinstance(body[0].value, ast.Constant)}
    rel = path.relative_to(APPLIANCE).as_posix()
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            text = "".join(v.value for v in node.values if isinstance(v, ast.Constant))
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str)
              and node not in docstrings and not isinstance(parents.get(node), ast.JoinedStr)):
            text = node.value
        else:
            continue
        if not SENTENCE.search(text) or text.startswith(("attachment; filename=", "/")):
            continue
        if any(rel.endswith(name) and text.startswith(start)
               for name, start in NOT_SHOWN_TEXT):
            continue
        if not _exempt(node, parents):
            yield node.lineno, text


def test_python_strings_shown_to_users_are_marked() -> None:
    found = [f"{path.relative_to(REPO)}:{line}: {text[:80]!r}"
             for package in UI_PACKAGES for path in sorted(package.rglob("*.py"))
             if path.name not in NOT_SHOWN_FILES
             for line, text in unmarked_python(path)]
    assert found == [], "mark these for translation (gettext/_l):\n" + "\n".join(found)


def test_the_python_check_catches_an_unmarked_sentence(tmp_path: Path) -> None:
    sample = APPLIANCE / "webui" / "_sample_for_test.py"
    sample.write_text('def f(flash):\n    flash("The user was added.", "success")\n'
                      '    flash(_("The user was added."), "success")\n')
    try:
        assert [text for _line, text in unmarked_python(sample)] == ["The user was added."]
    finally:
        sample.unlink()


# ---------------------------------------------------------------- templates

#: Words that are the same in every language: product and platform names, protocols.
NAMES = re.compile(r"\b(OCGate|OpenConnect|Windows|macOS|Android|RADIUS|DTLS|TLS|HTTP|DuckDNS|"
                   r"Let's Encrypt|"
                   r"ocserv\.conf|X{4}(?:-X{4})+)\b")
CHECKED_ATTRIBUTES = {"title", "placeholder", "aria-label", "alt"}
LETTER = re.compile(r"[^\W\d_]")


class _TextCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.texts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        self.texts += [f"{tag}[{name}]={value}" for name, value in attrs
                       if name in CHECKED_ATTRIBUTES and value and LETTER.search(
                           NAMES.sub("", value.replace("\x00", "")))]

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip and LETTER.search(NAMES.sub("", data.replace("\x00", ""))):
            self.texts.append(data.replace("\x00", "").strip())


def _flatten(node: nodes.Node, out: list[str], problems: list[str]) -> None:
    """The template as HTML with every expression replaced by a placeholder (\\x00)."""
    if isinstance(node, nodes.TemplateData):
        out.append(node.data)
        return
    if isinstance(node, nodes.Block) and node.name == "body_class":
        return  # a class name, inside <body class="...">
    if isinstance(node, nodes.Output):
        for child in node.nodes:
            if isinstance(child, nodes.TemplateData):
                out.append(child.data)
            else:  # printed constants stay in place: the HTML parser sees their context
                out.append("".join(_printed_constants(child)) or "\x00")
                _flatten_calls(child, problems)
        return
    if isinstance(node, nodes.Call) and isinstance(node.node, nodes.Name) \
            and node.node.name == "field":  # the form macro: its label and help
        args = [a for i, a in enumerate(node.args) if i == 1]
        args += [k.value for k in node.kwargs if k.key == "help"]
        for arg in args:
            if isinstance(arg, nodes.Const) and isinstance(arg.value, str) \
                    and LETTER.search(arg.value):
                problems.append(f"field label/help {arg.value!r} (line {node.lineno})")
    for child in node.iter_child_nodes():
        _flatten(child, out, problems)


def _printed_constants(expr: nodes.Node) -> Iterator[str]:
    """String constants an expression may print as they are (``{{ "Lock" if x else y }}``)."""
    if isinstance(expr, nodes.Const) and isinstance(expr.value, str):
        yield expr.value
    elif isinstance(expr, nodes.CondExpr):
        yield from _printed_constants(expr.expr1)
        if expr.expr2 is not None:
            yield from _printed_constants(expr.expr2)
    elif isinstance(expr, nodes.Or | nodes.And):
        yield from _printed_constants(expr.left)
        yield from _printed_constants(expr.right)


def _flatten_calls(expr: nodes.Node, problems: list[str]) -> None:
    """Macro calls inside an output (``{{ field(...) }}``): their label and help."""
    for call in expr.find_all(nodes.Call):
        _flatten(call, [], problems)
    if isinstance(expr, nodes.Call):
        _flatten(expr, [], problems)


def unmarked_template_text(source: str) -> list[str]:
    env = Environment(extensions=["jinja2.ext.i18n"])
    tree = env.parse(source)
    html: list[str] = []
    problems: list[str] = []
    _flatten(tree, html, problems)
    collector = _TextCollector()
    collector.feed("".join(html))
    collector.close()
    return [f"text {t!r}" for t in collector.texts] + problems


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: str(p.relative_to(APPLIANCE)))
def test_template_text_is_marked(template: Path) -> None:
    assert unmarked_template_text(template.read_text()) == []


def test_the_template_check_catches_unmarked_text() -> None:
    source = ('<p title="Open it">{{ _("Fine") }} Not fine {{ x }}</p>{% trans %}ok'
              '{% endtrans %}{{ "Lock" if a else _("Unlock") }}{{ field("u", "User") }}'
              '<code>{{ y }}</code> DTLS · {{ z }}')
    found = unmarked_template_text(source)
    assert found == ["text 'p[title]=Open it'", "text 'Not fine'", "text 'Lock'",
                     "field label/help 'User' (line 1)"]


# ---------------------------------------------------------------- script and stylesheets

#: Every string literal of live.js is a selector, key or option: none is shown.
JS_LITERALS = {"use strict", "live", "2", "[data-live]", "[data-live-table=sessions]",
               "tr[data-id]", ",", "[data-field]", "graph", "series-tx", "series-rx",
               "points", " ", "same-origin", "no-store", ".", "${s.id}"}


def test_live_js_has_no_text_of_its_own() -> None:
    script = (APPLIANCE / "webui" / "static" / "live.js").read_text()
    script = re.sub(r"//[^\n]*", "", script)
    literals = set(re.findall(r'"([^"\\]*)"', script))
    assert literals <= JS_LITERALS, literals - JS_LITERALS
    templates = re.findall(r"`([^`]*)`", script)  # template strings: only data
    assert all(not LETTER.search(re.sub(r"\$\{[^}]*\}", "", t).replace("tr[data-id=", ""))
               for t in templates), templates


@pytest.mark.parametrize("sheet", sorted(APPLIANCE.glob("*/static/*.css")),
                         ids=lambda p: p.name)
def test_stylesheets_use_logical_directions_only(sheet: Path) -> None:
    """A mirrored layout needs inline-start/end: a physical left or right stays put."""
    text = re.sub(r"/\*.*?\*/", "", sheet.read_text(), flags=re.S)
    physical = re.findall(r"[^\n]*\b(?:left|right)\b[^\n]*", text)
    assert physical == []


# ---------------------------------------------------------------- catalogs


def _ids(path: Path) -> set[tuple[str, ...]]:
    with path.open("rb") as handle:
        catalog = read_po(handle)
    return {tuple(m.id) if isinstance(m.id, tuple) else (m.id,) for m in catalog if m.id}


def _po(code: str) -> Path:
    return TRANSLATIONS / code / "LC_MESSAGES" / f"{i18n.DOMAIN}.po"


def test_catalogs_are_up_to_date_with_the_code() -> None:
    """``pybabel extract`` now must give exactly the template and the messages of each
    language (else: ``make catalog`` and translate)."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = _ids(catalogs.extract(Path(tmp) / "messages.pot"))
    assert len(fresh) > 400
    committed = _ids(catalogs.TEMPLATE)
    assert fresh - committed == set(), "new strings not in messages.pot: make catalog"
    assert committed - fresh == set(), "strings in messages.pot that the code lost"
    for code in TRANSLATED:
        ids = _ids(_po(code))
        assert fresh - ids == set(), f"{code}: strings missing, run make catalog"
        assert ids - fresh == set(), f"{code}: obsolete strings, run make catalog"


RAW_SIZE = re.compile(r"%\(\w+\)[ds]\s*(?:[KMGT]i?B|bytes?)\b")


def raw_sizes(ids: set[tuple[str, ...]]) -> list[str]:
    """Messages that glue a number to a byte unit: the unit then cannot follow the
    language (``1,5 Mo``, ``1.5 MB``); such sizes go through l10n.format_bytes."""
    return [text for message in ids for text in message if RAW_SIZE.search(text)]


def test_byte_sizes_in_messages_are_formatted_for_the_language() -> None:
    assert raw_sizes(_ids(catalogs.TEMPLATE)) == []
    assert sorted(raw_sizes({("At most %(num)d KiB.",), ("Larger than %(max)s MB",)})) == [
        "At most %(num)d KiB.", "Larger than %(max)s MB"]
    assert raw_sizes({("At most %(size)s.",), ("%(num)d bytesize",)}) == []


def test_the_catalog_check_catches_a_new_marked_string(tmp_path: Path) -> None:
    """The comparison above can fail: a tree with one sentence marked in a page of its own
    extracts an id that messages.pot lacks."""
    page = tmp_path / "appliance" / "webui" / "templates" / "webui" / "new.html"
    page.parent.mkdir(parents=True)
    page.write_text("<p>{{ _('A sentence nobody has translated yet') }}</p>\n")
    fresh = _ids(catalogs.extract(tmp_path / "messages.pot", root=tmp_path))
    assert fresh - _ids(catalogs.TEMPLATE) == {("A sentence nobody has translated yet",)}


def test_catalog_update_keeps_each_header_and_translation(tmp_path: Path) -> None:
    """``make catalog`` on catalogs that already follow the code changes nothing a reader
    needs: the header (with ``Plural-Forms``) and every translation stay."""
    import shutil

    from babel.messages.pofile import read_po

    shutil.copytree(i18n.TRANSLATIONS, tmp_path / "t")
    catalogs.update(tmp_path / "t", tmp_path / "t" / "messages.pot")
    for code in i18n.TRANSLATED:
        name = Path(code, "LC_MESSAGES", f"{i18n.DOMAIN}.po")
        with open(i18n.TRANSLATIONS / name, "rb") as a, open(tmp_path / "t" / name, "rb") as b:
            before, after = read_po(a, locale=code), read_po(b, locale=code)
        assert after.plural_forms == before.plural_forms, code
        assert "Plural-Forms" in (tmp_path / "t" / name).read_text(encoding="utf-8"), code
        assert {m.id: m.string for m in after if m.id} == {
            m.id: m.string for m in before if m.id}, code


#: Non-Latin scripts: a translation without a single letter of the script is English left
#: in place by mistake (unless the whole text is names, addresses and placeholders).
SCRIPTS = {"fa": re.compile(r"[\u0600-\u06FF]"), "ru": re.compile(r"[\u0400-\u04FF]"),
           "zh_Hans": re.compile(r"[\u4E00-\u9FFF]")}
LATIN_ONLY_OK = {"%(proto)s port %(port)d"}


@pytest.mark.parametrize("code", TRANSLATED)
def test_every_language_is_complete_and_not_fuzzy(code: str) -> None:
    with _po(code).open("rb") as handle:
        catalog = read_po(handle, locale=code)
    problems = []
    for message in catalog:
        if not message.id:
            continue
        label = message.id[0] if isinstance(message.id, tuple) else message.id
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        if message.fuzzy:
            problems.append(f"fuzzy: {label!r}")
        if not all(strings) or (isinstance(message.id, tuple)
                                and len(strings) != catalog.num_plurals):
            problems.append(f"untranslated: {label!r}")
        script = SCRIPTS.get(code)
        if script and all(strings) and label not in LATIN_ONLY_OK and \
                SENTENCE.search(label) and not all(script.search(s) for s in strings):
            problems.append(f"not in the language's script: {label!r}")
    for message, errors in catalog.check():  # placeholders must match the English
        problems += [f"{message.id!r}: {error}" for error in errors]
    assert problems == []


def translated(code: str, msgid: str) -> str:
    """The catalog's own translation of ``msgid`` (pages are compared to the catalog, not to
    text copied into the test, so a translator's rewording keeps the tests right)."""
    with _po(code).open("rb") as handle:
        message = read_po(handle, locale=code).get(msgid)
    assert message is not None, f"{msgid!r} is not in the {code} catalog"
    assert message.string and not message.fuzzy, f"{code}: {msgid!r} is not translated"
    return str(message.string)


@pytest.mark.parametrize("code", TRANSLATED)
def test_plural_forms_follow_the_languages_rules(code: str) -> None:
    """The header's plural rule is Babel's (CLDR) for the language, and every plural message
    has exactly that many forms: Russian needs three, Chinese one, Persian two with 0 and 1
    both singular."""
    with _po(code).open("rb") as handle:
        catalog = read_po(handle, locale=code)
    rule = get_plural(code)
    assert (catalog.num_plurals, catalog.plural_expr) == (rule.num_plurals, rule.plural_expr)
    plurals = [m for m in catalog if m.id and isinstance(m.id, tuple)]
    assert plurals, "no plural message at all: the ngettext marks were lost"
    for message in plurals:
        assert len(message.string) == rule.num_plurals, message.id


@pytest.mark.parametrize("code,counts", [
    ("ru", {1: 0, 21: 0, 2: 1, 4: 1, 22: 1, 5: 2, 11: 2, 12: 2, 111: 2, 0: 2}),
    ("fa", {0: 0, 1: 0, 2: 1}),
    ("zh_Hans", {0: 0, 1: 0, 7: 0}),
    ("de", {0: 1, 1: 0, 2: 1}),
])
def test_the_plural_rule_picks_the_cldr_form(code: str, counts: dict[int, int]) -> None:
    """The rule in the catalog, run the way gettext runs it, gives the form CLDR names."""
    pick = c2py(get_plural(code).plural_expr)
    with _po(code).open("rb") as handle:
        expr = read_po(handle, locale=code).plural_expr
    assert {n: c2py(expr)(n) for n in counts} == {n: pick(n) for n in counts} == counts


def test_compiled_catalogs_are_present_and_fresh() -> None:
    """``make translations`` (run by ``make test``) compiles them; stale ones mean English."""
    assert i18n.missing_catalogs() == [], "run: make translations"


# ---------------------------------------------------------------- selection and switch


@pytest.mark.parametrize("header,expected", [
    ([("fa-IR", 1.0), ("en", 0.5)], "fa"),
    ([("zh-CN", 1.0)], "zh_Hans"),
    ([("zh-Hans-SG", 1.0)], "zh_Hans"),
    ([("zh-TW", 1.0), ("en", 0.8)], "en"),
    ([("zh-Hant", 1.0)], None),
    ([("pt-BR", 1.0), ("de-AT", 0.7)], "de"),
    ([("ru", 0.4), ("tr", 0.9)], "tr"),
    ([("*", 1.0)], None),
    ([("fr", 0.0)], None),
])
def test_accept_language(header: list[tuple[str, float]], expected: str | None) -> None:
    assert from_accept_language(header) == expected


def _page_app(hooks: i18n.I18nHooks | None = None) -> Flask:
    app = create_base_app("tests.unit.test_i18n", i18n=hooks)
    app.config["CSRF_DISABLED"] = True

    @app.get("/page")
    def page() -> str:
        from flask import render_template
        return render_template("error.html", code=200, title="t", message="m")

    return app


def test_page_language_direction_and_switch_cookie() -> None:
    remembered: list[str] = []
    client = _page_app(i18n.I18nHooks(remember=remembered.append)).test_client()
    page = client.get("/page", headers={"Accept-Language": "fa-IR,en;q=0.5"})
    html = page.get_data(as_text=True)
    assert '<html lang="fa" dir="rtl">' in html
    assert translated("fa", "Back to the start") in html
    reply = client.post("/language", data={"lang": "zh_Hans", "next": "/page"})
    assert reply.status_code == 303 and reply.headers["Location"] == "/page"
    cookie = reply.headers["Set-Cookie"]
    assert cookie.startswith("ocgate_lang=zh_Hans") and "HttpOnly" in cookie
    assert remembered == ["zh_Hans"]
    html = client.get("/page", headers={"Accept-Language": "fa"}).get_data(as_text=True)
    assert '<html lang="zh-Hans" dir="ltr">' in html
    assert translated("zh_Hans", "Back to the start") in html


def test_switch_refuses_unknown_languages_and_foreign_targets() -> None:
    client = _page_app().test_client()
    reply = client.post("/language", data={"lang": "xx", "next": "//evil.test/"})
    assert reply.headers["Location"] == "/" and "Set-Cookie" not in reply.headers


def test_device_default_beats_accept_language_and_cookie_beats_both() -> None:
    hooks = i18n.I18nHooks(device_default=lambda: "ru")
    client = _page_app(hooks).test_client()
    html = client.get("/page", headers={"Accept-Language": "de"}).get_data(as_text=True)
    assert '<html lang="ru"' in html
    client.set_cookie("ocgate_lang", "tr")
    assert '<html lang="tr"' in client.get("/page").get_data(as_text=True)
    client.set_cookie("ocgate_lang", "klingon")  # unknown: ignored
    assert '<html lang="ru"' in client.get("/page").get_data(as_text=True)


def test_every_language_has_a_switch_button() -> None:
    html = _page_app().test_client().get("/page").get_data(as_text=True)
    for language in LANGUAGES:
        assert f'value="{language.code}" lang="{language.tag}"' in html
        assert language.name in html


# ---------------------------------------------------------------- formats


@pytest.mark.parametrize("code,size,duration,percent", [
    ("en", "1.5 MB", "3 days 4 hr", "12.3%"),
    ("de", "1,5 MB", "3 Tg., 4 Std.", "12,3 %"),
    ("fr", "1,5 Mo", "3 j 4 h", "12,3 %"),
    ("ru", "1,5 МБ", "3 дн. 4 ч", "12,3 %"),
    ("fa", "1.5 MB", "3 روز 4 ساعت", "12.3٪"),
    ("zh_Hans", "1.5 MB", "3天4小时", "12.3%"),
])
def test_formats_follow_the_language(code: str, size: str, duration: str,
                                     percent: str) -> None:
    app = _page_app()
    def plain(text: str) -> str:  # CLDR's (narrow) no-break spaces
        return text.replace("\u00a0", " ").replace("\u202f", " ")

    with app.test_request_context("/"), force_locale(code):
        assert plain(l10n.format_bytes(1_500_000)) == size
        assert plain(l10n.format_duration(3 * 86400 + 4 * 3600 + 59)) == duration
        assert plain(l10n.format_percent(12.34)) == percent


def test_formats_outside_a_request_are_english() -> None:
    assert l10n.format_wait(31.5) == "32 seconds" and l10n.format_rate(12_500_000) == \
        "12.5 Mb/s"
