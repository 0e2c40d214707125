"""Hand-offs: the moments someone new comes on call, each announced once.

A job calls `due_handoffs` every minute. It finds the shift starts in the last few minutes
and records each in `oncall_handoffs` (unique per schedule and start), so two replicas, or
two runs a minute apart, announce each hand-off once. A shift that follows the same person
without a gap (an override handing back to the rota's own person) is not a hand-off.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot.oncall import schedules
from bot.oncall.configuration import OncallConfig
from bot.oncall.models import Handoff
from bot.oncall.rotation import Shift, utc

LOOKBACK = timedelta(minutes=10)


@dataclass(frozen=True)
class DueHandoff:
    schedule: str
    person: str
    starts_at: datetime
    ends_at: datetime
    handoff_channel: str | None


def _starts(shifts: list[Shift], since: datetime, now: datetime) -> list[Shift]:
    """Shifts starting in (since, now] that take over from someone else (or from nobody)."""
    starting = []
    for index, shift in enumerate(shifts):
        if not since < shift.start <= now:
            continue
        before = shifts[index - 1] if index else None
        if before is not None and before.end == shift.start and before.person == shift.person:
            continue
        starting.append(shift)
    return starting


def due_handoffs(
    session: Session, config: OncallConfig, now: datetime, lookback: timedelta = LOOKBACK
) -> list[DueHandoff]:
    """Record and return the hand-offs in (now - lookback, now] not announced yet."""
    now = utc(now)
    since = now - lookback
    due: list[DueHandoff] = []
    for name, schedule in config.schedules.items():
        window = schedules.shifts(session, config, name, since, now + timedelta(microseconds=1))
        starting = _starts(window, since, now)
        if not starting:
            continue
        recorded = set(
            session.scalars(
                select(Handoff.starts_at).where(
                    Handoff.schedule == name, Handoff.starts_at > since, Handoff.starts_at <= now
                )
            )
        )
        for shift in starting:
            if shift.start in recorded:
                continue
            try:
                with session.begin_nested():
                    session.add(
                        Handoff(
                            schedule=name,
                            starts_at=shift.start,
                            person=shift.person,
                            announced_at=now,
                        )
                    )
            except IntegrityError:
                continue  # another replica recorded it first and announces it
            stretch = schedules.stretches(session, config, name, shift.start, count=1)
            ends_at = stretch[0].end if stretch else shift.end
            due.append(
                DueHandoff(name, shift.person, shift.start, ends_at, schedule.handoff_channel)
            )
    return due
