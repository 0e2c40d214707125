"""The postmortem follow-up: when the review is due, and who is reminded when.

When an incident is resolved its postmortem falls due `postmortem.due_after` later (default
5 working days, Monday to Friday in the team's zone `postmortem.timezone`, at the same wall
clock time as the resolution). The commander is reminded when it falls due and then, while
it is overdue, once every working day at that same time, until `/incident postmortem done`.
Reopening the incident cancels the reminders; resolving it again re-arms them (unless the
postmortem was already marked done).

One row per incident (`postmortem_followups`) holds the state; the leader's scheduler calls
`claim_due`, which takes due rows under their row lock, advances `next_at` past now (a
leader that was down for days sends one reminder, not one per missed day) and bumps the
generation, in the same transaction as the reminders it queues. So a reminder is sent once:
a restart between claim and commit claims again, a restart after the commit finds it done.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import ForeignKey, Index, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from bot import timeline
from bot.db import Base
from bot.incidents.models import Incident
from bot.postmortem.config import DueAfter

ARMED, DONE, CANCELLED = "armed", "done", "cancelled"
WORKING_DAYS = frozenset(range(5))  # Monday (0) to Friday (4)


class PostmortemFollowup(Base):
    __tablename__ = "postmortem_followups"
    __table_args__ = (Index("ix_postmortem_followups_due", "state", "next_at"),)

    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))
    resolved_at: Mapped[datetime]
    due_at: Mapped[datetime]
    next_at: Mapped[datetime | None]
    reminders: Mapped[int]
    generation: Mapped[int]
    done_by: Mapped[str | None] = mapped_column(String(64))
    done_at: Mapped[datetime | None]


class FollowupError(ValueError):
    """`/incident postmortem done` cannot be done now; the message says why."""


@dataclass(frozen=True)
class Reminder:
    """One reminder to send: `due` the first time, `overdue` after."""

    incident_id: int
    kind: str  # due | overdue
    due_at: datetime
    number: int  # 1 for the first reminder


def _local(moment: datetime, zone: ZoneInfo, day: datetime) -> datetime:
    """`day`'s date at `moment`'s wall clock time in `zone` (a time a DST change skips is
    read as zoneinfo does: the offset before the change), as UTC."""
    wall = moment.astimezone(zone)
    return wall.replace(year=day.year, month=day.month, day=day.day, fold=0).astimezone(
        moment.tzinfo
    )


def add_working_days(moment: datetime, days: int, zone: ZoneInfo) -> datetime:
    """`days` working days (Mon-Fri in `zone`) after `moment`, at the same local time."""
    local = moment.astimezone(zone)
    day = local
    counted = 0
    while counted < days:
        day = day + timedelta(days=1)
        if day.weekday() in WORKING_DAYS:
            counted += 1
    return _local(moment, zone, day)


def due_time(resolved_at: datetime, due: DueAfter, zone: ZoneInfo) -> datetime:
    """When the postmortem of an incident resolved at `resolved_at` is due."""
    if due.unit == "working_days":
        return add_working_days(resolved_at, due.amount, zone)
    if due.unit == "days":
        return _local(resolved_at, zone, resolved_at.astimezone(zone) + timedelta(days=due.amount))
    return resolved_at + timedelta(hours=due.amount)


def sync(session: Session, incident: Incident, *, due: DueAfter, zone: ZoneInfo) -> None:
    """Bring the incident's follow-up in line with its state, in the caller's transaction:
    resolved -> armed (due from this resolution), reopened -> cancelled. Done stays done."""
    row = session.get(PostmortemFollowup, incident.id, with_for_update=True)
    if incident.resolved_at is None:
        if row is not None and row.state == ARMED:
            row.state, row.next_at, row.generation = CANCELLED, None, row.generation + 1
        return
    if row is not None and (
        row.state == DONE or (row.state == ARMED and row.resolved_at == incident.resolved_at)
    ):
        return
    due_at = due_time(incident.resolved_at, due, zone)
    if row is None:
        row = PostmortemFollowup(incident_id=incident.id, generation=0, reminders=0)
        session.add(row)
    row.state, row.resolved_at, row.due_at, row.next_at = (
        ARMED,
        incident.resolved_at,
        due_at,
        due_at,
    )
    row.reminders, row.generation = 0, (row.generation or 0) + 1
    session.flush()


def mark_done(session: Session, incident: Incident, *, actor: str, now: datetime) -> bool:
    """Stop the reminders and record `postmortem_done`; False if it was done already."""
    if incident.resolved_at is None:
        raise FollowupError(
            f"{incident.reference} is still open; resolve it first, then write its postmortem."
        )
    row = session.get(PostmortemFollowup, incident.id, with_for_update=True)
    if row is not None and row.state == DONE:
        return False
    if row is None:  # resolved before follow-ups existed: record it all the same
        row = PostmortemFollowup(
            incident_id=incident.id,
            resolved_at=incident.resolved_at,
            due_at=incident.resolved_at,
            reminders=0,
            generation=0,
        )
        session.add(row)
    row.state, row.next_at, row.done_by, row.done_at = DONE, None, actor, now
    row.generation = (row.generation or 0) + 1
    timeline.record(
        session,
        "postmortem_done",
        now=now,
        actor=actor,
        incident_id=incident.id,
        data={"reminders": row.reminders},
    )
    session.flush()
    return True


def claim_due(session: Session, now: datetime, zone: ZoneInfo) -> list[Reminder]:
    """Take every armed follow-up whose reminder is due (row-locked, skipping rows another
    claimer holds), advance it to its next working-day slot after `now`, and return the
    reminders to send; the caller queues them in this same transaction."""
    query = (
        select(PostmortemFollowup)
        .where(
            PostmortemFollowup.state == ARMED,
            PostmortemFollowup.next_at.is_not(None),
            PostmortemFollowup.next_at <= now,
        )
        .order_by(PostmortemFollowup.next_at, PostmortemFollowup.incident_id)
        .with_for_update(skip_locked=True)
    )
    reminders = []
    for row in session.scalars(query):
        assert row.next_at is not None
        following = row.next_at
        while following <= now:
            following = add_working_days(following, 1, zone)
        row.reminders += 1
        row.next_at, row.generation = following, row.generation + 1
        kind = (
            "due"
            if row.reminders == 1 and now < add_working_days(row.due_at, 1, zone)
            else ("overdue")
        )
        reminders.append(Reminder(row.incident_id, kind, row.due_at, row.reminders))
    session.flush()
    return reminders


def get(session: Session, incident_id: int) -> PostmortemFollowup | None:
    return session.get(PostmortemFollowup, incident_id)
