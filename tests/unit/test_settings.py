"""Effective per-connection settings: global options, per-user files, mobile clients."""

from __future__ import annotations

from appliance.vpn.config import parse_config, parse_user_config
from appliance.vpn.main.sessions import effective_settings

BASE = ('auth = "plain[passwd=/x]"\nipv4-network = 203.0.113.0/24\nserver-cert = /a\n'
        "server-key = /b\n")


def test_mobile_clients_get_mobile_dpd_and_idle_timeout():
    cfg = parse_config(BASE + "dpd = 60\nmobile-dpd = 1800\nidle-timeout = 600\n"
                       "mobile-idle-timeout = 3600\n")
    desk = effective_settings(cfg, None, 0, 0)
    phone = effective_settings(cfg, None, 0, 0, mobile=True)
    assert (desk.dpd, desk.idle_timeout) == (60, 600)
    assert (phone.dpd, phone.idle_timeout) == (1800, 3600)


def test_user_file_replaces_lists_and_full_tunnel_sends_no_routes():
    cfg = parse_config(BASE + "route = 198.51.100.0/24\ndns = 198.51.100.53\n")
    user = parse_user_config("route = default\ndns = 198.51.100.54\nsession-timeout = 100\n",
                             "alice")
    s = effective_settings(cfg, user, session_started=1000, now=1040)
    assert s.routes == [] and s.tunnel_all_dns is True
    assert s.dns == ["198.51.100.54"]
    assert (s.session_timeout, s.session_remaining) == (100, 60)
    plain = effective_settings(cfg, None, 0, 0)
    assert plain.routes == ["198.51.100.0/24"] and plain.dns == ["198.51.100.53"]
