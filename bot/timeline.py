"""The timeline: one append-only log of facts, for incidents and for pages.

An event is a `kind`, structured `data` (JSON), the actor and the time. It holds no Slack
mrkdwn, no HTML and no Markdown: each surface renders events its own way (Slack text in
`bot.slack.timeline`, plain text in `bot.terminal`). An event belongs to an incident, to a
page, or to both (a page sent from an incident channel): the incident's timeline and the
page's history are two views of the same rows, so no fact is written twice.

`record` is the only writer. It runs in the caller's transaction, so a change and its event
commit together or not at all. Rows are never updated or deleted (the ORM refuses, and
database triggers refuse anything that bypasses the ORM).

Actors are opaque strings: a Slack user id (`U0123ABCD`), `firebreak` for the bot itself,
or `cli:<login>` for someone at a terminal. Renderers decide how each is shown.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, String, UniqueConstraint, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from bot.db import AppendOnlyError, Base, append_only, insert_unless_taken

__all__ = ["BOT", "KINDS", "AppendOnlyError", "TimelineEvent", "for_incident", "for_page", "record"]

BOT = "firebreak"

# Every kind of fact, with the keys its `data` carries. Renderers must handle each one (a
# test checks they do), and a new kind is added here first.
KINDS: dict[str, tuple[str, ...]] = {
    # incidents
    "declared": ("severity", "title", "description"),
    "severity_changed": ("from", "to"),
    "status_changed": ("from", "to"),
    "reopened": ("from", "to"),
    "role_assigned": ("role", "user", "previous"),
    "note_added": ("text",),
    "resolved": ("from", "resolution"),
    "pinned_message": ("channel", "ts", "author", "text"),
    # the incident's Slack setup
    "channel_created": ("channel", "name", "adopted"),
    "responder_invited": ("user",),
    "topic_set": ("topic",),
    "summary_posted": ("ts",),
    "summary_pinned": ("ts",),
    "announced": ("channel", "ts"),
    "slack_error": ("step", "error"),
    # pages
    "page_triggered": ("target", "message"),
    "page_step_notified": ("step", "cycle", "people"),
    "page_step_nobody": ("step", "cycle", "targets"),
    "page_escalated": (),
    "page_acknowledged": (),
    "page_resolved": (),
    "page_exhausted": (),
    "page_delivered": ("channel", "person", "attempt"),
    "page_delivery_failed": ("channel", "person", "attempt", "error", "final"),
    # alerts from monitoring (actor: the source, e.g. "alertmanager")
    "alert_fired": ("alert", "source", "summary", "group"),
    "alert_resolved": ("alert", "source", "summary", "group"),
    # runbook runs (`bot.runbooks.runs`, `bot.runbooks.executor`): "run" is the run's id
    "runbook_requested": ("run", "runbook", "title", "risk", "hosts"),
    "runbook_refused": ("run", "runbook", "reason"),
    "runbook_confirmed": ("run", "runbook", "needs_approval"),
    "runbook_approved": ("run", "runbook", "requester"),
    "runbook_approval_refused": ("run", "runbook", "requester", "reason"),
    "runbook_approval_expired": ("run", "runbook", "requester"),
    "runbook_cancelled": ("run", "runbook", "running"),
    "runbook_started": ("run", "runbook", "hosts", "requester", "approver"),
    "runbook_step_finished": (
        "run",
        "runbook",
        "host",
        "step",
        "exit_code",
        "duration",
        "outcome",
        "rollback",
    ),
    "runbook_host_finished": ("run", "runbook", "host", "outcome", "fingerprint", "duration"),
    "runbook_host_key_rejected": ("run", "runbook", "host", "fingerprint", "detail"),
    "runbook_finished": ("run", "runbook", "outcome", "counts"),
    "runbook_interrupted": ("run", "runbook", "hosts"),
    # postmortem follow-up (`bot.postmortem.actions`, `bot.postmortem.followup`)
    "action_added": ("item", "text", "owner", "due"),
    "action_done": ("item", "text"),
    "postmortem_drafted": ("template", "path", "file"),
    "postmortem_done": ("reminders",),
}


class TimelineEvent(Base):
    """One fact. Rows are never updated or deleted (the database enforces it)."""

    __tablename__ = "timeline_events"
    __table_args__ = (
        UniqueConstraint("incident_id", "dedup_key", name="uq_timeline_dedup"),
        CheckConstraint("incident_id IS NOT NULL OR page_id IS NOT NULL", name="ck_timeline_owner"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    incident_id: Mapped[int | None] = mapped_column(ForeignKey("incidents.id"), index=True)
    page_id: Mapped[int | None] = mapped_column(ForeignKey("pages.id"), index=True)
    kind: Mapped[str] = mapped_column(String(40))
    actor: Mapped[str] = mapped_column(String(64))
    occurred_at: Mapped[datetime]
    data: Mapped[dict[str, Any]]
    # Set for facts that must be recorded once however often they are reported (a
    # :pushpin: on a message, an invitation repeated by a resumed setup).
    dedup_key: Mapped[str | None] = mapped_column(String(200))

    @property
    def is_page_event(self) -> bool:
        return self.kind.startswith("page_")


append_only(TimelineEvent)


def record(
    session: Session,
    kind: str,
    *,
    now: datetime,
    actor: str = BOT,
    incident_id: int | None = None,
    page_id: int | None = None,
    data: dict[str, Any] | None = None,
    dedup_key: str | None = None,
    flush: bool = True,
) -> TimelineEvent | None:
    """Append one event; with a `dedup_key` already recorded for the incident, append nothing.

    `flush=False` (no dedup key only) leaves the INSERT to the caller's next flush, so a
    caller recording many events at once (a batch of alerts) sends them in one round trip."""
    if kind not in KINDS:
        raise ValueError(f"unknown timeline event kind {kind!r}; add it to bot.timeline.KINDS")
    if incident_id is None and page_id is None:
        raise ValueError("a timeline event belongs to an incident, a page, or both")
    if dedup_key is not None and kind.startswith("page_"):
        # Deduplicated events are inserted past the session's unit of work, where the
        # metrics count page facts (`bot.metrics`): they would go uncounted.
        raise ValueError(f"{kind!r} is a page fact; page facts take no dedup_key")
    values: dict[str, Any] = {
        "incident_id": incident_id,
        "page_id": page_id,
        "kind": kind,
        "actor": actor,
        "occurred_at": now,
        "data": data or {},
        "dedup_key": dedup_key,
    }
    if dedup_key is None:
        event = TimelineEvent(**values)
        session.add(event)
        if flush:
            session.flush()
        return event
    if incident_id is None:
        # The unique constraint is on (incident_id, dedup_key), and NULLs are distinct.
        existing = session.scalars(
            select(TimelineEvent.id).where(
                TimelineEvent.incident_id.is_(None),
                TimelineEvent.page_id == page_id,
                TimelineEvent.dedup_key == dedup_key,
            )
        ).first()
        if existing is not None:
            return None
    return insert_unless_taken(session, TimelineEvent, **values)


def for_incident(session: Session, incident_id: int) -> list[TimelineEvent]:
    query = (
        select(TimelineEvent)
        .where(TimelineEvent.incident_id == incident_id)
        .order_by(TimelineEvent.occurred_at, TimelineEvent.id)
    )
    return list(session.scalars(query))


def for_page(session: Session, page_id: int) -> list[TimelineEvent]:
    query = (
        select(TimelineEvent)
        .where(TimelineEvent.page_id == page_id)
        .order_by(TimelineEvent.occurred_at, TimelineEvent.id)
    )
    return list(session.scalars(query))
