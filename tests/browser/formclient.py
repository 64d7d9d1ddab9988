"""A tiny form-filling HTTP client for the wizard (no browser), run inside a namespace.

    python3 -m tests.browser.formclient http://198.18.0.1/ CODE USER PASSWORD POOL

It walks through every step with the defaults the wizard proposes (except the values
given), prints ``DONE <pin>`` after apply, then presses Finish.  Used where a browser
adds nothing, e.g. to drive ``make run``'s wizard in tests.
"""

from __future__ import annotations

import http.cookiejar
import re
import sys
import urllib.parse
import urllib.request

ADMIN_PASSWORD = "quiet Harbor lantern 73 maple"


class FormClient:
    def __init__(self, base: str) -> None:
        self.base = base.rstrip("/")
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        self.url = ""

    def get(self, path: str) -> str:
        with self.opener.open(self.base + path, timeout=30) as response:
            self.url = response.geturl()
            return response.read().decode()

    def post(self, path: str, fields: dict[str, str], form_page: str | None = None) -> str:
        page = self.get(form_page or path)
        token = re.search(r'name="csrf_token" value="([^"]+)"', page)
        if token is None:
            raise SystemExit(f"no CSRF token on {form_page or path}")
        data = urllib.parse.urlencode({"csrf_token": token.group(1), **fields}).encode()
        with self.opener.open(self.base + path, data=data, timeout=60) as response:
            self.url = response.geturl()
            return response.read().decode()

    def value(self, path: str, name: str) -> str:
        page = self.get(path)
        match = re.search(rf'<(?:input|textarea)[^>]*name="{name}"[^>]*?(?:value="([^"]*)"|>'
                          rf'([^<]*)</textarea>)', page)
        return (match.group(1) or match.group(2) or "") if match else ""


def main(argv: list[str]) -> int:
    base, code, user, password, pool = argv
    c = FormClient(base)
    c.post("/setup/code", {"code": code})
    c.post("/setup/admin", {"username": "admin", "password": ADMIN_PASSWORD,
                            "confirm": ADMIN_PASSWORD})
    c.post("/setup/network", {"action": "save", "server": c.value("/setup/network", "server"),
                              "hostname": "ocgate", "names": ""})
    c.post("/setup/reach", {"action": "skip"})
    dns = c.value("/setup/subnet", "dns").strip()
    c.post("/setup/subnet", {"pool": pool, "mode": "full", "dns": dns, "routes": ""})
    c.post("/setup/certificates", {"key_type": "ec"})
    c.post("/setup/user", {"username": user, "method": "password", "password": password,
                           "confirm": password})
    done = c.post("/setup/apply", {}, form_page="/setup/review")
    pin = re.search(r'id="pin">(pin-sha256:[^<]+)<', done)
    if not c.url.endswith("/setup/done") or pin is None:
        print(f"apply did not reach the final page: {c.url}\n{done[:2000]}")
        return 1
    print(f"DONE {pin.group(1)}", flush=True)
    c.post("/setup/finish", {}, form_page="/setup/done")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
