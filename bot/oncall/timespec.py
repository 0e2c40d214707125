"""The small languages of on-call configuration: durations, rotations, hand-offs, windows.

    wait: 5m            durations: 30s, 5m, 1h30m, 2d, 1w
    rotation: weekly    hourly:N | daily | weekly | every: 12h
    handoff: mon 09:00  weekday + local time for weekly rotations, local time otherwise
    restrict: [mon-fri 09:00-17:00, sat,sun 10:00-14:00, daily 22:00-06:00]

Each parser raises ValueError with a message that says what is accepted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import time, timedelta
from typing import Any

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"^(?:\d+[smhdw])+$")
_PART = re.compile(r"(\d+)([smhdw])")
_TIME = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


MAX_DURATION = timedelta(days=365)


def parse_duration(value: Any) -> timedelta:
    """'30s', '5m', '1h30m', '2d', '1w' (a bare number is refused: say the unit).

    At most `MAX_DURATION` (a year): waits, turns and timeouts longer than that are mistakes,
    and a limit keeps every sum of times far from `datetime`'s range.
    """
    # Only text can be a duration (a bare number has no unit); long text is never one.
    text = value.strip().lower().replace(" ", "") if isinstance(value, str) else ""
    if len(text) > 64 or not _DURATION.match(text):
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
        raise ValueError(f"{shown} is not a duration; write it like 30s, 5m, 1h30m, 2d or 1w")
    parts = _PART.findall(text)
    too_long = f"{value!r} is longer than a year; the limit is 365d (52w1d)"
    if any(len(number.lstrip("0")) > 9 for number, _ in parts):  # before int(): no overflow
        raise ValueError(too_long)
    seconds = sum(int(number) * _UNITS[unit] for number, unit in parts)
    if seconds <= 0:
        raise ValueError(f"{value!r} must be longer than zero")
    if seconds > MAX_DURATION.total_seconds():
        raise ValueError(too_long)
    return timedelta(seconds=seconds)


def format_duration(length: timedelta) -> str:
    seconds = int(length.total_seconds())
    parts = []
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts) or "0s"


@dataclass(frozen=True)
class Rotation:
    """How long each person's turn is.

    A whole number of days (daily, weekly, `every: 2d`) turns on the local calendar, so a
    Monday 09:00 hand-off stays at 09:00 across daylight-saving changes; shorter turns
    (hourly:N, `every: 12h`) are exact elapsed time.
    """

    length: timedelta
    label: str

    @property
    def calendar_days(self) -> int | None:
        days, rest = divmod(self.length, timedelta(days=1))
        return int(days) if not rest and days else None

    @property
    def weekly(self) -> bool:
        return self.length == timedelta(weeks=1)


def parse_rotation(value: Any) -> Rotation:
    if isinstance(value, Rotation):
        return value
    if isinstance(value, dict) and set(value) == {"every"}:
        value = f"every {value['every']}"
    text = str(value).strip().lower()
    if text == "weekly":
        return Rotation(timedelta(weeks=1), "weekly")
    if text == "daily":
        return Rotation(timedelta(days=1), "daily")
    hourly = re.fullmatch(r"hourly\s*:\s*(\d+)", text)
    if hourly and hourly.group(1).strip("0"):
        hours = parse_duration(f"{hourly.group(1)}h") // timedelta(hours=1)
        return Rotation(timedelta(hours=hours), f"hourly:{hours}")
    every = re.fullmatch(r"every\s*:?\s*(\S+)", text)
    if every:
        length = parse_duration(every.group(1))
        if length < timedelta(minutes=15):
            raise ValueError(f"{value!r}: a turn must last at least 15m")
        return Rotation(length, f"every {format_duration(length)}")
    raise ValueError(f"{value!r} is not a rotation; use hourly:N, daily, weekly or every: 12h")


@dataclass(frozen=True)
class Handoff:
    """When turns change, in the schedule's zone; `weekday` (0 = Monday) for weekly turns."""

    at: time
    weekday: int | None = None


def parse_time(value: str) -> time:
    match = _TIME.match(value.strip())
    if not match:
        raise ValueError(f"{value!r} is not a time of day; write it like 09:00 or 17:30")
    return time(int(match.group(1)), int(match.group(2)))


def parse_handoff(value: Any, rotation: Rotation | None) -> Handoff:
    words = str(value).strip().lower().split()
    if len(words) == 2 and words[0][:3] in WEEKDAYS:
        handoff = Handoff(parse_time(words[1]), WEEKDAYS.index(words[0][:3]))
    elif len(words) == 1:
        handoff = Handoff(parse_time(words[0]))
    else:
        raise ValueError(f"{value!r} is not a hand-off; write it like 'mon 09:00' or '09:00'")
    if rotation is not None and rotation.weekly and handoff.weekday is None:
        raise ValueError(f"{value!r}: a weekly rotation needs a weekday, like 'mon 09:00'")
    if rotation is not None and not rotation.weekly and handoff.weekday is not None:
        raise ValueError(f"{value!r}: only weekly rotations take a weekday; write just the time")
    return handoff


@dataclass(frozen=True)
class Window:
    """A weekly recurring window; `end <= start` runs past midnight into the next day."""

    days: frozenset[int]
    start: time
    end: time

    @property
    def wraps(self) -> bool:
        return self.end <= self.start


_DAY_SETS = {
    "daily": range(7),
    "*": range(7),
    "weekdays": range(5),
    "weekends": range(5, 7),
}


def parse_days(text: str) -> frozenset[int]:
    if text in _DAY_SETS:
        return frozenset(_DAY_SETS[text])
    days: set[int] = set()
    for part in text.split(","):
        first, _, last = part.partition("-")
        if first[:3] not in WEEKDAYS or (last and last[:3] not in WEEKDAYS):
            raise ValueError(
                f"{text!r} is not a set of days; use mon-fri, sat,sun, daily, weekdays or weekends"
            )
        start = WEEKDAYS.index(first[:3])
        end = WEEKDAYS.index(last[:3]) if last else start
        day = start
        while True:
            days.add(day)
            if day == end:
                break
            day = (day + 1) % 7
    return frozenset(days)


def parse_window(value: Any) -> Window:
    if isinstance(value, Window):
        return value
    words = str(value).strip().lower().split()
    if len(words) != 2 or "-" not in words[1]:
        raise ValueError(
            f"{value!r} is not a window; write it like 'mon-fri 09:00-17:00' or 'daily 22:00-06:00'"
        )
    days = parse_days(words[0])
    start_text, _, end_text = words[1].partition("-")
    start = parse_time(start_text)
    end = time(0, 0) if end_text == "24:00" else parse_time(end_text)
    return Window(days, start, end)
