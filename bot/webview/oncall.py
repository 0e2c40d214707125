"""The `/oncall` page's content: who is on call now and next, and a two-week grid per schedule.

No Flask here. The grid's rows are the schedule's layers, its overrides and the final
rotation, each cut into the viewer's local days; every shift comes from the on-call domain
(`bot.oncall.rotation`'s `layer_shifts`, `override_shifts` and `final_shifts`, overrides
from `bot.oncall.overrides.spans`), so the page shows exactly what paging, `/oncall` and the
calendar feed use. This module only slices those UTC shifts at the viewer's midnights.

A viewer's day is from local midnight to the next local midnight, so a day with a
daylight-saving change is 23 or 25 hours long: the grid says so on that day, and where a
shift is placed on a day's bar is its share of the day's real hours.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import cache
from urllib.parse import urlencode
from zoneinfo import ZoneInfo, available_timezones

from sqlalchemy.orm import Session

from bot.oncall import overrides, schedules
from bot.oncall.configuration import END_DATE, FIRST_DATE, OncallConfig, Schedule
from bot.oncall.ics import ics_token
from bot.oncall.rotation import (
    OverrideSpan,
    Shift,
    final_shifts,
    layer_shifts,
    local_to_utc,
    override_shifts,
)

DAYS = 14  # the grid's length, in the viewer's local days
TONES = 8  # colours for people (`who-0` ... `who-7` in static/style.css)
MIDNIGHT = time(0, 0)
LAST_FIRST_DAY = END_DATE - timedelta(days=DAYS + 1)  # the window stays inside 2000-2099
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


@cache
def _zone_names() -> frozenset[str]:
    return frozenset(available_timezones())


def moment_label(moment: datetime, zone: ZoneInfo) -> str:
    """`Mon 2026-03-30 09:00 CEST`: an instant as `firebreak oncall` prints it."""
    return moment.astimezone(zone).strftime("%a %Y-%m-%d %H:%M %Z")


def hours(length: timedelta) -> str:
    """`167 h`, `23 h`, `2.5 h`."""
    value = length.total_seconds() / 3600
    return f"{value:g} h" if value == int(value) else f"{value:.1f} h"


# -- the query string ----------------------------------------------------------------------


@dataclass(frozen=True)
class OncallQuery:
    """What to show: which schedules, from which local day, in which zone; and a message
    for each query value that was wrong (that value is ignored, the page still shows)."""

    names: list[str]
    first: date
    zone: ZoneInfo
    schedule: str = ""  # the one schedule asked for ("" for every one)
    tz: str = ""  # the zone asked for with ?tz= ("" for the viewer's own)
    problems: tuple[str, ...] = ()

    @classmethod
    def parse(
        cls, args: Mapping[str, str], known: Sequence[str], zone: ZoneInfo, now: datetime
    ) -> OncallQuery:
        problems: list[str] = []
        schedule = args.get("schedule", "").strip()
        if schedule and schedule not in known:
            listed = ", ".join(known) or "none are configured"
            problems.append(
                f"There is no schedule {schedule[:40]!r}; showing every schedule. "
                f"Schedules: {listed}."
            )
            schedule = ""
        tz = args.get("tz", "").strip()
        if tz and tz not in _zone_names():
            problems.append(
                f"tz {tz[:40]!r} is not a time zone; give an IANA name like Europe/Berlin or "
                "America/New_York (showing your own zone instead)."
            )
            tz = ""
        if tz:
            zone = ZoneInfo(tz)
        first = now.astimezone(zone).date()
        given = args.get("from", "").strip()
        if given:
            day = _day(given)
            if day is None:
                problems.append(
                    f"from {given[:40]!r} is not a date; write it as YYYY-MM-DD, like "
                    f"{first.isoformat()} (showing two weeks from today instead)."
                )
            elif not FIRST_DATE <= day <= LAST_FIRST_DAY:
                problems.append(
                    f"from {given[:40]!r} is out of range; give a day from {FIRST_DATE} to "
                    f"{LAST_FIRST_DAY} (showing two weeks from today instead)."
                )
            else:
                first = day
        names = [schedule] if schedule else list(known)
        return cls(names, first, zone, schedule, tz, tuple(problems))

    def query_string(self, first: date) -> str:
        """This query starting on `first`, for the earlier/later links."""
        values = {"schedule": self.schedule, "from": first.isoformat(), "tz": self.tz}
        return urlencode({key: value for key, value in values.items() if value})


def _day(text: str) -> date | None:
    if not _DATE.fullmatch(text):
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


# -- the grid ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Day:
    """One local day of the viewer: [start, end) in UTC, 23, 24 or 25 hours long."""

    date: date
    start: datetime
    end: datetime
    zone: ZoneInfo

    @property
    def length(self) -> timedelta:
        return self.end - self.start

    @property
    def label(self) -> str:
        return self.date.strftime("%a %d %b")

    @property
    def change(self) -> str:
        """`CET → CEST` on a day whose clocks change, else ""."""
        before = self.start.astimezone(self.zone)
        after = self.end.astimezone(self.zone)
        if before.utcoffset() == after.utcoffset():
            return ""
        return f"{before.tzname()} → {after.tzname()}"


@dataclass(frozen=True, slots=True)
class Segment:
    """A shift's part inside one day (`person` None: nobody on call then)."""

    start: datetime
    end: datetime
    person: str | None
    source: str
    begins: str  # local wall-clock time, like 09:00 (09:00 CEST on a day whose clocks change)
    ends: str  # 24:00 at the day's end
    left: float  # where the segment starts on the day's bar, percent of the day's hours
    width: float
    tone: int  # the person's colour, `who-<tone>`


@dataclass(frozen=True)
class Row:
    """One row of the grid (a layer, the overrides, or the final rotation), by day."""

    label: str
    kind: str  # "layer", "overrides" or "final"
    cells: list[list[Segment]]


@dataclass(frozen=True)
class Grid:
    days: list[Day]
    rows: list[Row]
    shifts: list[Shift]  # the final rotation over the whole window, clipped to it

    @property
    def start(self) -> datetime:
        return self.days[0].start

    @property
    def end(self) -> datetime:
        return self.days[-1].end


def local_days(first: date, zone: ZoneInfo, count: int = DAYS) -> list[Day]:
    """`count` local days from `first`, each from its midnight to the next one's."""
    midnights = [local_to_utc(first + timedelta(days=n), MIDNIGHT, zone) for n in range(count + 1)]
    return [
        Day(first + timedelta(days=n), midnights[n], midnights[n + 1], zone) for n in range(count)
    ]


def _clock(moment: datetime, day: Day, *, end: bool = False) -> str:
    if end and moment == day.end:
        return "24:00"
    local = moment.astimezone(day.zone)
    return local.strftime("%H:%M %Z" if day.change else "%H:%M")


def _segment(
    start: datetime,
    end: datetime,
    person: str | None,
    source: str,
    day: Day,
    tones: Mapping[str, int],
) -> Segment:
    length = day.length.total_seconds()
    return Segment(
        start,
        end,
        person,
        source,
        _clock(start, day),
        _clock(end, day, end=True),
        round(100 * (start - day.start).total_seconds() / length, 3),
        round(100 * (end - start).total_seconds() / length, 3),
        tones.get(person, 0) if person else 0,
    )


def by_day(
    shifts: Sequence[Shift], days: Sequence[Day], tones: Mapping[str, int], *, gaps: bool
) -> list[list[Segment]]:
    """`shifts` (sorted, not overlapping) cut at each day's bounds; with `gaps`, the times
    nobody holds are segments too (person None)."""
    cells: list[list[Segment]] = []
    first = 0
    for day in days:
        cell: list[Segment] = []
        at = day.start
        while first < len(shifts) and shifts[first].end <= day.start:
            first += 1
        index = first
        while index < len(shifts) and shifts[index].start < day.end:
            shift = shifts[index]
            begins, ends = max(shift.start, day.start), min(shift.end, day.end)
            if gaps and begins > at:
                cell.append(_segment(at, begins, None, "", day, tones))
            cell.append(_segment(begins, ends, shift.person, shift.source, day, tones))
            at = ends
            index += 1
        if gaps and at < day.end:
            cell.append(_segment(at, day.end, None, "", day, tones))
        cells.append(cell)
    return cells


def schedule_grid(
    schedule: Schedule,
    spans: Sequence[OverrideSpan],
    days: Sequence[Day],
    tones: Mapping[str, int],
) -> Grid:
    """The schedule's layers, overrides and final rotation over `days` (`local_days`).
    `spans` are its overrides (`bot.oncall.overrides.spans`)."""
    days = list(days)
    start, end = days[0].start, days[-1].end
    rows = []
    for layer in schedule.layers:
        turns = layer_shifts(layer, schedule.zone, start, end)
        rows.append(Row(layer.name, "layer", by_day(turns, days, tones, gaps=False)))
    overridden = override_shifts(spans, start, end)
    rows.append(Row("Overrides", "overrides", by_day(overridden, days, tones, gaps=False)))
    final = final_shifts(schedule, start, end, spans)
    rows.append(Row("On call", "final", by_day(final, days, tones, gaps=True)))
    return Grid(days, rows, final)


def tones(people: Iterable[str]) -> dict[str, int]:
    """Each person's colour on the page (`who-0` ... `who-7`), by their order in `people:`."""
    return {person: index % TONES for index, person in enumerate(people)}


# -- reading the database ------------------------------------------------------------------


@dataclass(frozen=True)
class Board:
    """One schedule on the page: who now and next, its grid, its calendar feed."""

    name: str
    schedule: Schedule
    status: schedules.Status
    grid: Grid
    calendar_url: str | None


def calendar_url(base_url: str, secret: str | None, name: str) -> str | None:
    """The schedule's `.ics` feed with its token (`bot.oncall.ics`), None without a secret."""
    if secret is None:
        return None
    return f"{base_url.rstrip('/')}/oncall/{name}.ics?token={ics_token(secret, name)}"


def boards(
    session: Session,
    config: OncallConfig,
    query: OncallQuery,
    now: datetime,
    *,
    base_url: str,
    secret: str | None,
) -> list[Board]:
    """A `Board` per schedule the query names, in configuration order."""
    colours = tones(config.people)
    days = local_days(query.first, query.zone)
    start, end = days[0].start, days[-1].end
    shown = []
    for name in query.names:
        schedule = config.schedules[name]
        spans = overrides.spans(session, config, name, start, end)
        shown.append(
            Board(
                name,
                schedule,
                schedules.status(session, config, name, now),
                schedule_grid(schedule, spans, days, colours),
                calendar_url(base_url, secret, name),
            )
        )
    return shown
