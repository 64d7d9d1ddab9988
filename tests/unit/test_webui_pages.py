"""Every page of the admin UI through Flask's test client, with a fake VPN server."""

from __future__ import annotations

import re

from appliance.vpn.config import load_config, load_user_config
from appliance.vpn.control import BanInfo
from appliance.vpn.passwd import load_passwd, verify_password
from appliance.webui.traffic import ThroughputHistory
from tests.support.webui import (
    ALICE,
    ALICE_PASSWORD,
    UI,
    post,
    session_user,
)

NEW_PASSWORD = "amber Falcon river 58 tundra"


def text(response) -> str:  # noqa: ANN001
    return response.get_data(as_text=True)


# --------------------------------------------------------------------------- dashboard


def test_dashboard_online_with_sessions(ui: UI, admin) -> None:
    ui.vpn.users_list = [session_user(1, "alice", dtls=True), session_user(2, "bob", False)]
    page = text(admin.get("/"))
    assert "online" in page and 'id="session-count">2<' in page
    assert ">1</span> DTLS" in page and ">1</span> TLS only" in page
    assert "12.5" in page and "48.5" in page  # CPU and temperature from psutil (faked)
    assert "live.js" in page and 'id="graph"' in page


def test_dashboard_offline(ui: UI, admin) -> None:
    ui.vpn.online = False
    response = admin.get("/")
    assert response.status_code == 200
    assert "offline" in text(response) and "not running" in text(response)
    data = admin.get("/api/live").get_json()
    assert data["online"] is False and data["sessions"] == [] and data["status"] is None


def test_live_json_and_throughput_history(ui: UI, admin) -> None:
    ui.vpn.users_list = [session_user(7, "alice", dtls=False)]
    times = iter([1000.0, 1002.0, 1012.0])
    ui.ctx.wall = lambda: next(times)
    admin.get("/api/live")
    ui.vpn.status_info.rx += 10_000
    admin.get("/api/live")
    ui.vpn.status_info.rx += 15_000
    ui.vpn.status_info.tx += 125_000
    data = admin.get("/api/live").get_json()
    assert data["online"] and data["status"]["sessions"] == 1 and data["status"]["tls"] == 1
    (s,) = data["sessions"]
    assert s["channel"] == "TLS" and s["vpn_ip"] == "10.73.0.2" and s["rx"] == 123456
    # the rate spans the newest sample that is at least 10 s older (1002 -> 1012)
    assert data["rate"]["rx_bps"] == 15_000 * 8 / 10
    assert data["rate"]["tx_bps"] == 125_000 * 8 / 10
    assert data["history"][-1][0] == 1012.0
    assert data["system"]["cpu"] == 12.5


def test_history_restarts_when_counters_go_down() -> None:
    history = ThroughputHistory(smoothing=10)
    history.add(0, 1000, 1000)
    history.add(10, 2000, 2000)
    assert history.latest() is not None
    history.add(20, 5, 5)  # the server restarted
    assert history.latest() is None
    history.add(20.5, 10, 10)  # too soon after the last sample: ignored
    history.add(31, 1005, 5)
    latest = history.latest()
    assert latest is not None and latest.rx_bps == 1000 * 8 / 11


# --------------------------------------------------------------------------- sessions


def test_sessions_list_and_disconnect(ui: UI, admin) -> None:
    ui.vpn.users_list = [session_user(4242, "alice", dtls=True)]
    page = text(admin.get("/sessions/"))
    for expected in ("198.51.100.7", "10.73.0.2", "DTLS", "123.5 kB", "7.7 MB", "2 min 5 sec"):
        assert expected in page, expected
    response = post(admin, "/sessions/4242/disconnect", form_page="/sessions/")
    assert response.status_code == 303
    assert ("disconnect id", 4242) in ui.vpn.calls
    assert "was disconnected" in text(admin.get("/sessions/"))
    post(admin, "/sessions/4242/disconnect", form_page="/sessions/")
    assert "already ended" in text(admin.get("/sessions/"))


def test_bans_and_unban(ui: UI, admin) -> None:
    ui.vpn.bans_list = [BanInfo("203.0.113.9", 80, 2e9)]
    assert "203.0.113.9" in text(admin.get("/sessions/"))
    post(admin, "/sessions/unban", {"ip": "203.0.113.9"}, form_page="/sessions/")
    assert ("unban", "203.0.113.9") in ui.vpn.calls
    post(admin, "/sessions/unban", {"ip": "not-an-ip"}, form_page="/sessions/")
    assert "not an IP address" in text(admin.get("/sessions/"))


def test_sessions_page_when_the_server_is_down(ui: UI, admin) -> None:
    ui.vpn.online = False
    assert "not running" in text(admin.get("/sessions/"))
    post(admin, "/sessions/5/disconnect", form_page="/sessions/")
    assert "not running" in text(admin.get("/sessions/"))


# --------------------------------------------------------------------------- users


def _passwd(ui: UI) -> dict:
    return load_passwd(ui.layout.passwd)


def test_users_list_and_add(ui: UI, admin) -> None:
    page = text(admin.get("/users/"))
    assert ALICE in page and "Add a user" in page
    response = post(admin, "/users/add", {"username": "bob", "groups": "staff, family",
                                          "password": NEW_PASSWORD, "confirm": NEW_PASSWORD},
                    form_page="/users/")
    assert response.status_code == 303 and response.headers["Location"] == "/users/bob"
    entry = _passwd(ui)["bob"]
    assert entry.groups == ["staff", "family"] and verify_password(entry, NEW_PASSWORD)
    assert entry.hash.startswith("$5$")
    assert ui.layout.passwd.stat().st_mode & 0o777 == 0o600


def test_add_user_refusals(ui: UI, admin) -> None:
    cases = [
        ({"username": "bob", "password": "short", "confirm": "short"}, "at least 12"),
        ({"username": "bob", "password": NEW_PASSWORD, "confirm": "other"}, "differ"),
        ({"username": "bad:name", "password": NEW_PASSWORD, "confirm": NEW_PASSWORD},
         "may use letters"),
        ({"username": "../etc", "password": NEW_PASSWORD, "confirm": NEW_PASSWORD},
         "may use letters"),
        ({"username": ALICE, "password": NEW_PASSWORD, "confirm": NEW_PASSWORD},
         "exists already"),
        ({"username": "bob", "groups": "x:y", "password": NEW_PASSWORD,
          "confirm": NEW_PASSWORD}, "not valid"),
    ]
    for data, message in cases:
        response = post(admin, "/users/add", data, form_page="/users/")
        assert response.status_code == 400 and message in text(response), (data, message)
    assert set(_passwd(ui)) == {ALICE}


def test_groups_lock_unlock_password_delete(ui: UI, admin) -> None:
    ui.vpn.users_list = [session_user(9, ALICE)]
    assert "Per-user settings" in text(admin.get(f"/users/{ALICE}"))
    post(admin, f"/users/{ALICE}/groups", {"groups": "staff"}, form_page="/users/")
    assert _passwd(ui)[ALICE].groups == ["staff"]

    post(admin, f"/users/{ALICE}/lock", {"locked": "1"}, form_page="/users/")
    assert _passwd(ui)[ALICE].locked
    assert ("disconnect user", ALICE) in ui.vpn.calls  # a locked user is thrown out
    assert not verify_password(_passwd(ui)[ALICE], ALICE_PASSWORD)

    post(admin, f"/users/{ALICE}/password", {"password": NEW_PASSWORD,
                                              "confirm": NEW_PASSWORD}, form_page="/users/")
    assert _passwd(ui)[ALICE].locked  # a reset does not unlock
    post(admin, f"/users/{ALICE}/lock", {"locked": "0"}, form_page="/users/")
    entry = _passwd(ui)[ALICE]
    assert not entry.locked and verify_password(entry, NEW_PASSWORD)
    assert entry.groups == ["staff"]

    weak = post(admin, f"/users/{ALICE}/password", {"password": "password123",
                                                     "confirm": "password123"},
                form_page="/users/")
    assert weak.status_code == 400

    refused = post(admin, f"/users/{ALICE}/delete", {"confirm": "wrong"}, form_page="/users/")
    assert refused.status_code == 400 and ALICE in _passwd(ui)
    post(admin, f"/users/{ALICE}/delete", {"confirm": ALICE}, form_page="/users/")
    assert ALICE not in _passwd(ui)
    assert admin.get(f"/users/{ALICE}").status_code == 404


def test_unknown_or_hostile_user_names_are_404(admin) -> None:
    for name in ("nobody", "..", ".hidden", "a%2Fb", "x" * 300):
        assert admin.get(f"/users/{name}").status_code == 404, name


def test_per_user_settings_written_through_the_config_module(ui: UI, admin) -> None:
    assert load_config(str(ui.layout.conf)).config_per_user is None
    response = post(admin, f"/users/{ALICE}/settings", {
        "routes": "192.168.50.0/24\n10.1.0.0/255.255.0.0", "dns": "192.168.50.1",
        "explicit_ipv4": "10.73.0.77", "tx": "1250000", "rx": ""}, form_page="/users/")
    assert response.status_code == 303
    cfg = load_config(str(ui.layout.conf))
    assert cfg.config_per_user == str(ui.layout.root / "config-per-user") + "/"
    assert ("reload", None) in ui.vpn.calls  # the server must learn about the folder
    user = load_user_config(cfg, ALICE, None)
    assert [str(r) for r in user.route or []] == ["192.168.50.0/24", "10.1.0.0/16"]
    assert user.dns == ["192.168.50.1"] and str(user.explicit_ipv4) == "10.73.0.77"
    assert user.tx_data_per_sec == 1250000 and user.rx_data_per_sec is None
    page = text(admin.get(f"/users/{ALICE}"))
    assert "192.168.50.0/24" in page and "1250000" in page
    assert "yes" in text(admin.get("/users/"))  # "own settings" column

    bad = [({"routes": "192.168.50.0/33"}, "not a network"),
           ({"dns": "dns.example"}, "not an IP address"),
           ({"explicit_ipv4": "198.18.2.5"}, "inside the VPN subnet"),
           ({"tx": "fast"}, "whole number")]
    for data, message in bad:
        response = post(admin, f"/users/{ALICE}/settings", data, form_page="/users/")
        assert response.status_code == 400 and message in text(response), data
    post(admin, f"/users/{ALICE}/settings", {}, form_page="/users/")
    assert not (ui.layout.root / "config-per-user" / ALICE).exists()


# --------------------------------------------------------------------------- onboarding


def test_onboarding_page_profile_and_ca(ui: UI, admin) -> None:
    page = text(admin.get(f"/users/{ALICE}/onboarding"))
    pin = re.search(r'id="pin">(pin-sha256:[^<]+)<', page)
    assert pin is not None
    assert (f"openconnect --servercert={pin.group(1)} --user={ALICE} "
            "https://vpn.example.net/") in page
    assert "<svg" in page and "style=" not in page.split("<svg", 1)[1].split("</svg>")[0]
    profile = admin.get(f"/users/{ALICE}/profile.xml")
    assert profile.mimetype == "application/xml"
    assert b"<HostAddress>vpn.example.net</HostAddress>" in profile.data
    ca = admin.get("/users/-/ca.crt")
    assert ca.data.startswith(b"-----BEGIN CERTIFICATE-----")


# --------------------------------------------------------------------------- logs, diag


def test_logs_page_filters(ui: UI, admin, tmp_path) -> None:
    from appliance.webui.logsource import LogSource

    log = tmp_path / "server.log"
    log.write_text("2024 main INFO worker 12 serves 198.51.100.7\n"
                   "2024 main WARNING reload failed <script>\n"
                   "2024 main INFO alice connected\n")
    ui.ctx.logs = LogSource(log)
    page = text(admin.get("/logs/"))
    assert "alice connected" in page and "&lt;script&gt;" in page and "<script>" not in page
    page = text(admin.get("/logs/?q=ALICE"))
    assert "alice connected" in page and "reload failed" not in page
    page = text(admin.get("/logs/?level=warning&lines=abc"))
    assert "reload failed" in page and "alice connected" not in page


def test_diagnostics_page(ui: UI, admin) -> None:
    ui.vpn.users_list = [session_user(1, ALICE, dtls=False)]
    page = text(admin.get("/diagnostics/"))
    assert "TCP port 443" in page and "Nothing listens" in page  # no server in unit tests
    assert "runs over TCP only" in page  # one session: the singular
    assert "Server certificate" in page and "Valid until" in page
    assert "VPN subnet 10.73.0.0/24" in page
    assert "No token is set" in page


# --------------------------------------------------------------------------- metrics


def test_metrics_open_then_with_token(ui: UI, admin) -> None:
    ui.vpn.users_list = [session_user(1, ALICE, dtls=True), session_user(2, "bob", False)]
    anonymous = ui.client()
    response = anonymous.get("/metrics")
    assert response.status_code == 200
    body = text(response)
    assert "ocgate_up 1.0" in body
    assert 'ocgate_sessions{channel="dtls"} 1.0' in body
    assert "ocgate_sent_bytes_total 5000.0" in body
    assert ALICE not in body and "198.51.100.7" not in body  # aggregates only
    page = text(post(admin, "/diagnostics/metrics-token", {"action": "new"},
                     form_page="/diagnostics/"))
    secret = re.search(r'id="metrics-token"><code>([^<]+)<', page)
    assert secret is not None
    assert ui.ctx.metrics_token_file.stat().st_mode & 0o777 == 0o600
    assert anonymous.get("/metrics").status_code == 401
    assert anonymous.get("/metrics", headers={"Authorization": "Bearer nope"}
                         ).status_code == 401
    ok = anonymous.get("/metrics", headers={"Authorization": f"Bearer {secret.group(1)}"})
    assert ok.status_code == 200
    ui.vpn.online = False
    down = anonymous.get("/metrics", headers={"Authorization": f"Bearer {secret.group(1)}"})
    assert "ocgate_up 0.0" in text(down)
    post(admin, "/diagnostics/metrics-token", {"action": "remove"}, form_page="/diagnostics/")
    assert anonymous.get("/metrics").status_code == 200


def test_empty_per_user_settings_write_nothing(ui: UI, admin) -> None:
    conf = ui.layout.conf.read_text()
    response = post(admin, f"/users/{ALICE}/settings", {"routes": "", "dns": ""},
                    form_page="/users/")
    assert response.status_code == 303
    assert ui.layout.conf.read_text() == conf  # no config-per-user added for nothing
    assert not (ui.layout.root / "config-per-user").exists()
    assert ("reload", None) not in ui.vpn.calls
