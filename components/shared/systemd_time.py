"""systemd's calendar events (a timer's ``OnCalendar=``) and time spans (``RandomizedDelaySec=``), checked
before anything is deployed.

A timer whose schedule the server's systemd cannot read is installed without it and never fires, and
nothing says so until someone looks at the server. Stack config is validated on the machine running
Pulumi, which need not have systemd, so the grammar of systemd.time(7) is written out here as systemd
252 (Debian bookworm) parses it; ``tests/unit/test_systemd_time.py`` compares both functions with
``systemd-analyze calendar`` and ``systemd-analyze timespan`` on a corpus of good and bad values.

Where systemd's answer depends on the server rather than the text, the check refuses: a time zone
is accepted as ``UTC`` or a name in this machine's time zone database (``Europe/Berlin``), never as
the server's local abbreviation (``IST``), which only the server knows. Two time spans systemd reads
are refused as well: ``infinity`` (a delay must end) and a number with a ``+`` sign.
"""

from __future__ import annotations

import functools
import re
import zoneinfo
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Optional

CALENDAR_EXAMPLES = "'daily', '*-*-* 04,16:00:00', 'Mon..Fri 02:30', '*:0/15'"
TIME_SPAN_EXAMPLES = "'0', '300', '90s', '5min', '1h 30min'"

# The names systemd expands, compared case-insensitively.
_SHORTHANDS = frozenset(
    {
        "minutely", "hourly", "daily", "weekly", "monthly", "quarterly", "yearly", "annually", "anually",
        "semiannually", "semi-annually", "biannually", "bi-annually",
    }
)
_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_DIGITS = re.compile(r"[0-9]+", re.A)
_USEC_PER_SEC = 1_000_000
_INT_MAX = 2**31 - 1
# Years as systemd counts them, and how many values one comma-separated list may hold.
_YEARS = (1970, 2199)
_LIST_MAX = 241


class _Refused(Exception):
    """The text is not a calendar event systemd reads."""


@dataclass
class _Value:
    """One item of a comma-separated list: ``start``, ``start..stop``, either with ``/repeat``."""

    start: int
    stop: int = -1
    repeat: int = 0


def _number(text: str, at: int, seconds: bool) -> tuple[int, int]:
    """A decimal at ``at``; in the seconds field in microseconds, with up to six decimals (a seventh rounds)."""
    digits = _DIGITS.match(text, at)
    if digits is None:
        raise _Refused
    value, at = int(digits.group()), digits.end()
    if seconds:
        value *= _USEC_PER_SEC
        if text.startswith(".", at) and not text.startswith("..", at):
            fraction = _DIGITS.match(text, at + 1)
            if fraction is None:
                raise _Refused
            decimals = fraction.group()
            value += int(decimals[:6].ljust(6, "0")) + (len(decimals) > 6 and decimals[6] >= "5")
            at = fraction.end()
    if value > _INT_MAX:
        raise _Refused
    return value, at


def _values(text: str, at: int, seconds: bool) -> tuple[Optional[list[_Value]], int]:
    """One field: ``*`` (``None``: any; in the seconds field every whole second) or a list of values."""
    if text.startswith("*", at):
        return ([_Value(0, repeat=_USEC_PER_SEC)] if seconds else None), at + 1
    values: list[_Value] = []
    while True:
        if len(values) == _LIST_MAX:
            raise _Refused
        start, at = _number(text, at, seconds)
        value = _Value(start)
        if text.startswith("..", at):
            value.stop, at = _number(text, at + 2, seconds)
            value.repeat = _USEC_PER_SEC if seconds else 1
        if text.startswith("/", at):
            value.repeat, at = _number(text, at + 1, seconds)
            if value.repeat == 0:
                raise _Refused
        elif value.start + value.repeat > _INT_MAX or (seconds and value.stop >= 0 and value.start + value.repeat > value.stop):
            raise _Refused
        if at < len(text) and text[at] not in " ,-~:":
            raise _Refused
        values.append(value)
        if not text.startswith(",", at):
            return values, at
        at += 1


def _skip_spaces(text: str, at: int) -> int:
    while text.startswith(" ", at):
        at += 1
    return at


def _weekdays(text: str, at: int) -> int:
    """Past the leading weekdays (``Mon``, ``Mon,Wed``, ``Mon..Fri``, ``Mon-Fri``), if any."""
    range_from = -1
    first = True
    while True:
        lowered = text[at : at + 9].lower()
        found = [(n, name) for n, day in enumerate(_WEEKDAYS) for name in (day, day[:3]) if lowered.startswith(name)]
        if not found:
            if first:
                return at
            raise _Refused
        number, name = found[0]
        at += len(name)
        if at < len(text) and text[at] not in "-., ":
            raise _Refused
        if range_from > number:
            raise _Refused
        if at == len(text):
            return at
        if text[at] == " ":
            return _skip_spaces(text, at)
        if text[at] == ".":
            if range_from >= 0 or not text.startswith("..", at):
                raise _Refused
            range_from, at = number, at + 2
        elif text[at] == "-":
            if range_from >= 0:
                raise _Refused
            range_from, at = number, at + 1
        else:
            range_from, at = -1, at + 1
        # A trailing comma is allowed, an open range is not.
        if at == len(text) or text[at] == " ":
            if range_from >= 0:
                raise _Refused
            return _skip_spaces(text, at)
        first = False


@dataclass
class _Event:
    year: Optional[list[_Value]] = None
    month: Optional[list[_Value]] = None
    day: Optional[list[_Value]] = None
    # ``~``: days counted from the end of the month.
    end_of_month: bool = False
    hour: Optional[list[_Value]] = None
    minute: Optional[list[_Value]] = None
    second: Optional[list[_Value]] = None


def _date(text: str, at: int, event: _Event) -> int:
    """Past ``[[year-]month-]day`` (``~`` for days from the end of the month), if the text starts with a date."""
    if at == len(text):
        return at
    first, end = _values(text, at, False)
    if end == len(text) or text[end] == ":":
        return at  # a time, not a date
    separators = []
    parts = [first]
    while True:
        if text[end] not in "-~" or len(parts) == 3:
            raise _Refused
        separators.append(text[end])
        part, end = _values(text, end + 1, False)
        parts.append(part)
        if end == len(text) or text[end] == " ":
            break
        if "~" in separators:
            raise _Refused
    if len(parts) == 2:
        event.month, event.day = parts
    else:
        event.year, event.month, event.day = parts
    event.end_of_month = "~" in separators
    return _skip_spaces(text, end)


def _time(text: str, at: int, event: _Event) -> None:
    """``hour:minute[:second]`` to the end of the text; none at all is midnight."""
    midnight = [_Value(0)]
    if at == len(text):
        event.hour, event.minute, event.second = midnight, midnight, midnight
        return
    event.hour, at = _values(text, at, False)
    if not text.startswith(":", at):
        raise _Refused
    event.minute, at = _values(text, at + 1, False)
    event.second = midnight
    if at < len(text):
        if text[at] != ":":
            raise _Refused
        event.second, at = _values(text, at + 1, True)
        if at != len(text):
            raise _Refused


def _within(values: Optional[list[_Value]], low: int, high: int, end_of_month: bool) -> bool:
    """Every value in the field's range, each repetition able to happen once."""
    normalized = set()
    for value in values or []:
        start, stop, repeat = value.start, value.stop, value.repeat
        if stop > start and repeat > 0:
            stop -= (stop - start) % repeat
        if start == stop or (stop > start and repeat > 0 and start + repeat > stop):
            stop, repeat = -1, 0  # a range that cannot repeat is its start alone
        normalized.add((start, stop, repeat))
    # Sorted and without repeats, as systemd keeps them; counted from the end of the month, each value
    # may be three days less far from it than the one before (at most 28 days, then 25, ...).
    for start, stop, repeat in sorted(normalized):
        if end_of_month:
            high -= 3
        if not low <= start <= high:
            return False
        if stop >= 0:
            if not low <= stop <= high or start + repeat > stop:
                return False
        elif (start - repeat < low) if end_of_month else (start + repeat > high):
            return False
    return True


@functools.cache
def _time_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def _without_time_zone(text: str) -> str:
    if text[-4:].upper() == " UTC":
        return text[:-4]
    rest, space, zone = text.rpartition(" ")
    return rest if space and zone in _time_zones() else text


def _full_year(year: int) -> int:
    """Two digits are a year of 1970-2069; -1 (no range end) stays."""
    return year + 2000 if 0 <= year < 70 else year + 1900 if 70 <= year < 100 else year


def _parse(text: str) -> None:
    text = _without_time_zone(text)
    if not text:
        raise _Refused
    if text.lower() in _SHORTHANDS:
        return
    event = _Event()
    at = _weekdays(text, 0)
    if text.startswith("@", at):
        # Seconds since the epoch, alone.
        if not _DIGITS.fullmatch(text, at + 1):
            raise _Refused
        try:
            year = datetime.fromtimestamp(int(text[at + 1 :]), timezone.utc).year
        except (OverflowError, OSError, ValueError):
            raise _Refused from None
        event.year = [_Value(year)]
    else:
        _time(text, _date(text, at, event), event)
    for value in event.year or []:
        value.start, value.stop = _full_year(value.start), _full_year(value.stop)
    fields = (
        (event.year, *_YEARS, False),
        (event.month, 1, 12, False),
        (event.day, 1, 31, event.end_of_month),
        (event.hour, 0, 23, False),
        (event.minute, 0, 59, False),
        (event.second, 0, 60 * _USEC_PER_SEC - 1, False),
    )
    if not all(_within(*field) for field in fields):
        raise _Refused


def calendar_event(value: str) -> str:
    """``value`` if systemd reads it as a calendar event (``OnCalendar=``), else ``ValueError``."""
    try:
        _parse(value)
    except _Refused:
        raise ValueError(
            f"{value!r} is not a calendar event systemd reads (OnCalendar=, systemd.time(7)), e.g. {CALENDAR_EXAMPLES}"
        ) from None
    return value


# Units in the order systemd tries them (the first that the text starts with wins), in microseconds.
_UNITS = {
    **dict.fromkeys(("seconds", "second", "sec", "s"), _USEC_PER_SEC),
    **dict.fromkeys(("minutes", "minute", "min"), 60 * _USEC_PER_SEC),
    **dict.fromkeys(("months", "month", "M"), 2_629_800 * _USEC_PER_SEC),
    **dict.fromkeys(("msec", "ms"), 1000),
    "m": 60 * _USEC_PER_SEC,
    **dict.fromkeys(("hours", "hour", "hr", "h"), 3600 * _USEC_PER_SEC),
    **dict.fromkeys(("days", "day", "d"), 86400 * _USEC_PER_SEC),
    **dict.fromkeys(("weeks", "week", "w"), 7 * 86400 * _USEC_PER_SEC),
    **dict.fromkeys(("years", "year", "y"), 31_557_600 * _USEC_PER_SEC),
    **dict.fromkeys(("usec", "us"), 1),
}
# A number (``5``, ``1.5``, ``.5``), spaces, a unit or none.
_SPAN_PART = re.compile(r"([0-9]*)(?:\.([0-9]+))?( *)(" + "|".join(_UNITS) + ")?", re.A)
# systemd's "infinity" is 2^64 - 1 microseconds; a span must stay below it.
_USEC_INFINITY = 2**64 - 1


def time_span_usec(value: str) -> int:
    """A time span (``RandomizedDelaySec=``: ``90``, ``90s``, ``1h 30min``; no unit is seconds) in
    microseconds, or ``ValueError``. Never negative; ``infinity`` is refused."""
    total, at, parts = 0, 0, 0
    while True:
        at = _skip_spaces(value, at)
        if at == len(value) and parts:
            return total
        part = _SPAN_PART.match(value, at)
        # A number directly followed by something that is neither a unit nor a space ("12.34.56", "5x").
        glued = part is not None and not part[3] and part[4] is None and part.end() < len(value) and value[part.end()] != " "
        if part is None or not (part[1] or part[2]) or glued:
            raise ValueError(f"{value!r} is not a time span systemd reads (seconds, or numbers with units), e.g. {TIME_SPAN_EXAMPLES}")
        unit = _UNITS[part[4]] if part[4] else _USEC_PER_SEC
        total += int(part[1] or 0) * unit + sum(int(d) * (unit // 10 ** (k + 1)) for k, d in enumerate(part[2] or ""))
        if int(part[1] or 0) >= 2**63 or total >= _USEC_INFINITY:
            raise ValueError(f"{value!r} is longer than systemd can count")
        at, parts = part.end(), parts + 1
