"""Admin TOTP: RFC 6238 vectors, the store (replay, recovery codes), and the UI flow."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.webui.totp import (
    TotpError,
    TotpStore,
    hash_recovery,
    matching_step,
    provisioning_uri,
    secret_from_text,
    secret_to_text,
    totp_code,
)
from tests.support.webui import (
    ADMIN,
    ADMIN_PASSWORD,
    UI,
    build_ui,
    post,
    sign_in,
    token,
)

# RFC 6238 appendix B: the seeds are ASCII "1234567890" repeated to the hash's size.
SEED = {"SHA1": b"12345678901234567890",
        "SHA256": b"12345678901234567890123456789012",
        "SHA512": b"1234567890123456789012345678901234567890123456789012345678901234"}
VECTORS = [
    (59, "94287082", "46119246", "90693936"),
    (1111111109, "07081804", "68084774", "25091201"),
    (1111111111, "14050471", "67062674", "99943326"),
    (1234567890, "89005924", "91819424", "93441116"),
    (2000000000, "69279037", "90698825", "38618901"),
    (20000000000, "65353130", "77737706", "47863826"),
]


@pytest.mark.parametrize(("when", "sha1", "sha256", "sha512"), VECTORS)
def test_rfc6238_vectors(when: int, sha1: str, sha256: str, sha512: str) -> None:
    for algorithm, expected in (("SHA1", sha1), ("SHA256", sha256), ("SHA512", sha512)):
        assert totp_code(SEED[algorithm], when, digits=8, algorithm=algorithm) == expected


def test_window_replay_and_format() -> None:
    secret = SEED["SHA1"]
    now = 1_700_000_000.0
    code = totp_code(secret, now)
    assert len(code) == 6 and code.isdigit()
    step = matching_step(secret, code, now)
    assert step == int(now) // 30
    assert matching_step(secret, code, now + 30) == step  # one step late: still fine
    assert matching_step(secret, code, now - 30) == step  # phone clock ahead
    assert matching_step(secret, code, now + 90) is None  # too old
    assert matching_step(secret, code, now, after_step=step) is None  # spent
    assert matching_step(secret, "12345", now) is None
    assert matching_step(secret, "abcdef", now) is None


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=16, max_size=64))
def test_secret_text_round_trip(secret: bytes) -> None:
    assert secret_from_text(secret_to_text(secret)) == secret
    assert secret_from_text(secret_to_text(secret).lower()) == secret


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_arbitrary_codes_never_crash(code: str) -> None:
    current = 1_700_000_000 // 30
    found = matching_step(SEED["SHA1"], code, 1_700_000_000.0)
    assert found is None or (current - 1 <= found <= current + 1
                             and "".join(code.split()).isdigit())


def test_bad_secrets_are_refused() -> None:
    with pytest.raises(TotpError):
        secret_from_text("not base32 !!")
    with pytest.raises(TotpError):
        secret_from_text(secret_to_text(b"short"))


def test_provisioning_uri() -> None:
    uri = provisioning_uri(SEED["SHA1"], "admin")
    assert uri.startswith("otpauth://totp/OCGate:admin?")
    assert "secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ" in uri
    assert "issuer=OCGate" in uri and "digits=6" in uri and "period=30" in uri


def test_store_enrol_confirm_verify_recovery(tmp_path: Path) -> None:
    store = TotpStore(tmp_path / "admin-totp.json")
    record = store.begin("admin")
    assert not store.is_enabled("admin")
    secret = secret_from_text(record.secret)
    now = 1_700_000_000.0
    with pytest.raises(TotpError):
        store.confirm("admin", "000000" if totp_code(secret, now) != "000000" else "111111",
                      now)
    codes = store.confirm("admin", totp_code(secret, now), now)
    assert store.is_enabled("admin") and len(codes) == 10
    raw = (tmp_path / "admin-totp.json").read_text()
    assert all(code not in raw for code in codes)  # hashed at rest
    assert hash_recovery(codes[0]) in raw
    assert (tmp_path / "admin-totp.json").stat().st_mode & 0o777 == 0o600
    # the confirming code is spent; the next step's code works once
    assert store.verify("admin", totp_code(secret, now), now) is None
    later = now + 30
    assert store.verify("admin", totp_code(secret, later), later) == "totp"
    assert store.verify("admin", totp_code(secret, later), later) is None
    assert store.verify("admin", codes[3].lower().replace("-", " "), later) == "recovery"
    assert store.verify("admin", codes[3], later) is None
    assert len(json.loads(raw)["admin"]["recovery"]) == 10
    assert len(store.get("admin").recovery) == 9  # type: ignore[union-attr]
    with pytest.raises(TotpError):
        store.begin("admin")
    store.disable("admin")
    assert not store.is_enabled("admin")


def test_unreadable_store_fails_closed(tmp_path: Path) -> None:
    path = tmp_path / "admin-totp.json"
    path.write_text("{not json")
    store = TotpStore(path)
    assert store.is_enabled("admin")
    # and verifying raises rather than letting anyone in
    with pytest.raises(TotpError):
        store.verify("admin", "123456", 0.0)


# --------------------------------------------------------------------------- through the UI


class Wall:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def _enrol(ui: UI, wall: Wall) -> list[str]:
    client = ui.client()
    assert sign_in(client).status_code == 303
    assert post(client, "/account/totp/begin", form_page="/account/").status_code == 303
    page = client.get("/account/").get_data(as_text=True)
    uri = re.search(r'id="totp-uri"><code>([^<]+)</code>', page)
    assert uri and "otpauth://totp/OCGate:admin?" in uri.group(1)
    assert 'id="totp-qr"><svg' in page
    secret = secret_from_text(re.search(r"secret=([A-Z2-7]+)", uri.group(1)).group(1))  # type: ignore[union-attr]
    page = post(client, "/account/totp/confirm", {"code": totp_code(secret, wall.now)},
                form_page="/account/").get_data(as_text=True)
    codes = re.search(r'id="recovery-codes"><code>([^<]+)</code>', page)
    assert codes, page
    return [secret.hex(), *codes.group(1).split()]


def test_ui_enrol_then_login_needs_code(tmp_path: Path) -> None:
    wall = Wall()
    ui = build_ui(tmp_path / "state", wall=wall)
    secret_hex, *recovery = _enrol(ui, wall)
    secret = bytes.fromhex(secret_hex)
    assert len(recovery) == 10

    client = ui.client()
    response = sign_in(client)
    assert response.status_code == 303 and response.location.endswith("/login/code")
    assert client.get("/").status_code == 303  # no session before the code
    wall.now += 60
    wrong = post(client, "/login/code", {"code": "000000" if totp_code(secret, wall.now)
                                         != "000000" else "111111"}, form_page="/login/code")
    assert wrong.status_code == 401 and "Wrong code" in wrong.get_data(as_text=True)
    ok = post(client, "/login/code", {"code": totp_code(secret, wall.now)},
              form_page="/login/code")
    assert ok.status_code == 303
    assert client.get("/").status_code == 200

    # a recovery code works once
    other = ui.client()
    sign_in(other)
    assert post(other, "/login/code", {"code": recovery[0]},
                form_page="/login/code").status_code == 303
    again = ui.client()
    sign_in(again)
    assert post(again, "/login/code", {"code": recovery[0]},
                form_page="/login/code").status_code == 401


def test_code_step_locks_out_like_the_password(tmp_path: Path) -> None:
    wall = Wall()
    ui = build_ui(tmp_path / "state", wall=wall)
    secret = bytes.fromhex(_enrol(ui, wall)[0])
    client = ui.client()
    sign_in(client)
    wall.now += 60
    bad = "000000" if totp_code(secret, wall.now) != "000000" else "111111"
    statuses = [post(client, "/login/code", {"code": bad}, form_page="/login/code").status_code
                for _ in range(5)]
    assert statuses == [401] * 5
    locked = post(client, "/login/code", {"code": totp_code(secret, wall.now)},
                  form_page="/login/code")
    assert locked.status_code == 429


def test_code_step_expires_and_needs_password_first(tmp_path: Path) -> None:
    wall = Wall()
    ui = build_ui(tmp_path / "state", wall=wall)
    secret = bytes.fromhex(_enrol(ui, wall)[0])
    fresh = ui.client()
    assert fresh.get("/login/code").status_code == 303  # no password step yet
    client = ui.client()
    sign_in(client)
    csrf = token(client, "/login/code")
    ui.clock.now += 301
    wall.now += 301
    late = client.post("/login/code", data={"csrf_token": csrf,
                                            "code": totp_code(secret, wall.now)})
    assert late.status_code == 303 and late.location.startswith("/login")
    assert client.get("/").status_code == 303


def test_disable_needs_password_and_code(tmp_path: Path) -> None:
    wall = Wall()
    ui = build_ui(tmp_path / "state", wall=wall)
    secret = bytes.fromhex(_enrol(ui, wall)[0])
    client = ui.client()
    sign_in(client)
    wall.now += 30
    post(client, "/login/code", {"code": totp_code(secret, wall.now)}, form_page="/login/code")
    wall.now += 30
    refused = post(client, "/account/totp/disable",
                   {"password": "wrong", "code": totp_code(secret, wall.now)},
                   form_page="/account/")
    assert refused.status_code == 400 and ui.ctx.totp.is_enabled(ADMIN)
    ok = post(client, "/account/totp/disable",
              {"password": ADMIN_PASSWORD, "code": totp_code(secret, wall.now)},
              form_page="/account/")
    assert ok.status_code == 303 and not ui.ctx.totp.is_enabled(ADMIN)
    plain = ui.client()
    assert sign_in(plain).location == "/"
