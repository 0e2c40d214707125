"""The paging state machine: triggered -> acknowledged -> resolved, or exhausted.

Every function takes a session and the current instant and changes one page under a row
lock. Escalation runs one step at a time: `escalate(page, generation)` acts only if the page
is still triggered and the generation matches, then writes the step's notifications (unique
per page, cycle, step, person and channel) and the next due time in the same transaction.
So a job that fires late, twice, on two replicas, or after an acknowledgement does nothing,
and no step is ever notified twice. Scheduling the next job is the caller's business; the
row is the truth and a reconcile pass recreates any job a triggered page lacks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, func, or_, select, update
from sqlalchemy.orm import Session

from bot import timeline
from bot.db import insert_unless_taken
from bot.oncall.configuration import OncallConfig
from bot.oncall.models import (
    ACKNOWLEDGED,
    EXHAUSTED,
    OPEN_STATES,
    RESOLVED,
    TRIGGERED,
    Page,
    PageNotification,
)
from bot.oncall.notify import Notification
from bot.oncall.targets import EscalationSnapshot, SnapshotStep, Target
from bot.timeline import BOT, TimelineEvent

MAX_MESSAGE = 1000
# Waits between tries of one notification; the last repeats until max_attempts.
BACKOFF = (timedelta(seconds=5), timedelta(seconds=15), timedelta(seconds=45), timedelta(minutes=2))
# A notification being sent is leased to its sender: `next_attempt_at` holds the lease's end
# while the status is "sending". A live sender renews it (`renew_leases`); a sender that died
# leaves it to expire, and the next claim after that sends it again (at least once).
LEASE = timedelta(seconds=10)


class PagingError(Exception):
    """A page request that cannot be honoured; the message is shown to the user as is."""


@dataclass(frozen=True)
class Step:
    """What one escalation pass did; `next_at` is None once the page stopped escalating."""

    page_id: int
    generation: int
    next_at: datetime | None
    notified: list[str] = field(default_factory=list)
    notifications: list[int] = field(default_factory=list)
    exhausted: bool = False


@dataclass(frozen=True)
class Outcome:
    """What a request did to a page: the fact it recorded, or (unchanged) why not."""

    page: Page
    event: TimelineEvent | None
    reason: str = ""
    step: Step | None = None  # the step an escalate-now ran at once

    @property
    def changed(self) -> bool:
        return self.event is not None


@dataclass(frozen=True)
class Triggered:
    """A new page with its first step already run, or the open page its dedup key names."""

    page: Page
    created: bool
    step: Step | None
    event: TimelineEvent | None = None  # the page_triggered fact, when created


# -- targets and policies ---------------------------------------------------------------


def snapshot_for(config: OncallConfig, target: Target) -> EscalationSnapshot:
    """The escalation a page to `target` follows, copied from the configuration now."""
    if target.kind == "policy":
        policy = config.escalation_policies.get(target.name)
        if policy is None:
            raise PagingError(_unknown("policy", target.name, config.escalation_policies))
        return policy.snapshot()
    if target.kind == "service":
        service = config.services.get(target.name)
        if service is None:
            raise PagingError(_unknown("service", target.name, config.services))
        return snapshot_for(config, Target("policy", service.escalation_policy))
    if target.kind == "user" and target.name not in config.people:
        raise PagingError(_unknown("person", target.name, config.people))
    if target.kind == "schedule" and target.name not in config.schedules:
        raise PagingError(_unknown("schedule", target.name, config.schedules))
    step = SnapshotStep((target,), config.paging.wait)
    return EscalationSnapshot((step,), config.paging.repeat)


def _unknown(what: str, name: str, known: dict[str, Any]) -> str:
    choices = ", ".join(known) or "none configured"
    return f"There is no {what} `{name[:64]}`. Known: {choices}."


def people_for(
    session: Session, config: OncallConfig, targets: tuple[Target, ...], at: datetime
) -> list[str]:
    """The people a step reaches at `at`, in order, each once; schedules resolve to whoever
    is on call (nobody, if the schedule has a gap)."""
    from bot.oncall.schedules import on_call  # schedules import this package's config only

    people: list[str] = []
    for target in targets:
        if target.kind == "user":
            people.append(target.name)
        elif target.kind == "schedule":
            shift = on_call(session, config, target.name, at)
            if shift is not None:
                people.append(shift.person)
    return list(dict.fromkeys(people))


# -- the state machine ------------------------------------------------------------------


def _event(
    session: Session,
    page: Page,
    kind: str,
    actor: str,
    now: datetime,
    *,
    flush: bool = True,
    **data: Any,
) -> TimelineEvent:
    """The page's fact, in its incident's timeline too when it has one (one row, not two);
    `flush=False` leaves its INSERT to the caller's next flush (or the commit)."""
    event = timeline.record(
        session,
        kind,
        now=now,
        actor=actor,
        incident_id=page.incident_id,
        page_id=page.id,
        data=data,
        flush=flush,
    )
    assert event is not None
    return event


def get(session: Session, page_id: int, *, lock: bool = False) -> Page:
    query = select(Page).where(Page.id == page_id)
    if lock:
        query = query.with_for_update()
    page = session.scalars(query).one_or_none()
    if page is None:
        raise PagingError(f"There is no page P-{page_id}.")
    return page


def open_page_by_key(session: Session, dedup_key: str, *, lock: bool = False) -> Page | None:
    """The open (not resolved) page with this dedup key, if any."""
    query = select(Page).where(Page.dedup_key == dedup_key, Page.state.in_(OPEN_STATES))
    if lock:
        query = query.with_for_update()
    return session.scalars(query).one_or_none()


def validate_message(message: str) -> str:
    message = " ".join(message.split())
    if not message:
        raise PagingError(
            "Say what the page is about, e.g. `/page schedule:primary checkout is down`."
        )
    if len(message) > MAX_MESSAGE:
        raise PagingError(f"The message is {len(message)} characters; keep it to {MAX_MESSAGE}.")
    return message


def trigger(
    session: Session,
    config: OncallConfig,
    *,
    target: Target,
    message: str,
    created_by: str,
    now: datetime,
    incident_id: int | None = None,
    dedup_key: str | None = None,
    details: dict[str, Any] | None = None,
    new_key: bool = False,
) -> Triggered:
    """Record a new page and run its first step, in the caller's transaction.

    Because the first step commits with the page, nothing (the reconcile pass on another
    replica, a retried request) can ever see a triggered page whose first step has not run.
    A `dedup_key` that names an open page returns that page and pages nobody. `new_key`:
    the caller knows no page has this key (it names a row its transaction just inserted),
    so the look-up is skipped; the unique index still decides.
    """
    message = validate_message(message)
    snapshot = snapshot_for(config, target)
    if dedup_key is not None and not new_key:
        existing = open_page_by_key(session, dedup_key)
        if existing is not None:
            return Triggered(existing, created=False, step=None)
    # Facts still pending (an incident's `declared`) wait for the flush below, with the
    # page's own: one INSERT of timeline events, not one per fact.
    with session.no_autoflush:
        page = insert_unless_taken(
            session,
            Page,
            target=str(target),
            message=message,
            incident_id=incident_id,
            policy=snapshot.to_json(),
            state=TRIGGERED,
            step=0,
            cycle=0,
            generation=1,
            next_escalation_at=now,
            created_by=created_by,
            created_at=now,
            dedup_key=dedup_key,
            details=details,
        )
    if page is None:  # only a dedup key is unique: a twin opened its page first
        raced = open_page_by_key(session, dedup_key) if dedup_key is not None else None
        if raced is None:
            raise PagingError(
                f"The page for {dedup_key!r} was opened and closed by another request at "
                "the same moment; send it again."
            )
        return Triggered(raced, created=False, step=None)
    event = _event(
        session,
        page,
        "page_triggered",
        created_by,
        now,
        flush=False,
        target=str(target),
        message=message,
    )
    # The first step runs on the row just inserted, which no other transaction can see
    # yet: `escalate`'s locked re-read would only cost a round trip.
    step, created = _next_step(session, config, page, now, flush=False)
    session.flush()
    return Triggered(page, created=True, step=_with_ids(step, created), event=event)


def escalate(
    session: Session, config: OncallConfig, page_id: int, generation: int, now: datetime
) -> Step | None:
    """Run the page's next step if `generation` is still current; None if this job is stale."""
    page = get(session, page_id, lock=True)
    if page.state != TRIGGERED or page.generation != generation:
        return None
    step, created = _next_step(session, config, page, now, flush=False)
    session.flush()
    return _with_ids(step, created)


def escalate_due(
    session: Session, config: OncallConfig, now: datetime, limit: int, clock: Callable[[], datetime]
) -> list[tuple[Step, datetime, datetime]]:
    """`escalate` for up to `limit` pages due by `now`, in the caller's transaction: (step,
    when it was due, when it ran) of each, earliest due first.

    The pages are read and locked by one query (on PostgreSQL, rows another transaction
    holds, such as an acknowledgement in flight, are skipped, not waited for: the next pass
    sees them as that transaction left them), each step reads `clock()` (its time is when it
    ran), and every row they write goes to the database in one flush, not one per page.
    """
    query = (
        select(Page)
        .where(Page.state == TRIGGERED, Page.next_escalation_at <= now)
        .order_by(Page.next_escalation_at, Page.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    ran: list[tuple[Step, list[PageNotification], datetime, datetime]] = []
    for page in session.scalars(query).all():
        due, at = page.next_escalation_at, clock()
        assert due is not None
        step, created = _next_step(session, config, page, at, flush=False)
        ran.append((step, created, due, at))
    session.flush()
    return [(_with_ids(step, created), due, at) for step, created, due, at in ran]


def _with_ids(step: Step, created: list[PageNotification]) -> Step:
    """The step with its notifications' ids (known once they are flushed)."""
    return replace(step, notifications=[n.id for n in created]) if created else step


def _next_step(
    session: Session, config: OncallConfig, page: Page, now: datetime, *, flush: bool = True
) -> tuple[Step, list[PageNotification]]:
    """The next step of a triggered page whose row the caller has locked: its notifications
    (not flushed: their ids come with the caller's flush) or the exhaustion."""
    snapshot = page.snapshot
    if page.step >= len(snapshot.steps):
        if page.cycle >= snapshot.repeat:
            page.state, page.exhausted_at, page.next_escalation_at = EXHAUSTED, now, None
            page.generation += 1
            _event(session, page, "page_exhausted", BOT, now, flush=flush)
            return Step(page.id, page.generation, None, exhausted=True), []
        page.cycle += 1
        page.step = 0
    step = snapshot.steps[page.step]
    # The look-up reads schedules and overrides only: the facts pending so far (a trigger's
    # `page_triggered`, its incident's `declared`) wait for the next flush, one INSERT with
    # this step's, not one the look-up would force.
    with session.no_autoflush:
        people = people_for(session, config, step.targets, now)
    created: list[PageNotification] = []
    for person in people:
        contact = config.people.get(person)
        for channel in contact.notify if contact else []:
            notification = PageNotification(
                page_id=page.id,
                cycle=page.cycle,
                step=page.step,
                person=person,
                channel=channel,
                status="pending",
                attempts=0,
                next_attempt_at=now,
                created_at=now,
            )
            session.add(notification)
            created.append(notification)
    number = page.step + 1
    if people:
        _event(
            session,
            page,
            "page_step_notified",
            BOT,
            now,
            flush=flush,
            step=number,
            cycle=page.cycle,
            people=people,
        )
        wait = step.wait
    else:
        targets = [str(t) for t in step.targets]
        _event(
            session,
            page,
            "page_step_nobody",
            BOT,
            now,
            flush=flush,
            step=number,
            cycle=page.cycle,
            targets=targets,
        )
        wait = timedelta(0)  # nobody was told: move on rather than wait for no one
    page.step += 1
    page.generation += 1
    page.next_escalation_at = now + wait
    return Step(page.id, page.generation, page.next_escalation_at, people), created


def _stop_notifying(session: Session, page: Page) -> None:
    session.execute(
        update(PageNotification)
        .where(
            PageNotification.page_id == page.id, PageNotification.status.in_(("pending", "retry"))
        )
        .values(status="cancelled", next_attempt_at=None)
    )


def acknowledge(session: Session, page_id: int, *, by: str, now: datetime) -> Outcome:
    page = get(session, page_id, lock=True)
    if page.state == ACKNOWLEDGED:
        return Outcome(page, None, f"{page.reference} was already acknowledged.")
    if page.state == RESOLVED:
        return Outcome(page, None, f"{page.reference} is already resolved; nothing to acknowledge.")
    page.state, page.acknowledged_by, page.acknowledged_at = ACKNOWLEDGED, by, now
    page.generation += 1
    page.next_escalation_at = None
    _stop_notifying(session, page)
    return Outcome(page, _event(session, page, "page_acknowledged", by, now))


def resolve(session: Session, page_id: int, *, by: str, now: datetime) -> Outcome:
    page = get(session, page_id, lock=True)
    if page.state == RESOLVED:
        return Outcome(page, None, f"{page.reference} is already resolved.")
    page.state, page.resolved_by, page.resolved_at = RESOLVED, by, now
    page.generation += 1
    page.next_escalation_at = None
    _stop_notifying(session, page)
    return Outcome(page, _event(session, page, "page_resolved", by, now))


def escalate_now(
    session: Session, config: OncallConfig, page_id: int, *, by: str, now: datetime
) -> Outcome:
    """Skip the wait: run the next step at once, in this transaction."""
    page = get(session, page_id, lock=True)
    if page.state != TRIGGERED:
        return Outcome(
            page, None, f"{page.reference} is {page.state}; there is nothing to escalate."
        )
    page.generation += 1
    event = _event(session, page, "page_escalated", by, now)
    step = escalate(session, config, page.id, page.generation, now)
    return Outcome(page, event, step=step)


def due_now(session: Session, now: datetime, limit: int) -> list[tuple[int, int, datetime]]:
    """Up to `limit` triggered pages due by `now` (earliest first): (id, generation, due), each
    row locked for the caller's transaction. Rows another transaction holds (an
    acknowledgement in flight) are skipped on PostgreSQL, not waited for: the next pass sees
    them as they are after that transaction."""
    query = (
        select(Page.id, Page.generation, Page.next_escalation_at)
        .where(Page.state == TRIGGERED, Page.next_escalation_at <= now)
        .order_by(Page.next_escalation_at, Page.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return [(pid, gen, due) for pid, gen, due in session.execute(query) if due is not None]


def next_due(session: Session) -> datetime | None:
    """When the earliest triggered page falls due for its next step (None: nothing waits)."""
    query = select(func.min(Page.next_escalation_at)).where(
        Page.state == TRIGGERED, Page.next_escalation_at.is_not(None)
    )
    due: datetime | None = session.scalar(query)
    return due


# -- notifications ----------------------------------------------------------------------


def claim_notifications(
    session: Session, config: OncallConfig, now: datetime, ids: list[int] | None = None
) -> list[tuple[int, str, Notification]]:
    """Mark due notifications as being sent (one sender each): (id, channel, notification)."""
    query = (
        _with_page()
        .where(
            or_(
                PageNotification.status.in_(("pending", "retry"))
                & (PageNotification.next_attempt_at <= now),
                (PageNotification.status == "sending") & (PageNotification.next_attempt_at <= now),
            )
        )
        .order_by(PageNotification.id)
        .with_for_update(of=PageNotification, skip_locked=True)
    )
    if ids is not None:
        query = query.where(PageNotification.id.in_(ids))
    claimed = []
    for row, page in session.execute(query):
        if page.state not in (TRIGGERED, EXHAUSTED) or row.person not in config.people:
            row.status, row.next_attempt_at = "cancelled", None
            continue
        row.status, row.attempts, row.next_attempt_at = "sending", row.attempts + 1, now + LEASE
        incident = f"INC-{page.incident_id}" if page.incident_id else None
        claimed.append(
            (
                row.id,
                row.channel,
                Notification(
                    page_id=page.id,
                    reference=page.reference,
                    person=row.person,
                    contact=config.people[row.person],
                    message=page.message,
                    target=page.target,
                    step=row.step + 1,
                    cycle=row.cycle,
                    incident=incident,
                    paged_by=page.created_by,
                    details=page.details,
                ),
            )
        )
    return claimed


def _with_page() -> Select[PageNotification, Page]:
    """Notifications with their pages, read by one query; a caller's `FOR UPDATE` must say
    `of=PageNotification`, so the pages stay unlocked as when they were read apart."""
    return select(PageNotification, Page).join(Page, Page.id == PageNotification.page_id)


def renew_leases(session: Session, ids: list[int], now: datetime) -> None:
    """Extend the lease of notifications this sender is still sending."""
    session.execute(
        update(PageNotification)
        .where(PageNotification.id.in_(ids), PageNotification.status == "sending")
        .values(next_attempt_at=now + LEASE)
    )


def finish_notification(
    session: Session,
    notification_id: int,
    *,
    now: datetime,
    error: str | None = None,
    retryable: bool = True,
    max_attempts: int = 5,
) -> datetime | None:
    """Record one attempt's result; returns when to try again, or None."""
    finished = finish_notifications(
        session, [Attempt(notification_id, error, retryable, now)], max_attempts=max_attempts
    )
    return finished[notification_id]


@dataclass(frozen=True)
class Attempt:
    """What one send of a notification did, and when it ended."""

    notification_id: int
    error: str | None
    retryable: bool
    ended: datetime


def finish_notifications(
    session: Session, attempts: list[Attempt], *, max_attempts: int = 5
) -> dict[int, datetime | None]:
    """Record what each attempt did (one timeline event each, at its own time), the rows
    read and locked by one query; returns when to try each one again (None: not again).
    Acts only on rows still "sending", so recording the same attempts twice changes nothing."""
    ids = [attempt.notification_id for attempt in attempts]
    query = (
        _with_page()
        .where(PageNotification.id.in_(ids))
        .order_by(PageNotification.id)
        .with_for_update(of=PageNotification)
    )
    rows = {row.id: (row, page) for row, page in session.execute(query)}
    again: dict[int, datetime | None] = {}
    for attempt in attempts:
        found = rows.get(attempt.notification_id)
        again[attempt.notification_id] = None
        if found is None or found[0].status != "sending":
            continue
        row, page = found
        again[row.id] = _finish_one(session, row, page, attempt, max_attempts)
    return again


def _finish_one(
    session: Session, row: PageNotification, page: Page, attempt: Attempt, max_attempts: int
) -> datetime | None:
    now, error = attempt.ended, attempt.error
    facts = {"channel": row.channel, "person": row.person, "attempt": row.attempts}
    if error is None:
        row.status, row.sent_at, row.last_error, row.next_attempt_at = "sent", now, None, None
        _event(session, page, "page_delivered", BOT, now, flush=False, **facts)
        return None
    row.last_error = error[:1000]
    if attempt.retryable and row.attempts < max_attempts:
        row.status = "retry"
        row.next_attempt_at = now + BACKOFF[min(row.attempts, len(BACKOFF)) - 1]
        _event(
            session,
            page,
            "page_delivery_failed",
            BOT,
            now,
            flush=False,
            **facts,
            error=row.last_error,
            final=False,
        )
        return row.next_attempt_at
    row.status, row.next_attempt_at = "failed", None
    _event(
        session,
        page,
        "page_delivery_failed",
        BOT,
        now,
        flush=False,
        **facts,
        error=row.last_error,
        final=True,
    )
    return None


def retry_times(session: Session) -> list[tuple[int, datetime]]:
    query = select(PageNotification.id, PageNotification.next_attempt_at).where(
        PageNotification.status.in_(("pending", "retry", "sending")),
        PageNotification.next_attempt_at.is_not(None),
    )
    return [(nid, at) for nid, at in session.execute(query) if at is not None]
