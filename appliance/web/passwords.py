"""Password rules for the admin account and VPN users, checked on the device only.

A home appliance gets attacked with the same few thousand passwords everywhere, so length
alone is not enough: ``Password1234!`` is 13 characters and in every cracking list.  The
rules here are deliberately few and explainable (shown to the user before they type):

* at least 12 characters (and at most 256: crypt cost grows with length);
* not a common password, not even with digits/symbols added before or after it, or with
  letters swapped for look-alike digits (``p@ssw0rd``);
* not built from the username, the product name or the device;
* not mostly repeats or keyboard/alphabet runs (``aaaa…``, ``123456…``, ``qwertyuiop…``).

A small zxcvbn-like estimate backs the last rule: runs and repeats are counted as nearly
free, everything else by its character classes.  No external service is contacted.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_babel import ngettext

MIN_LENGTH = 12
MAX_LENGTH = 256
MIN_DISTINCT = 5
MIN_BITS = 45.0

#: Shown on every form that sets a password, so nobody learns the rules by failing.
#: (Lazy: rendered in the language of the page that shows it.)
RULES_TEXT = _l(
    "At least %(min)d characters. Not a common password (also not with a few digits "
    "or symbols added), not your user name, and not a keyboard or repeated pattern. "
    "A few unrelated words make a strong, memorable password.", min=MIN_LENGTH)

# A short list of the passwords that top every breach corpus, plus words that people pick
# for a VPN box.  Matching also strips leetspeak and trailing/leading digits and symbols,
# so each entry covers many variants.
COMMON_PASSWORDS = frozenset("""
123456 1234567 12345678 123456789 1234567890 12345 1234 111111 000000 654321 123123
121212 112233 666666 696969 777777 888888 987654321 147258369 159753 123321 11111111
password passwort motdepasse contrasena senha wachtwoord haslo salasana lozinka parola
qwerty qwertz azerty asdfgh asdfghjkl zxcvbnm qwertyuiop qazwsx 1qaz2wsx zaq12wsx
letmein welcome iloveyou loveyou lovely monkey dragon master shadow sunshine princess
football baseball soccer hockey basketball superman batman starwars pokemon
trustno1 whatever freedom ninja mustang michael jennifer jordan hunter ranger
buster thomas robert daniel charlie andrew matthew george jessica ashley
computer internet secret hello hello123 login admin administrator root toor guest
user test tester testing changeme change default letmein1 access master123 passw0rd
p4ssword abc123 abcdef abcdefg abcdefgh abcd1234 a1b2c3 qwe123 asd123 zxc123
summer winter spring autumn january february march april august october november
december monday friday sunday flower flowers cookie chocolate banana orange apple
pepper ginger cheese coffee tigger snoopy garfield mickey minnie barbie
killer hacker matrix phoenix diamond silver golden money dollar bitcoin
london paris berlin newyork chicago california america germany france canada
vpn myvpn homevpn openvpn openconnect ocserv ocgate anyconnect wireguard pivpn
raspberry raspberrypi pi debian ubuntu linux windows router network firewall
gateway modem wifi wireless internet1 security secure private personal family
""".split())

_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t",
                       "8": "b", "9": "g", "@": "a", "$": "s", "!": "i", "+": "t"})
_KEYBOARD_ROWS = ("1234567890", "qwertyuiop", "asdfghjkl", "zxcvbnm", "qwertzuiop",
                  "azertyuiop", "yxcvbnm")
_ALPHABET = "abcdefghijklmnopqrstuvwxyz"
_RUN_SOURCES = (_ALPHABET, *_KEYBOARD_ROWS)
_EDGE_NOISE = re.compile(r"^[\W\d_]+|[\W\d_]+$")
#: Common words long enough to recognise inside a password; what is left around them must
#: be at least MIN_PADDING characters for the password not to count as "a common one".
_LONG_COMMON = tuple(sorted((w for w in COMMON_PASSWORDS if len(w) >= 5), key=len,
                            reverse=True))
MIN_PADDING = 6


@dataclass(frozen=True)
class PasswordCheck:
    """Outcome of :func:`check_password`; ``problems`` are sentences for the user."""

    problems: tuple[str, ...]
    bits: float

    @property
    def ok(self) -> bool:
        return not self.problems


def _base_words(lowered: str) -> set[str]:
    """The password as typed, de-leeted, and with digits/symbols trimmed off both ends."""
    forms = {lowered}
    for _round in range(2):  # trim then translate, and translate then trim
        for form in list(forms):
            forms.add(_EDGE_NOISE.sub("", form))
            forms.add(form.translate(_LEET))
    return {f for f in forms if f}


def _is_common(lowered: str) -> bool:
    """A common password, or one dominated by a common word (``Sunshine2024!``)."""
    forms = _base_words(lowered)
    if forms & COMMON_PASSWORDS:
        return True
    for form in forms:
        for word in _LONG_COMMON:
            if word in form and len(form.replace(word, "")) < MIN_PADDING:
                return True
    return False


def _run_length_at(text: str, i: int) -> int:
    """Length of the repeat or straight/backward run that starts at ``text[i]``."""
    best = 1
    j = i + 1
    while j < len(text) and text[j] == text[i]:
        j += 1
    best = max(best, j - i)
    for source in _RUN_SOURCES:
        for seq in (source, source[::-1]):
            pos = seq.find(text[i])
            if pos < 0:
                continue
            k = 1
            while i + k < len(text) and pos + k < len(seq) and text[i + k] == seq[pos + k]:
                k += 1
            best = max(best, k)
    return best


def estimate_bits(password: str) -> float:
    """Rough guessing entropy: runs of 3+ repeated/sequential characters cost ~nothing."""
    lowered = password.lower()
    pool = 0
    if re.search(r"[a-z]", password):
        pool += 26
    if re.search(r"[A-Z]", password):
        pool += 26
    if re.search(r"[0-9]", password):
        pool += 10
    if re.search(r"[^A-Za-z0-9]", password):
        pool += 33
    per_char = math.log2(max(pool, 2))
    bits = 0.0
    i = 0
    while i < len(lowered):
        run = _run_length_at(lowered, i)
        if run >= 3:
            bits += per_char + math.log2(run)  # the start plus "how long"
            i += run
        else:
            bits += per_char
            i += 1
    return bits


def check_password(password: str, *, username: str = "",
                   context: Iterable[str] = ()) -> PasswordCheck:
    """Check ``password`` against the rules; ``context`` adds words it must not be built on."""
    problems: list[str] = []
    if len(password) < MIN_LENGTH:
        problems.append(ngettext("Use at least %(min)d characters; this one has only "
                                 "%(num)d character.",
                                 "Use at least %(min)d characters; this one has only "
                                 "%(num)d characters.", len(password), min=MIN_LENGTH))
    if len(password) > MAX_LENGTH:
        problems.append(_("Use at most %(max)d characters.", max=MAX_LENGTH))
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in password):
        problems.append(_("Control characters (tabs, line breaks) are not allowed."))
    lowered = password.lower()
    if password and _is_common(lowered):
        problems.append(_("This is one of the most common passwords (or a variant of one); "
                          "attackers try it first."))
    words = [w.lower() for w in (username, *context) if w and len(w) >= 3]
    stripped = _base_words(lowered)
    if any(w in lowered or w in lowered.translate(_LEET) or w in stripped for w in words):
        problems.append(_("Do not build the password from the user name or the device "
                          "name."))
    if password and len(set(password)) < MIN_DISTINCT:
        problems.append(_("Use at least %(num)d different characters.", num=MIN_DISTINCT))
    bits = estimate_bits(password) if len(password) <= MAX_LENGTH else 0.0
    if len(password) >= MIN_LENGTH and not problems and bits < MIN_BITS:
        problems.append(_("This is mostly a keyboard, alphabet or repeated pattern; "
                          "add unrelated words."))
    return PasswordCheck(tuple(problems), bits)
