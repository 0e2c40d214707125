"""Who is on call: the lookups paging, `/oncall`, the CLI and the calendar feed share.

Each takes a session (for run-time overrides) and the file configuration, and returns
`Shift`s in UTC; rendering in someone's zone happens at the edges.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from bot.oncall import overrides
from bot.oncall.configuration import OncallConfig
from bot.oncall.models import OncallOverride
from bot.oncall.overrides import schedule_named
from bot.oncall.rotation import HORIZON, Shift, final_shifts, shift_at, shifts_around, utc


def on_call(session: Session, config: OncallConfig, schedule: str, at: datetime) -> Shift | None:
    """The shift holding `at` (overrides applied), or None when nobody is on call then.

    Raises OncallError for an unknown schedule. A naive `at` is taken to be UTC.
    """
    definition = schedule_named(config, schedule)
    at = utc(at)
    spans = overrides.spans(session, config, schedule, at - HORIZON, at + HORIZON)
    return shift_at(definition, at, spans)


def upcoming(
    session: Session, config: OncallConfig, schedule: str, at: datetime, count: int = 2
) -> list[Shift]:
    """`count` shifts from `at` on: the one holding `at` first (if anyone is on call then),
    then the ones after it, each whole (up to a year either side of `at`)."""
    definition = schedule_named(config, schedule)
    at = utc(at)
    spans = overrides.spans(session, config, schedule, at - HORIZON, at + HORIZON)
    return shifts_around(definition, at, spans, count=count)


def shifts(
    session: Session, config: OncallConfig, schedule: str, start: datetime, end: datetime
) -> list[Shift]:
    """The final shifts over [start, end), clipped to it."""
    definition = schedule_named(config, schedule)
    spans = overrides.spans(session, config, schedule, start, end)
    return final_shifts(definition, start, end, spans)


def by_person(shifts: list[Shift]) -> list[Shift]:
    """Touching shifts of the same person joined, whatever their source ("office, weekly"):
    what a person experiences as one stretch on call."""
    joined: list[Shift] = []
    for shift in shifts:
        last = joined[-1] if joined else None
        if last is not None and last.end == shift.start and last.person == shift.person:
            sources = last.source.split(", ")
            source = last.source if shift.source in sources else f"{last.source}, {shift.source}"
            joined[-1] = Shift(last.start, shift.end, last.person, source)
        else:
            joined.append(shift)
    return joined


# Extra shifts fetched so that joining a person's touching shifts still leaves enough.
_SLACK = 6


def stretches(
    session: Session, config: OncallConfig, schedule: str, at: datetime, count: int = 2
) -> list[Shift]:
    """Like `upcoming`, but each person's touching shifts joined (see `by_person`)."""
    return by_person(upcoming(session, config, schedule, at, count=count + _SLACK))[:count]


@dataclass(frozen=True)
class Status:
    """One schedule at one instant: who now, who next, and the run-time overrides ahead."""

    schedule: str
    timezone: str
    at: datetime
    current: Shift | None
    following: list[Shift]
    overrides: list[OncallOverride]


def status(
    session: Session, config: OncallConfig, schedule: str, at: datetime, count: int = 1
) -> Status:
    """What `/oncall` and `firebreak oncall` show for one schedule: the current stretch (a
    person's touching shifts joined), the `count` after it, and the overrides not yet over."""
    definition = schedule_named(config, schedule)
    at = utc(at)
    ahead = stretches(session, config, schedule, at, count=count + 1)
    current = ahead[0] if ahead and ahead[0].contains(at) else None
    following = ahead[1:] if current else ahead[:count]
    pending = overrides.active(session, schedule, at, at + HORIZON)
    return Status(schedule, definition.timezone, at, current, following[:count], pending)


def statuses(
    session: Session, config: OncallConfig, at: datetime, names: list[str] | None = None
) -> list[Status]:
    """`status` for the named schedules, or all of them in configuration order."""
    return [status(session, config, name, at) for name in (names or list(config.schedules))]
