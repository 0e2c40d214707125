"""Overrides: someone takes a schedule for a while, from the config file or set at run time.

Run-time overrides live in `oncall_overrides`; cancelling one keeps the row (with who and
when) so the history stays. Actors are opaque strings (Slack user IDs from the slash
command, "cli" from the terminal); nothing here knows about Slack.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.oncall.configuration import OncallConfig, Schedule
from bot.oncall.errors import OncallError
from bot.oncall.models import OncallOverride
from bot.oncall.rotation import OverrideSpan, utc


def schedule_named(config: OncallConfig, name: str) -> Schedule:
    """The schedule called `name`, or an OncallError that lists the ones there are."""
    schedule = config.schedules.get(name)
    if schedule is None:
        known = ", ".join(sorted(config.schedules)) or "none are configured"
        raise OncallError(f"There is no schedule {name!r}. Schedules: {known}.")
    return schedule


def add(
    session: Session,
    config: OncallConfig,
    *,
    schedule: str,
    person: str,
    starts_at: datetime,
    ends_at: datetime,
    created_by: str,
    now: datetime,
) -> OncallOverride:
    """Put `person` on call for `schedule` over [starts_at, ends_at) (aware datetimes)."""
    schedule_named(config, schedule)
    if person not in config.people:
        known = ", ".join(sorted(config.people)) or "none are configured"
        raise OncallError(
            f"{person!r} is not in people: in the configuration ({known}); "
            "use an @mention of someone listed there, or their name."
        )
    if starts_at.tzinfo is None or ends_at.tzinfo is None:
        raise ValueError("override times must carry a time zone")
    starts_at, ends_at = utc(starts_at), utc(ends_at)
    if ends_at <= starts_at:
        raise OncallError(
            f"The override ends ({ends_at:%Y-%m-%d %H:%M} UTC) before it starts "
            f"({starts_at:%Y-%m-%d %H:%M} UTC); the end must come later."
        )
    if ends_at <= now:
        raise OncallError(
            f"The override would end at {ends_at:%Y-%m-%d %H:%M} UTC, which is already past."
        )
    override = OncallOverride(
        schedule=schedule,
        person=person,
        starts_at=starts_at,
        ends_at=ends_at,
        created_by=created_by,
        created_at=now,
    )
    session.add(override)
    session.flush()
    return override


def cancel(session: Session, override_id: int, *, by: str, now: datetime) -> OncallOverride:
    """End override `override_id` now; an unknown or already cancelled one is an error."""
    override = session.scalars(
        select(OncallOverride).where(OncallOverride.id == override_id).with_for_update()
    ).one_or_none()
    if override is None:
        raise OncallError(
            f"There is no override #{override_id}; `/oncall <schedule>` lists them with ids."
        )
    if override.cancelled_at is not None:
        raise OncallError(
            f"Override #{override_id} was already cancelled "
            f"(at {override.cancelled_at:%Y-%m-%d %H:%M} UTC by {override.cancelled_by})."
        )
    override.cancelled_at = now
    override.cancelled_by = by
    session.flush()
    return override


def active(session: Session, schedule: str, start: datetime, end: datetime) -> list[OncallOverride]:
    """The schedule's uncancelled run-time overrides that intersect [start, end), oldest first."""
    query = (
        select(OncallOverride)
        .where(
            OncallOverride.schedule == schedule,
            OncallOverride.cancelled_at.is_(None),
            OncallOverride.starts_at < utc(end),
            OncallOverride.ends_at > utc(start),
        )
        .order_by(OncallOverride.id)
    )
    return list(session.scalars(query))


def configured(schedule: Schedule) -> list[OverrideSpan]:
    """The schedule's overrides from the config file; times without a zone are its zone's."""
    zone = schedule.zone
    return [
        OverrideSpan(
            utc(o.start if o.start.tzinfo else o.start.replace(tzinfo=zone)),
            utc(o.end if o.end.tzinfo else o.end.replace(tzinfo=zone)),
            o.user,
        )
        for o in schedule.overrides
    ]


def spans(
    session: Session, config: OncallConfig, schedule: str, start: datetime, end: datetime
) -> list[OverrideSpan]:
    """Config overrides then run-time ones over [start, end), lowest priority first."""
    start, end = utc(start), utc(end)
    planned = [
        span
        for span in configured(schedule_named(config, schedule))
        if span.start < end and span.end > start
    ]
    return planned + [
        OverrideSpan(o.starts_at, o.ends_at, o.person, o.id)
        for o in active(session, schedule, start, end)
    ]
