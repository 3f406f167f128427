"""The program's check of timer schedules and delays (components/shared/systemd_time.py) says what systemd says:
on a corpus of calendar events and time spans, and a few hundred generated ones, ``calendar_event`` and
``time_span_usec`` accept exactly what ``systemd-analyze calendar`` and ``systemd-analyze timespan`` accept
(``UTC`` pinned, so no local time-zone abbreviation is in play)."""

from __future__ import annotations

import os
import random
import re
import shutil
import subprocess
from collections.abc import Callable

import pytest

from components.shared.systemd_time import calendar_event, time_span_usec

needs_systemd = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is missing: apt-get install -y systemd")

ENV = {**os.environ, "TZ": "UTC", "SYSTEMD_LOG_LEVEL": "err"}

CALENDAR_EVENTS = [
    # The stacks' schedules, and short ones.
    "*-*-* 04,16:00:00", "hourly", "daily", "weekly", "minutely", "*:0/2",
    # Names, in any case.
    "Minutely", "DAILY", "monthly", "quarterly", "yearly", "annually", "anually", "semiannually", "semi-annually",
    "biannually", "bi-annually", "fortnightly", "daily ", "every day", "every minute",
    # Weekdays.
    "Mon", "monday", "Mon,Wed", "Mon..Fri", "Mon-Fri", "Fri..Mon", "Mon..Wed..Fri", "Mon..Wed,Fri", "Mon,", "Mon..",
    "Mon-", "Mond", "Mon 02:30", "Mon  02:30", "Sat,Sun *-*-* 10:00", "Mon,xyz", "Mon *", "Mon @0",
    # Dates.
    "2024-01-01", "24-01-01", "69-01-01", "70-01-01", "99-12-31", "1969-01-01", "2199-12-31", "2200-01-01",
    "01-01", "*-*-*", "*-*", "*-02-29", "*-02-30", "*-13-01", "*-00-01", "*-*-32", "*-*-0",
    "*-02~03", "*-02~28", "*-02~29", "*-*~1/2", "*-*~03/1", "*-*~04/3", "*-*~28", "*-*-*~3", "*~01", "*-*~*",
    "*-*~1,20..25", "*-*~16,23..27", "*-*~1,1,25", "*-*~1,2,25",
    "2024-01-01 00:00", "2024..2026-01-01", "2024/2-01-01", "*-1..6/2-1", "*-*-1,15 12:00",
    # Times.
    "00:00", "23:59:59", "24:00", "00:60", "00:00:60", "00:00:59.999999", "00:00:59.9999995", "00:00:59.9999994",
    "00:00:05.5", "00:00:5.", "*:*", "*:*:*", "*:*/2", "*/2:00", "0/2:00", "0/0:00", "*:0/59", "*:1/59", "*:0/60",
    "*:0..59/60", "*:0..59/59", "*:5..3", "*:5..5", "*:0:5..5", "*:0:0..30/10", "*:0:0.5..0.7", "0..5/0:00",
    "1..0:00", "4,16:00", "4,,16:00", "4,16,:00", "*", ":", "::", "12", "12:", "12:00:", "12:00:00:00",
    "0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23:00", ",".join(["0"] * 241) + ":00",
    ",".join(["0"] * 242) + ":00",
    # Epoch seconds.
    "@0", "@1700000000", "@7258118400", "@", "@x", "@1 12:00",
    # Time zones.
    "daily UTC", "daily utc", "*-*-* 04:00 UTC", "UTC", " UTC", "daily Europe/Berlin", "02:30 Asia/Kolkata",
    "daily Mars/Olympus", "daily Etc/UTC",
]

TIME_SPANS = [
    "0", "300", "1h", "90s", "5min", "1h 30min", "1h30min", "1h30", "5 6", "1.5h", "0.5s", "2 weeks", "3d", "1y",
    "1M", "1m", "1ms", "1msec", "1us", "1usec", "1hr", "5sec", "5secs", "5mins", "5 min", "5x", "5 x", "h", "",
    "-1", "-0", "1.5.5", "5.", "1h.5", "infinity", "10000000000000000000us", "9223372036854775807us",
    "18446744073709551614us", "1H", "1 h 2 m 3 s", ".5", "12.34.56", "12.34 .56", "12.34s.56", "+5",
]
# systemd reads these; a timer's random delay is finite and written as plain digits, so the program refuses them.
SPANS_ONLY_SYSTEMD_READS = {"infinity", "+5"}


def _generated(count: int) -> list[str]:
    """Calendar events put together from the pieces of systemd's grammar, each number now and then out of
    its field's range."""
    rng = random.Random(20250601)

    def number(low: int, high: int) -> str:
        return str(rng.randint(low, high) if rng.random() < 0.85 else rng.choice([low - 1, high + 1, high + 40]))

    def field(low: int, high: int) -> str:
        if rng.random() < 0.2:
            return "*"
        text = number(low, high)
        if rng.random() < 0.3:
            text += ".." + number(low, high)
        if rng.random() < 0.3:
            text += "/" + str(rng.randint(0, high - low + 2))
        if rng.random() < 0.2:
            text += "," + field(low, high)
        return text

    events = []
    for _ in range(count):
        parts = []
        if rng.random() < 0.3:
            parts.append(rng.choice(["Mon", "Tue..Thu", "Sat,Sun", "Fri-Mon", "Wed,", "Mon..Tue.."]))
        if rng.random() < 0.5:
            day = field(1, 31)
            date = [field(1, 12), day] if rng.random() < 0.3 else [field(0, 2199), field(1, 12), day]
            parts.append("-".join(date[:-1]) + rng.choice("-----~") + date[-1])
        if rng.random() < 0.8:
            parts.append(":".join([field(0, 23), field(0, 59), field(0, 59)][: rng.choice([2, 3, 3])]))
        if rng.random() < 0.1:
            parts.append("UTC")
        events.append(" ".join(parts))
    return [event for event in events if event]


def _systemd_refuses_calendar(values: list[str]) -> set[str]:
    result = subprocess.run(["systemd-analyze", "calendar", "--", *values], capture_output=True, text=True, env=ENV, timeout=60)
    return set(re.findall(r"Failed to parse calendar specification '(.*)': ", result.stderr))


def _accepts(check: Callable[[str], object], value: str) -> bool:
    try:
        check(value)
    except ValueError:
        return False
    return True


@needs_systemd
def test_calendar_events_are_accepted_exactly_when_systemd_accepts_them() -> None:
    values = CALENDAR_EVENTS + _generated(400)
    refused = _systemd_refuses_calendar(values)
    # Both kinds are in the corpus, so a check that accepts everything, or nothing, fails here.
    assert 0 < len(refused) < len(set(values))
    only_program_refuses = [v for v in values if v not in refused and not _accepts(calendar_event, v)]
    only_systemd_refuses = [v for v in values if v in refused and _accepts(calendar_event, v)]
    assert (only_program_refuses, only_systemd_refuses) == ([], [])


@needs_systemd
def test_time_spans_are_accepted_exactly_when_systemd_accepts_them() -> None:
    disagreements = {}
    for value in TIME_SPANS:
        result = subprocess.run(["systemd-analyze", "timespan", "--", value], capture_output=True, text=True, env=ENV, timeout=30)
        ours = _accepts(time_span_usec, value)
        if value in SPANS_ONLY_SYSTEMD_READS:
            assert result.returncode == 0 and not ours, value
        elif ours != (result.returncode == 0):
            disagreements[value] = result.stderr.strip() or "systemd accepts it"
        elif ours:
            systemd_usec = int(re.findall(r"μs: (\d+)", result.stdout)[0])
            assert time_span_usec(value) == systemd_usec, value
    assert disagreements == {}


def test_a_refused_value_is_named_with_examples() -> None:
    with pytest.raises(ValueError, match=r"'every day' is not a calendar event systemd reads .*'\*:0/15'"):
        calendar_event("every day")
    with pytest.raises(ValueError, match=r"'-5s' is not a time span systemd reads .*'1h 30min'"):
        time_span_usec("-5s")
