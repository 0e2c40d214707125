"""`/pages`: the open pages and where each stands in its escalation. No Flask here.

A page is open until it is resolved (`bot.oncall.models.OPEN_STATES`): triggered (still
escalating), exhausted (every step ran and nobody acknowledged: it still stands for a live
problem) or acknowledged (someone is on it). For each: the policy it follows (its snapshot
on the page row, so what it shows is what will happen, whatever the configuration says
now), the step that ran last and whom it reached, when the next step runs and what it is,
every notification with each attempt and its outcome, and the alert group or incident it
belongs to. Pages resolved in the last day follow, briefly.

Read in a fixed number of queries whatever the number of pages: the open pages, a count by
state, the recently resolved pages, then one `IN` query each for their notifications, the
step and delivery facts from the timeline, their alert groups and their incidents.

Attempts come from the timeline (`page_delivered`, `page_delivery_failed`), which names
the person, the channel and the attempt's number but not the notification's step; each is
matched to the earliest notification to that person on that channel, made before it, that
has not had an attempt of that number yet (tries of one notification are numbered 1, 2,
...), which is the notification that made it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from bot.alerts.records import AlertGroup
from bot.incidents.models import Incident
from bot.oncall.models import (
    ACKNOWLEDGED,
    EXHAUSTED,
    OPEN_STATES,
    RESOLVED,
    TRIGGERED,
    Page,
    PageNotification,
)
from bot.oncall.targets import EscalationSnapshot
from bot.timeline import TimelineEvent
from bot.webview.render import age

MAX_OPEN = 200  # a storm beyond this is counted, not listed
RECENT = timedelta(hours=24)
MAX_RECENT = 20
STEP_KINDS = ("page_step_notified", "page_step_nobody")
DELIVERY_KINDS = ("page_delivered", "page_delivery_failed")
STATUS_WORDS = {
    "pending": "waiting to be sent",
    "sending": "being sent",
    "retry": "failed, will try again",
    "sent": "delivered",
    "failed": "not delivered (gave up)",
    "cancelled": "not sent (the page was answered first)",
}


@dataclass(frozen=True)
class Attempt:
    """One try to deliver a notification, from the timeline."""

    number: int
    at: datetime
    delivered: bool
    final: bool  # a failure after which no try follows
    error: str | None

    @property
    def outcome(self) -> str:
        if self.delivered:
            return "delivered"
        return "failed for good" if self.final else "failed, will retry"


@dataclass
class Delivery:
    """One notification (a person, a channel, a step of a pass) and its attempts so far."""

    note: PageNotification
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def status(self) -> str:
        return STATUS_WORDS.get(self.note.status, self.note.status)


@dataclass(frozen=True)
class StepView:
    number: int  # 1-based, as people count steps
    targets: list[str]
    wait: timedelta
    current: bool  # the step that ran last


@dataclass(frozen=True)
class IncidentRef:
    id: int
    title: str
    severity: str
    open: bool

    @property
    def reference(self) -> str:
        return f"INC-{self.id}"


@dataclass
class Standing:
    """Where one page stands: its escalation, what ran, what comes next, who was told."""

    page: Page
    policy: str | None  # the escalation policy's name, when it was paged through one
    steps: list[StepView]
    passes: int  # how many times the steps run in all (1 + repeat)
    pass_number: int  # the pass the current step belongs to, 1-based
    current_step: int | None  # the 1-based number of the step that ran last
    reached: list[str] | None  # whom that step notified ([]: nobody was on call)
    next_at: datetime | None  # when the next step runs (triggered pages only)
    next_what: str  # what happens then, in words
    deliveries: list[Delivery]
    incident: IncidentRef | None
    alerts: list[AlertGroup]

    @property
    def escalating(self) -> bool:
        return self.page.state == TRIGGERED


@dataclass
class Board:
    """The `/pages` page: open pages (triggered, exhausted, then acknowledged; newest first
    within each), how many there are by state, and the pages resolved lately."""

    open: list[Standing]
    counts: dict[str, int]
    closed: list[Standing]

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def unlisted(self) -> int:
        return max(0, self.total - len(self.open))


def when_next(now: datetime, moment: datetime) -> str:
    """`in 3m` for a time ahead, `due now` for one just reached, `3m late` after that."""
    if moment > now:
        return f"in {age(now, moment)}"
    if now - moment < timedelta(seconds=1):
        return "due now"
    return f"due now ({age(moment, now)} late)"


def policy_name(target: str, services: Mapping[str, str]) -> str | None:
    """The policy a page's target names: `policy:NAME`, or a service's policy today."""
    kind, _, name = target.partition(":")
    if kind == "policy":
        return name
    if kind == "service":
        return services.get(name)
    return None


def standing(
    page: Page,
    *,
    services: Mapping[str, str],
    last_step: _StepFact | None,
    deliveries: list[Delivery],
    incident: IncidentRef | None,
    alerts: list[AlertGroup],
) -> Standing:
    """Where `page` stands. `page.step` is the next step to run, so the step that ran last
    is the one before it (the first always runs as the page is triggered)."""
    snapshot = EscalationSnapshot.from_json(page.policy)
    current = page.step if page.step >= 1 else None
    steps = [
        StepView(index + 1, [str(t) for t in step.targets], step.wait, index + 1 == current)
        for index, step in enumerate(snapshot.steps)
    ]
    reached: list[str] | None = None
    if last_step is not None and last_step.data.get("step") == current:
        reached = [str(p) for p in last_step.data.get("people") or []]
    next_at = page.next_escalation_at if page.state == TRIGGERED else None
    passes = snapshot.repeat + 1
    if page.state == TRIGGERED:
        if page.step < len(steps):
            following = steps[page.step]
            next_what = f"step {following.number} notifies {', '.join(following.targets)}"
        elif page.cycle < snapshot.repeat:
            next_what = (
                f"step 1 again (pass {page.cycle + 2} of {passes}) notifies "
                f"{', '.join(steps[0].targets)}"
            )
        else:
            next_what = "no step is left: the page will be marked exhausted"
    elif page.state == ACKNOWLEDGED:
        next_what = "no more steps: acknowledged"
    elif page.state == EXHAUSTED:
        next_what = "no more steps: every step ran and nobody acknowledged"
    else:
        next_what = "no more steps: resolved"
    return Standing(
        page=page,
        policy=policy_name(page.target, services),
        steps=steps,
        passes=passes,
        pass_number=page.cycle + 1,
        current_step=current,
        reached=reached,
        next_at=next_at,
        next_what=next_what,
        deliveries=deliveries,
        incident=incident,
        alerts=alerts,
    )


@dataclass(frozen=True, slots=True)
class _StepFact:
    """A `page_step_*` or delivery fact as a plain row."""

    page_id: int
    kind: str
    occurred_at: datetime
    data: dict[str, Any]


def match_attempts(deliveries: list[Delivery], facts: list[_StepFact]) -> None:
    """Put each delivery fact (oldest first) on the notification it was a try of."""
    by_route: dict[tuple[str, str], list[Delivery]] = defaultdict(list)
    for delivery in sorted(deliveries, key=lambda d: (d.note.created_at, d.note.id)):
        by_route[(delivery.note.person, delivery.note.channel)].append(delivery)
    for fact in facts:
        if fact.kind not in DELIVERY_KINDS:
            continue
        route = (str(fact.data.get("person")), str(fact.data.get("channel")))
        number = fact.data.get("attempt")
        if not isinstance(number, int):
            continue
        for delivery in by_route.get(route, []):
            tried = delivery.attempts[-1].number if delivery.attempts else 0
            if delivery.note.created_at <= fact.occurred_at and tried < number:
                error = fact.data.get("error")
                delivery.attempts.append(
                    Attempt(
                        number,
                        fact.occurred_at,
                        fact.kind == "page_delivered",
                        bool(fact.data.get("final")),
                        str(error) if error else None,
                    )
                )
                break


def board(
    session: Session, *, now: datetime, services: Mapping[str, str], recent: timedelta = RECENT
) -> Board:
    """The open pages and those resolved within `recent`, each with where it stands."""
    rank = case((Page.state == TRIGGERED, 0), (Page.state == EXHAUSTED, 1), else_=2)
    open_pages = list(
        session.scalars(
            select(Page)
            .where(Page.state.in_(OPEN_STATES))
            .order_by(rank, Page.created_at.desc(), Page.id.desc())
            .limit(MAX_OPEN)
        )
    )
    counts = {
        state: int(count)
        for state, count in session.execute(
            select(Page.state, func.count()).where(Page.state.in_(OPEN_STATES)).group_by(Page.state)
        )
    }
    closed_pages = list(
        session.scalars(
            select(Page)
            .where(Page.state == RESOLVED, Page.resolved_at >= now - recent)
            .order_by(Page.resolved_at.desc(), Page.id.desc())
            .limit(MAX_RECENT)
        )
    )
    every = open_pages + closed_pages
    if not every:
        return Board([], counts, [])
    open_ids = [page.id for page in open_pages]
    all_ids = [page.id for page in every]
    deliveries: dict[int, list[Delivery]] = defaultdict(list)
    facts: dict[int, list[_StepFact]] = defaultdict(list)
    if open_ids:
        for note in session.scalars(
            select(PageNotification)
            .where(PageNotification.page_id.in_(open_ids))
            .order_by(PageNotification.cycle, PageNotification.step, PageNotification.id)
        ):
            deliveries[note.page_id].append(Delivery(note))
        for row in session.execute(
            select(
                TimelineEvent.page_id,
                TimelineEvent.kind,
                TimelineEvent.occurred_at,
                TimelineEvent.data,
            )
            .where(
                TimelineEvent.page_id.in_(open_ids),
                TimelineEvent.kind.in_(STEP_KINDS + DELIVERY_KINDS),
            )
            .order_by(TimelineEvent.occurred_at, TimelineEvent.id)
        ):
            facts[row.page_id].append(_StepFact(row.page_id, row.kind, row.occurred_at, row.data))
    alerts: dict[int, list[AlertGroup]] = defaultdict(list)
    for group in session.scalars(
        select(AlertGroup)
        .where(AlertGroup.page_id.in_(all_ids))
        .order_by(AlertGroup.opened_at, AlertGroup.id)
    ):
        assert group.page_id is not None
        alerts[group.page_id].append(group)
    incident_ids = {page.incident_id for page in every if page.incident_id is not None}
    incident_ids |= {g.incident_id for gs in alerts.values() for g in gs if g.incident_id}
    incidents = {
        row.id: IncidentRef(row.id, row.title, row.severity, row.resolved_at is None)
        for row in (
            session.execute(
                select(Incident.id, Incident.title, Incident.severity, Incident.resolved_at).where(
                    Incident.id.in_(incident_ids)
                )
            )
            if incident_ids
            else []
        )
    }

    def of(page: Page) -> Standing:
        page_facts = facts.get(page.id, [])
        match_attempts(deliveries[page.id], page_facts)
        steps = [fact for fact in page_facts if fact.kind in STEP_KINDS]
        linked = page.incident_id or next(
            (g.incident_id for g in alerts[page.id] if g.incident_id), None
        )
        return standing(
            page,
            services=services,
            last_step=steps[-1] if steps else None,
            deliveries=deliveries[page.id],
            incident=incidents.get(linked) if linked is not None else None,
            alerts=alerts[page.id],
        )

    return Board([of(page) for page in open_pages], counts, [of(page) for page in closed_pages])
