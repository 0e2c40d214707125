"""Rotation maths: who is on call when, as half-open UTC intervals. No database, no Slack.

A layer's turns follow its rotation. Whole-day rotations (daily, weekly, `every: 2d`) turn
on the schedule's local calendar: turn k starts at the hand-off time on the anchor date plus
k rotations, converted to UTC on that day, so a Monday 09:00 hand-off stays at 09:00 across
daylight-saving changes and the turn containing a change is an hour shorter or longer.
Shorter rotations (hourly:N, `every: 12h`) are exact elapsed time from the anchor.

The anchor is the layer's `start` date at the hand-off time; weekly rotations anchor on the
first hand-off weekday on or after `start`. Before the anchor the layer has nobody.

Restrictions are weekly windows in the schedule's local time; a turn counts only inside
them. Layers are stacked: a later layer wins wherever it has someone, and overrides beat
every layer (a later override beats an earlier one). Where nobody is on call there is no
shift at all: gaps are never filled and shifts never overlap.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

from bot.oncall.configuration import Layer, Schedule

ONE_DAY = timedelta(days=1)


@dataclass(frozen=True)
class Shift:
    """Someone on call over [start, end) (aware UTC); `source` is a layer name or an override."""

    start: datetime
    end: datetime
    person: str
    source: str

    @property
    def length(self) -> timedelta:
        return self.end - self.start

    def contains(self, moment: datetime) -> bool:
        return self.start <= moment < self.end


@dataclass(frozen=True)
class OverrideSpan:
    """An override as the maths sees it: `override_id` is None for one from the config file."""

    start: datetime
    end: datetime
    person: str
    override_id: int | None = None

    @property
    def source(self) -> str:
        return "override" if self.override_id is None else f"override #{self.override_id}"


def utc(moment: datetime) -> datetime:
    """An aware UTC datetime; naive input is taken to be UTC already."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def local_to_utc(day: date, at: time, zone: ZoneInfo) -> datetime:
    """The instant a wall clock in `zone` shows `day at`.

    A time skipped by a spring-forward change is read with the offset before the change
    (02:30 on the day Berlin skips 02:00-03:00 is 03:30 CEST); a time that occurs twice in a
    fall-back change is its first occurrence.
    """
    return datetime.combine(day, at, tzinfo=zone).astimezone(UTC)


# -- one layer ------------------------------------------------------------------------


class _Turns:
    """Turn k of a layer: its start instant and the person holding it."""

    def __init__(self, layer: Layer, zone: ZoneInfo) -> None:
        self.layer = layer
        self.zone = zone
        self.days = layer.rotation.calendar_days
        anchor = layer.start
        if layer.rotation.weekly and layer.handoff.weekday is not None:
            anchor += timedelta(days=(layer.handoff.weekday - anchor.weekday()) % 7)
        self.anchor_date = anchor
        self.anchor = local_to_utc(anchor, layer.handoff.at, zone)

    def start(self, k: int) -> datetime:
        if self.days is not None:
            day = self.anchor_date + timedelta(days=k * self.days)
            return local_to_utc(day, self.layer.handoff.at, self.zone)
        return self.anchor + k * self.layer.rotation.length

    def person(self, k: int) -> str:
        return self.layer.users[k % len(self.layer.users)]

    def index_at(self, moment: datetime) -> int:
        """The turn holding `moment` (-1 before the anchor)."""
        if moment < self.anchor:
            return -1
        if self.days is None:
            return (moment - self.anchor) // self.layer.rotation.length
        local_day = moment.astimezone(self.zone).date()
        k = max(0, (local_day - self.anchor_date).days // self.days)
        while k > 0 and self.start(k) > moment:
            k -= 1
        while self.start(k + 1) <= moment:
            k += 1
        return k


def restriction_intervals(
    layer: Layer, zone: ZoneInfo, start: datetime, end: datetime
) -> list[tuple[datetime, datetime]]:
    """The layer's restriction windows over [start, end) as merged, sorted UTC intervals."""
    first = start.astimezone(zone).date() - ONE_DAY
    last = end.astimezone(zone).date()
    spans: list[tuple[datetime, datetime]] = []
    day = first
    while day <= last:
        for window in layer.restrict:
            if day.weekday() not in window.days:
                continue
            opens = local_to_utc(day, window.start, zone)
            closes = local_to_utc(day + ONE_DAY if window.wraps else day, window.end, zone)
            if closes > opens and closes > start and opens < end:
                spans.append((max(opens, start), min(closes, end)))
        day += ONE_DAY
    spans.sort()
    merged: list[tuple[datetime, datetime]] = []
    for opens, closes in spans:
        if merged and opens <= merged[-1][1]:
            if closes > merged[-1][1]:
                merged[-1] = (merged[-1][0], closes)
        else:
            merged.append((opens, closes))
    return merged


def layer_shifts(layer: Layer, zone: ZoneInfo, start: datetime, end: datetime) -> list[Shift]:
    """The layer's turns that intersect [start, end), clipped to it and to its restrictions.

    Consecutive turns of the same person (a one-person layer) come back merged.
    """
    start, end = utc(start), utc(end)
    if end <= start:
        return []
    turns = _Turns(layer, zone)
    k = max(0, turns.index_at(start))
    raw: list[Shift] = []
    begins = turns.start(k)
    while begins < end:
        ends = turns.start(k + 1)
        if ends > start:
            raw.append(Shift(max(begins, start), min(ends, end), turns.person(k), layer.name))
        k, begins = k + 1, ends
    if layer.restrict:
        raw = _clip(raw, restriction_intervals(layer, zone, start, end))
    return _merge(raw)


def _clip(shifts: list[Shift], windows: list[tuple[datetime, datetime]]) -> list[Shift]:
    """Each shift cut to the parts inside `windows` (both sorted and non-overlapping)."""
    clipped: list[Shift] = []
    w = 0
    for shift in shifts:
        while w < len(windows) and windows[w][1] <= shift.start:
            w += 1
        i = w
        while i < len(windows) and windows[i][0] < shift.end:
            opens, closes = max(windows[i][0], shift.start), min(windows[i][1], shift.end)
            if opens < closes:
                clipped.append(Shift(opens, closes, shift.person, shift.source))
            i += 1
    return clipped


def _merge(shifts: Iterable[Shift]) -> list[Shift]:
    """Join touching shifts of the same person from the same source."""
    merged: list[Shift] = []
    for shift in shifts:
        last = merged[-1] if merged else None
        if (
            last is not None
            and last.end == shift.start
            and last.person == shift.person
            and last.source == shift.source
        ):
            merged[-1] = Shift(last.start, shift.end, last.person, last.source)
        else:
            merged.append(shift)
    return merged


# -- the stack ------------------------------------------------------------------------


def _overlay(levels: Sequence[Sequence[Shift]]) -> list[Shift]:
    """Stack levels (lowest first; each sorted and non-overlapping): the highest one wins."""
    bounds = sorted({moment for level in levels for s in level for moment in (s.start, s.end)})
    pointers = [0] * len(levels)
    result: list[Shift] = []
    for begins, ends in pairwise(bounds):
        winner: Shift | None = None
        for index in range(len(levels) - 1, -1, -1):
            level = levels[index]
            p = pointers[index]
            while p < len(level) and level[p].end <= begins:
                p += 1
            pointers[index] = p
            if p < len(level) and level[p].start <= begins:
                winner = level[p]
                break
        if winner is not None:
            result.append(Shift(begins, ends, winner.person, winner.source))
    return _merge(result)


def override_shifts(
    overrides: Iterable[OverrideSpan], start: datetime, end: datetime
) -> list[Shift]:
    """Overrides clipped to [start, end) and flattened: where two overlap the later one wins."""
    start, end = utc(start), utc(end)
    levels = []
    for span in overrides:
        begins, ends = max(utc(span.start), start), min(utc(span.end), end)
        if begins < ends:
            levels.append([Shift(begins, ends, span.person, span.source)])
    return _overlay(levels)


def final_shifts(
    schedule: Schedule,
    start: datetime,
    end: datetime,
    overrides: Iterable[OverrideSpan] = (),
) -> list[Shift]:
    """Who is on call over [start, end): layers stacked, overrides on top, clipped to the window.

    The result is sorted, contiguous where someone is on call, and never overlapping.
    """
    start, end = utc(start), utc(end)
    if end <= start:
        return []
    zone = schedule.zone
    levels: list[Sequence[Shift]] = [
        layer_shifts(layer, zone, start, end) for layer in schedule.layers
    ]
    levels.append(override_shifts(overrides, start, end))
    return _overlay(levels)


# -- around an instant ----------------------------------------------------------------

# How far around an instant the lookups search; a shift longer than this shows clipped.
HORIZON = timedelta(days=366)
_FIRST_REACH = timedelta(days=8)


def shifts_around(
    schedule: Schedule,
    at: datetime,
    overrides: Sequence[OverrideSpan] = (),
    count: int = 2,
) -> list[Shift]:
    """The shift holding `at` (if any) and the ones after it, `count` in all, unclipped.

    Searches a window around `at` that grows until the shifts it returns are whole (neither
    starting at the window's start nor ending at its end), or it reaches `HORIZON`.
    """
    at = utc(at)
    reach = _FIRST_REACH
    while True:
        start, end = at - reach, at + reach
        shifts = [s for s in final_shifts(schedule, start, end, overrides) if s.end > at]
        chosen = shifts[:count]
        whole_start = not chosen or chosen[0].start > start
        whole_end = (len(chosen) == count and chosen[-1].end < end) or (
            not chosen and reach >= HORIZON
        )
        if (whole_start and whole_end) or reach >= HORIZON:
            return chosen
        reach = min(reach * 2, HORIZON)


def shift_at(
    schedule: Schedule, at: datetime, overrides: Sequence[OverrideSpan] = ()
) -> Shift | None:
    """The shift that holds `at`, or None when nobody is on call then."""
    at = utc(at)
    reach = _FIRST_REACH
    while True:
        start, end = at - reach, at + reach
        holding = [s for s in final_shifts(schedule, start, end, overrides) if s.contains(at)]
        if not holding:
            return None
        shift = holding[0]
        if (shift.start > start and shift.end < end) or reach >= HORIZON:
            return shift
        reach = min(reach * 2, HORIZON)
