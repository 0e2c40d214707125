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

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from bot.config import FileConfig
from bot.incidents import service as incidents
from bot.incidents.models import Incident
from bot.oncall.models import (
    ACKNOWLEDGED,
    EXHAUSTED,
    RESOLVED,
    TRIGGERED,
    Page,
    PageEvent,
    PageNotification,
)
from bot.oncall.notify import Notification

MAX_MESSAGE = 1000
BOT = "firebreak"
# Waits between tries of one notification; the last repeats until max_attempts.
BACKOFF = (timedelta(seconds=5), timedelta(seconds=15), timedelta(seconds=45), timedelta(minutes=2))
STALE_SENDING = timedelta(minutes=2)


class PagingError(Exception):
    """A page request that cannot be honoured; the message is shown to the user as is."""


@dataclass(frozen=True)
class Outcome:
    page: Page
    changed: bool
    message: str


@dataclass(frozen=True)
class Step:
    """What one escalation pass did; `next_at` is None once the page stopped escalating."""

    page_id: int
    generation: int
    next_at: datetime | None
    notified: list[str] = field(default_factory=list)
    notifications: list[int] = field(default_factory=list)
    exhausted: bool = False


# -- targets and policies ---------------------------------------------------------------


def policy_for(config: FileConfig, target: str) -> dict[str, Any]:
    """The escalation chain a page to `target` follows, as plain data for the page row."""
    kind, _, name = target.partition(":")
    if kind == "policy":
        if name not in config.escalation_policies:
            raise PagingError(_unknown("policy", name, config.escalation_policies))
        policy = config.escalation_policies[name]
        steps = [
            {"targets": list(step.targets), "wait": step.wait.total_seconds()}
            for step in policy.steps
        ]
        return {"steps": steps, "repeat": policy.repeat}
    if kind == "service":
        if name not in config.services:
            raise PagingError(_unknown("service", name, config.services))
        return policy_for(config, f"policy:{config.services[name].escalation_policy}")
    if kind == "user" and name not in config.people:
        raise PagingError(_unknown("person", name, config.people))
    if kind == "schedule" and name not in config.schedules:
        raise PagingError(_unknown("schedule", name, config.schedules))
    if kind not in ("user", "schedule"):
        raise PagingError(
            f"`{target}` is not something I can page; use @person, user:NAME, "
            "schedule:NAME, policy:NAME or service:NAME."
        )
    wait = config.paging.wait.total_seconds()
    return {"steps": [{"targets": [target], "wait": wait}], "repeat": config.paging.repeat}


def _unknown(what: str, name: str, known: dict[str, Any]) -> str:
    choices = ", ".join(known) or "none configured"
    return f"There is no {what} `{name}`. Known: {choices}."


def people_for(session: Session, config: FileConfig, targets: list[str], at: datetime) -> list[str]:
    """The people a step reaches at `at`, in order, each once; schedules resolve to whoever
    is on call (nobody, if the schedule has a gap)."""
    from bot.oncall.schedules import on_call  # the schedules module depends on config only

    people: list[str] = []
    for target in targets:
        kind, _, name = target.partition(":")
        if kind == "user":
            people.append(name)
        elif kind == "schedule":
            shift = on_call(session, config, name, at)
            if shift is not None:
                people.append(shift.person)
    return list(dict.fromkeys(people))


# -- the state machine ------------------------------------------------------------------


def _event(
    session: Session, page: Page, kind: str, text: str, actor: str, now: datetime, **data: Any
) -> None:
    session.add(
        PageEvent(page_id=page.id, kind=kind, actor=actor, occurred_at=now, text=text, data=data)
    )
    if page.incident_id is not None:
        incident = session.get(Incident, page.incident_id)  # the identity map, not a query
        assert incident is not None
        incidents.record(
            session,
            incident,
            f"page_{kind}",
            f"{page.reference}: {text}",
            actor=actor,
            data={"page": page.id, **data},
        )


def get(session: Session, page_id: int, *, lock: bool = False) -> Page:
    query = select(Page).where(Page.id == page_id)
    if lock:
        query = query.with_for_update()
    page = session.scalars(query).one_or_none()
    if page is None:
        raise PagingError(f"There is no page P-{page_id}.")
    return page


def trigger(
    session: Session,
    config: FileConfig,
    *,
    target: str,
    message: str,
    created_by: str,
    now: datetime,
    incident_id: int | None = None,
    dedup_key: str | None = None,
) -> Page:
    """Record a new page, due to escalate at once (generation 1)."""
    message = " ".join(message.split())
    if not message:
        raise PagingError(
            "Say what the page is about, e.g. `/page schedule:primary checkout is down`."
        )
    if len(message) > MAX_MESSAGE:
        raise PagingError(f"The message is {len(message)} characters; keep it to {MAX_MESSAGE}.")
    if dedup_key is not None:
        existing = session.scalars(select(Page).where(Page.dedup_key == dedup_key)).one_or_none()
        if existing is not None:
            return existing
    page = Page(
        target=target,
        message=message,
        incident_id=incident_id,
        policy=policy_for(config, target),
        state=TRIGGERED,
        step=0,
        cycle=0,
        generation=1,
        next_escalation_at=now,
        created_by=created_by,
        created_at=now,
        dedup_key=dedup_key,
    )
    session.add(page)
    session.flush()
    _event(session, page, "triggered", f"Paged {target}: {message}", created_by, now, target=target)
    return page


def escalate(
    session: Session, config: FileConfig, page_id: int, generation: int, now: datetime
) -> Step | None:
    """Run the page's next step if `generation` is still current; None if this job is stale."""
    page = get(session, page_id, lock=True)
    if page.state != TRIGGERED or page.generation != generation:
        return None
    steps: list[dict[str, Any]] = page.policy["steps"]
    if page.step >= len(steps):
        if page.cycle >= int(page.policy.get("repeat", 0)):
            page.state, page.exhausted_at, page.next_escalation_at = EXHAUSTED, now, None
            page.generation += 1
            _event(
                session,
                page,
                "exhausted",
                "Nobody acknowledged; every step and repeat went unanswered",
                BOT,
                now,
            )
            return Step(page.id, page.generation, None, exhausted=True)
        page.cycle += 1
        page.step = 0
    step = steps[page.step]
    people = people_for(session, config, list(step["targets"]), now)
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
    repeat = f" (repeat {page.cycle})" if page.cycle else ""
    if people:
        names = ", ".join(people)
        _event(
            session,
            page,
            "notified",
            f"Step {number}{repeat}: notified {names}",
            BOT,
            now,
            step=number,
            cycle=page.cycle,
            people=people,
        )
        wait = timedelta(seconds=float(step["wait"]))
    else:
        _event(
            session,
            page,
            "nobody",
            f"Step {number}{repeat}: nobody to notify ({', '.join(step['targets'])})",
            BOT,
            now,
            step=number,
            cycle=page.cycle,
        )
        wait = timedelta(0)  # nobody was told: move on rather than wait for no one
    page.step += 1
    page.generation += 1
    page.next_escalation_at = now + wait
    session.flush()
    return Step(page.id, page.generation, page.next_escalation_at, people, [n.id for n in created])


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
        return Outcome(
            page, False, f"{page.reference} was already acknowledged by <@{page.acknowledged_by}>."
        )
    if page.state == RESOLVED:
        return Outcome(
            page, False, f"{page.reference} is already resolved; nothing to acknowledge."
        )
    page.state, page.acknowledged_by, page.acknowledged_at = ACKNOWLEDGED, by, now
    page.generation += 1
    page.next_escalation_at = None
    _stop_notifying(session, page)
    _event(session, page, "acknowledged", f"Acknowledged by <@{by}>", by, now)
    return Outcome(
        page, True, f":white_check_mark: <@{by}> acknowledged {page.reference}: {page.message}"
    )


def resolve(session: Session, page_id: int, *, by: str, now: datetime) -> Outcome:
    page = get(session, page_id, lock=True)
    if page.state == RESOLVED:
        return Outcome(page, False, f"{page.reference} is already resolved.")
    page.state, page.resolved_by, page.resolved_at = RESOLVED, by, now
    page.generation += 1
    page.next_escalation_at = None
    _stop_notifying(session, page)
    _event(session, page, "resolved", f"Resolved by <@{by}>", by, now)
    return Outcome(page, True, f"<@{by}> resolved {page.reference}: {page.message}")


def escalate_now(session: Session, page_id: int, *, by: str, now: datetime) -> Outcome:
    """Skip the wait: the next step is due at once (under a new generation)."""
    page = get(session, page_id, lock=True)
    if page.state != TRIGGERED:
        return Outcome(
            page, False, f"{page.reference} is {page.state}; there is nothing to escalate."
        )
    page.generation += 1
    page.next_escalation_at = now
    _event(session, page, "escalated", f"<@{by}> escalated now", by, now)
    return Outcome(page, True, f"<@{by}> escalated {page.reference} to the next step.")


def due_pages(session: Session, now: datetime) -> list[tuple[int, int, datetime]]:
    """Triggered pages with their current generation and due time (for reconciling jobs)."""
    query = select(Page.id, Page.generation, Page.next_escalation_at).where(
        Page.state == TRIGGERED, Page.next_escalation_at.is_not(None)
    )
    return [(pid, gen, due) for pid, gen, due in session.execute(query) if due is not None]


# -- notifications ----------------------------------------------------------------------


def claim_notifications(
    session: Session, config: FileConfig, now: datetime, ids: list[int] | None = None
) -> list[tuple[int, str, Notification]]:
    """Mark due notifications as being sent (one sender each): (id, channel, notification)."""
    query = (
        select(PageNotification)
        .where(
            or_(
                PageNotification.status.in_(("pending", "retry"))
                & (PageNotification.next_attempt_at <= now),
                (PageNotification.status == "sending")
                & (PageNotification.next_attempt_at <= now - STALE_SENDING),
            )
        )
        .order_by(PageNotification.id)
        .with_for_update(skip_locked=True)
    )
    if ids is not None:
        query = query.where(PageNotification.id.in_(ids))
    claimed = []
    for row in session.scalars(query):
        page = session.get(Page, row.page_id)  # one query per page, however many rows
        assert page is not None
        if page.state not in (TRIGGERED, EXHAUSTED) or row.person not in config.people:
            row.status, row.next_attempt_at = "cancelled", None
            continue
        row.status, row.attempts, row.next_attempt_at = "sending", row.attempts + 1, now
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
                ),
            )
        )
    return claimed


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
    row = session.get(PageNotification, notification_id, with_for_update=True)
    if row is None or row.status != "sending":
        return None
    page = get(session, row.page_id)
    if error is None:
        row.status, row.sent_at, row.last_error, row.next_attempt_at = "sent", now, None, None
        _event(
            session,
            page,
            "delivered",
            f"{row.channel} to {row.person}",
            BOT,
            now,
            channel=row.channel,
            person=row.person,
        )
        return None
    row.last_error = error[:1000]
    if retryable and row.attempts < max_attempts:
        row.status = "retry"
        row.next_attempt_at = now + BACKOFF[min(row.attempts, len(BACKOFF)) - 1]
        _event(
            session,
            page,
            "delivery_failed",
            f"{row.channel} to {row.person} failed (try {row.attempts}, will retry): {row.last_error}",
            BOT,
            now,
            channel=row.channel,
            person=row.person,
        )
        return row.next_attempt_at
    row.status, row.next_attempt_at = "failed", None
    _event(
        session,
        page,
        "delivery_failed",
        f"{row.channel} to {row.person} failed for good after {row.attempts} tries: {row.last_error}",
        BOT,
        now,
        channel=row.channel,
        person=row.person,
    )
    return None


def retry_times(session: Session) -> list[tuple[int, datetime]]:
    query = select(PageNotification.id, PageNotification.next_attempt_at).where(
        PageNotification.status.in_(("pending", "retry", "sending")),
        PageNotification.next_attempt_at.is_not(None),
    )
    return [(nid, at) for nid, at in session.execute(query) if at is not None]
