"""Settings pages: generated from OPTIONS, validated, diff preview, atomic apply + reload."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.vpn.config import OPTIONS, ConfigDocument, load_config
from appliance.webui.settingsform import GROUPS, apply_form, fields_for
from tests.support.webui import (
    UI,
    post,
)


def text(response) -> str:  # noqa: ANN001
    return response.get_data(as_text=True)


def group_form(admin, slug: str) -> dict[str, str]:  # noqa: ANN001
    """The form as the browser would submit it unchanged."""
    page = text(admin.get(f"/settings/group/{slug}"))
    values: dict[str, str] = {}
    for name, value in re.findall(r'<input id="opt-[^"]+" name="([^"]+)" type="text" '
                                  r'value="([^"]*)"', page):
        values[name] = value
    for name, body in re.findall(r'<textarea id="opt-[^"]+" name="([^"]+)"[^>]*>([^<]*)<',
                                 page):
        values[name] = body
    for name, body in re.findall(r'<select id="opt-[^"]+" name="([^"]+)">(.*?)</select>',
                                 page, re.S):
        chosen = re.search(r'value="([^"]*)" selected', body)
        values[name] = chosen.group(1) if chosen else ""
    return values


def test_every_group_renders_its_options_with_help(admin) -> None:
    index = text(admin.get("/settings/"))
    for group in GROUPS:
        assert f"/settings/group/{group.slug}" in index
        page = text(admin.get(f"/settings/group/{group.slug}"))
        for name in group.options:
            assert f'name="{name}"' in page, name
            assert OPTIONS[name].help.split(",")[0][:30] in page.replace("&#39;", "'"), name


def test_unchanged_form_changes_nothing(ui: UI, admin) -> None:
    for group in GROUPS:
        response = post(admin, f"/settings/group/{group.slug}", group_form(admin, group.slug),
                        form_page="/settings/")
        assert response.status_code == 303, (group.slug, text(response))
        assert "Nothing changed" in text(admin.get(response.headers["Location"]))
    assert ui.ctx.drafts.current("x") is None


def test_change_route_review_diff_then_apply(ui: UI, admin) -> None:
    before = ui.layout.conf.read_text()
    form = group_form(admin, "dns-routes")
    assert form["route"] == "192.168.1.0/24"
    form["route"] = "192.168.1.0/24\n198.18.2.0/24"
    response = post(admin, "/settings/group/dns-routes", form, form_page="/settings/")
    assert response.headers["Location"] == "/settings/review"
    review = text(admin.get("/settings/review"))
    assert '<span class="diff-add">+route = 198.18.2.0/24</span>' in review
    assert ui.layout.conf.read_text() == before  # nothing written before "Apply"
    draft = re.search(r'name="draft" value="([^"]+)"', review)
    assert draft is not None
    applied = post(admin, "/settings/apply", {"draft": draft.group(1)}, form_page="/settings/")
    assert applied.headers["Location"] == "/settings/group/dns-routes"
    cfg = load_config(str(ui.layout.conf))
    assert [str(r) for r in cfg.route] == ["192.168.1.0/24", "198.18.2.0/24"]
    assert ("reload", None) in ui.vpn.calls
    assert (ui.layout.root / "ocserv.conf.bak").read_text() == before
    after = ui.layout.conf.read_text()
    assert after.startswith("# OCGate configuration")  # comments survive
    assert "connected users stay connected" in text(admin.get("/settings/group/dns-routes"))
    # the same draft cannot be applied twice
    again = post(admin, "/settings/apply", {"draft": draft.group(1)}, form_page="/settings/")
    assert again.headers["Location"] == "/settings/"
    assert ui.layout.conf.read_text() == after


def test_field_errors_are_clear_and_nothing_is_written(ui: UI, admin) -> None:
    before = ui.layout.conf.read_text()
    form = group_form(admin, "network")
    form.update({"udp-port": "70000", "max-clients": "many", "ipv4-network": "10.73.0.0/33"})
    response = post(admin, "/settings/group/network", form, form_page="/settings/")
    assert response.status_code == 400
    page = text(response)
    assert "udp-port:" in page and "max-clients:" in page and "ipv4-network:" in page
    assert 'value="70000"' in page  # the form keeps what was typed
    assert ui.layout.conf.read_text() == before and ui.ctx.drafts.current("x") is None


def test_whole_file_errors_are_reported(ui: UI, admin) -> None:
    form = group_form(admin, "network")
    form["ipv4-network"] = ""
    response = post(admin, "/settings/group/network", form, form_page="/settings/")
    assert response.status_code == 400 and "no address pool" in text(response)


def test_restart_only_options_are_named(ui: UI, admin) -> None:
    form = group_form(admin, "network")
    form["tcp-port"] = "8443"
    post(admin, "/settings/group/network", form, form_page="/settings/")
    review = text(admin.get("/settings/review"))
    assert "Needs a restart" in review and "tcp-port" in review


def test_raw_view_is_validated(ui: UI, admin) -> None:
    current = text(admin.get("/settings/raw"))
    assert "ipv4-network = 10.73.0.0/24" in current
    bad = post(admin, "/settings/raw", {"text": "auth = plain[passwd=/x]\nmtu = tiny\n"},
               form_page="/settings/")
    assert bad.status_code == 400 and "ocserv.conf:2" in text(bad)
    new = ui.layout.conf.read_text() + "# a note from the admin\nmtu = 1400\n"
    ok = post(admin, "/settings/raw", {"text": new}, form_page="/settings/")
    assert ok.headers["Location"] == "/settings/review"
    review = text(admin.get("/settings/review"))
    assert "+mtu = 1400" in review
    draft = re.search(r'name="draft" value="([^"]+)"', review).group(1)  # type: ignore[union-attr]
    post(admin, "/settings/apply", {"draft": draft}, form_page="/settings/")
    assert load_config(str(ui.layout.conf)).mtu == 1400
    huge = post(admin, "/settings/raw", {"text": "#" * 300_000}, form_page="/settings/")
    assert huge.status_code in (400, 413)


def test_apply_refuses_when_the_file_changed_meanwhile(ui: UI, admin) -> None:
    form = group_form(admin, "timeouts")
    form["dpd"] = "60"
    post(admin, "/settings/group/timeouts", form, form_page="/settings/")
    draft = ui.ctx.drafts._drafts[next(iter(ui.ctx.drafts._drafts))]
    ui.layout.conf.write_text(ui.layout.conf.read_text() + "mtu = 1300\n")
    assert "applying will be refused" in text(admin.get("/settings/review"))
    response = post(admin, "/settings/apply", {"draft": draft.id}, form_page="/settings/")
    assert response.headers["Location"] == "/settings/"
    assert load_config(str(ui.layout.conf)).dpd == 90
    assert "changed by someone else" in text(admin.get("/settings/"))


def test_discard(ui: UI, admin) -> None:
    form = group_form(admin, "compression")
    form["compression"] = "on"
    post(admin, "/settings/group/compression", form, form_page="/settings/")
    post(admin, "/settings/discard", form_page="/settings/")
    assert "no changes waiting" in text(admin.get("/settings/review", follow_redirects=True))
    assert load_config(str(ui.layout.conf)).compression is False


def test_apply_with_the_server_stopped_still_saves(ui: UI, admin) -> None:
    form = group_form(admin, "security")
    form["banner"] = "Hello from the admin"
    post(admin, "/settings/group/security", form, form_page="/settings/")
    draft = ui.ctx.drafts._drafts[next(iter(ui.ctx.drafts._drafts))]
    ui.vpn.online = False
    post(admin, "/settings/apply", {"draft": draft.id}, form_page="/settings/")
    assert load_config(str(ui.layout.conf)).banner == "Hello from the admin"
    assert "apply when it starts" in text(admin.get("/settings/"))


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from([n for g in GROUPS for n in g.options]),
                       st.text(max_size=40), max_size=6))
def test_hostile_form_values_never_crash(values: dict[str, str]) -> None:
    """Any form input either edits the document or yields field errors, nothing else."""
    base = "auth = plain[passwd=/tmp/x]\nipv4-network = 10.0.0.0/24\n"
    for group in GROUPS:
        doc = ConfigDocument(base)
        errors = apply_form(group, doc, {k: v for k, v in values.items()
                                         if k in group.options})
        assert isinstance(errors, dict)
        fields_for(group, doc)
