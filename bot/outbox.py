"""The outbox: Slack posts and refreshes written with the change that causes them.

A change a channel must hear about (a note, a severity change, a page acknowledged, a page
exhausted) enqueues its post, and a refresh of the incident's topic, pinned summary and
announcement, in the same transaction as the change. So a post is never lost to a Slack
outage or a crash between the commit and the call: the requester's process tries to send it
at once, and whatever it could not send the scheduler leader's reconcile pass sends later,
with backoff that honours Slack's `Retry-After`.

Items of one incident go out in the order they were written: an item is claimed only when
no earlier item of its incident is still waiting. A claimed item is leased (like page
notifications) so a sender that died leaves it to be claimed again: delivery is at least
once. This module stores and orders; `bot.slack.outbox` talks to Slack.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text, exists, select, update
from sqlalchemy.orm import Mapped, Session, aliased, mapped_column

from bot.db import Base

POST = "post"  # chat.postMessage: {"channel", "text"}
REFRESH = "refresh"  # topic, pinned summary and announcement of the incident, as they are now
# A postmortem draft uploaded to the channel (files_upload_v2): {"channel", "filename",
# "title", "content", "comment", "template", "path", "user"}; its `postmortem_drafted` fact
# is recorded with the item's finish, once the upload is done.
UPLOAD = "upload"
WAITING = ("pending", "retry", "sending")
LEASE = timedelta(seconds=30)
BACKOFF = (timedelta(seconds=2), timedelta(seconds=5), timedelta(seconds=10), timedelta(seconds=20))
MAX_BACKOFF = timedelta(seconds=30)
GIVE_UP_AFTER = timedelta(days=1)


class OutboxItem(Base):
    __tablename__ = "slack_outbox"
    __table_args__ = (
        Index("ix_slack_outbox_waiting", "status", "next_attempt_at"),
        # "anything earlier of this incident still waiting?" (`claim`) is a seek (0010)
        Index("ix_slack_outbox_incident_waiting", "incident_id", "status", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    incident_id: Mapped[int | None] = mapped_column(ForeignKey("incidents.id"))
    kind: Mapped[str] = mapped_column(String(16))
    body: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(16))  # pending | retry | sending | sent | failed
    attempts: Mapped[int]
    # When to try next; while "sending", when the sender's lease ends.
    next_attempt_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]


@dataclass(frozen=True)
class Claimed:
    id: int
    incident_id: int | None
    kind: str
    body: dict[str, Any]
    attempts: int


def enqueue(
    session: Session,
    kind: str,
    body: dict[str, Any],
    *,
    now: datetime,
    incident_id: int | None = None,
) -> int:
    """Add an item, due now, in the caller's transaction; returns its id."""
    item = OutboxItem(
        incident_id=incident_id,
        kind=kind,
        body=body,
        status="pending",
        attempts=0,
        next_attempt_at=now,
        created_at=now,
    )
    session.add(item)
    session.flush()
    return item.id


def claim(
    session: Session,
    now: datetime,
    ids: list[int] | None = None,
    *,
    incidents: list[int] | None = None,
) -> list[Claimed]:
    """Lease the due items whose incident has nothing earlier still waiting, oldest first:
    these `ids`, or the items of these `incidents`, or every one."""
    if (ids is not None and not ids) or (incidents is not None and not incidents):
        return []  # nothing asked for: no query (a /page outside an incident queues nothing)
    earlier = aliased(OutboxItem)
    blocked = exists().where(
        earlier.incident_id == OutboxItem.incident_id,
        earlier.id < OutboxItem.id,
        earlier.status.in_(WAITING),
    )
    query = (
        select(OutboxItem)
        .where(
            OutboxItem.status.in_(WAITING),
            OutboxItem.next_attempt_at <= now,
            (OutboxItem.incident_id.is_(None)) | ~blocked,
        )
        .order_by(OutboxItem.id)
        .with_for_update(skip_locked=True)
    )
    if ids is not None:
        query = query.where(OutboxItem.id.in_(ids))
    if incidents is not None:
        query = query.where(OutboxItem.incident_id.in_(incidents))
    claimed = []
    for item in session.scalars(query):
        item.status, item.attempts = "sending", item.attempts + 1
        item.next_attempt_at = now + LEASE
        claimed.append(
            Claimed(item.id, item.incident_id, item.kind, dict(item.body), item.attempts)
        )
    return claimed


def finish(
    session: Session,
    item_id: int,
    *,
    now: datetime,
    error: str | None = None,
    retryable: bool = True,
    retry_after: float | None = None,
) -> datetime | None:
    """Record one attempt; returns when to try again, or None (sent, or given up)."""
    item = session.get(OutboxItem, item_id, with_for_update=True)
    if item is None or item.status != "sending":
        return None
    if error is None:
        item.status, item.sent_at, item.next_attempt_at, item.last_error = "sent", now, None, None
        return None
    item.last_error = error[:1000]
    if not retryable or now - item.created_at > GIVE_UP_AFTER:
        item.status, item.next_attempt_at = "failed", None
        return None
    wait = BACKOFF[min(item.attempts, len(BACKOFF)) - 1] if item.attempts else BACKOFF[0]
    if retry_after is not None:
        wait = max(wait, timedelta(seconds=retry_after))
    item.status, item.next_attempt_at = "retry", now + min(wait, MAX_BACKOFF)
    return item.next_attempt_at


def due_times(session: Session) -> list[tuple[int, datetime]]:
    """Every waiting item with the time it is due (or its lease ends)."""
    query = select(OutboxItem.id, OutboxItem.next_attempt_at).where(
        OutboxItem.status.in_(WAITING), OutboxItem.next_attempt_at.is_not(None)
    )
    return [(item_id, at) for item_id, at in session.execute(query) if at is not None]


def renew(session: Session, ids: list[int], now: datetime) -> None:
    session.execute(
        update(OutboxItem)
        .where(OutboxItem.id.in_(ids), OutboxItem.status == "sending")
        .values(next_attempt_at=now + LEASE)
    )


def waiting(session: Session, incident_id: int) -> int:
    """How many items of the incident are not sent yet."""
    query = select(OutboxItem.id).where(
        OutboxItem.incident_id == incident_id, OutboxItem.status.in_(WAITING)
    )
    return len(session.scalars(query).all())
