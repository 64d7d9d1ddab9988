"""Numbers, byte sizes, rates, durations and dates in the request's language (Babel/CLDR).

The pages and the dashboard's JSON both format here, so the live numbers that
``live.js`` writes into a page read exactly like the ones the server rendered.  Unit
names and plural rules come from CLDR, not from our catalogs: "3 Tg., 4 Std." and
"۳ روز" are Babel's, and a new language gets them for free.  Outside a request (CLIs,
logs) everything is English.  Digits stay Latin: Babel does not substitute digits, and
mixing Latin digits with Arabic-script separators would read worse than either.
"""

from __future__ import annotations

import datetime

from babel import Locale
from babel.dates import format_date as _babel_date
from babel.dates import format_datetime as _babel_datetime
from babel.lists import format_list
from babel.numbers import format_decimal
from babel.units import format_compound_unit, format_unit
from flask_babel import get_locale

_BYTE_UNITS = ("digital-byte", "digital-kilobyte", "digital-megabyte", "digital-gigabyte",
               "digital-terabyte")
_BIT_UNITS = ("digital-bit", "digital-kilobit", "digital-megabit", "digital-gigabit")


def locale() -> Locale:
    found = get_locale()
    return found if found is not None else Locale.parse("en")


def _scaled(value: float, units: tuple[str, ...]) -> tuple[float, str]:
    index = 0
    while abs(value) >= 1000 and index < len(units) - 1:
        value /= 1000
        index += 1
    return value, units[index]


def format_bytes(count: float) -> str:
    """1000-based units with one decimal (as occtl counts traffic): ``1.5 MB``, ``1,5 Mo``."""
    value, unit = _scaled(float(count), _BYTE_UNITS)
    pattern = "#,##0" if unit == _BYTE_UNITS[0] else "#,##0.0"
    return format_unit(value, unit, length="short", format=pattern, locale=locale())


def format_rate(bits_per_second: float) -> str:
    """``12.5 Mb/s``; the unit per second in the language's own way."""
    value, unit = _scaled(float(bits_per_second), _BIT_UNITS)
    pattern = "#,##0" if unit == _BIT_UNITS[0] else "#,##0.0"
    return str(format_compound_unit(value, unit, denominator_unit="duration-second",
                                    length="short", format=pattern, locale=locale()))


def format_duration(seconds: float) -> str:
    """The two largest units: ``3 days 4 hr``, ``2 Std., 5 Min.``, ``12 sec``."""
    total = max(0, int(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(days, "duration-day"), (hours, "duration-hour"), (minutes, "duration-minute"),
             (secs, "duration-second")]
    while len(parts) > 1 and parts[0][0] == 0:
        parts.pop(0)
    loc = locale()
    shown = [format_unit(n, unit, length="short", locale=loc) for n, unit in parts[:2]]
    return format_list(shown, style="unit-narrow", locale=loc)


def format_wait(seconds: float) -> str:
    """A waiting time for a sentence: ``12 seconds``, ``3 minutes`` (rounded up)."""
    whole = max(1, int(seconds + 0.999))
    if whole < 120:
        return format_unit(whole, "duration-second", length="long", locale=locale())
    return format_unit((whole + 59) // 60, "duration-minute", length="long", locale=locale())


def format_number(value: float, decimals: int = 0) -> str:
    pattern = "#,##0" + ("." + "0" * decimals if decimals else "")
    return format_decimal(value, format=pattern, locale=locale())


def format_percent(value: float) -> str:
    """``12.3%`` from 12.3 (a percentage, not a fraction)."""
    return format_unit(value, "concentr-percent", length="short", format="#,##0.0",
                       locale=locale())


def format_celsius(value: float) -> str:
    return format_unit(value, "temperature-celsius", length="short", format="#,##0.0",
                       locale=locale())


def format_epoch(epoch: float) -> str:
    """Date and time on the device's clock, e.g. ``7 déc. 2026, 12:05:03``."""
    if epoch <= 0:
        return "–"
    local = datetime.datetime.fromtimestamp(epoch).astimezone()
    return _babel_datetime(local, "medium", tzinfo=local.tzinfo, locale=locale())


def format_day(value: datetime.date | datetime.datetime | str) -> str:
    """A calendar day (certificate expiry), from a date or an ISO 8601 string."""
    if isinstance(value, str):
        value = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if isinstance(value, datetime.datetime):
        value = value.date()
    return _babel_date(value, "medium", locale=locale())
