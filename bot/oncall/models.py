"""On-call state in the database: overrides, pages, their notifications, hand-offs.

A page is a state machine (triggered -> acknowledged -> resolved, or exhausted). Its
`generation` is the token every scheduled escalation job carries: a job acts only if the
page is still triggered and the generation still matches, so a job that fires late, twice,
or after an acknowledgement does nothing. A page's history is in the timeline
(`bot.timeline`), with the page's id on each event.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from bot.db import Base
from bot.oncall.targets import EscalationSnapshot, Target

TRIGGERED = "triggered"
ACKNOWLEDGED = "acknowledged"
RESOLVED = "resolved"
EXHAUSTED = "exhausted"
# A page is open until it is resolved: an exhausted page still stands for a live problem,
# so a repeat of its alert finds it instead of paging again.
OPEN_STATES = (TRIGGERED, ACKNOWLEDGED, EXHAUSTED)
_OPEN = "state IN ('triggered', 'acknowledged', 'exhausted') AND dedup_key IS NOT NULL"


class OncallOverride(Base):
    """Someone takes a schedule for a while; set with `/oncall override`, ended by cancel."""

    __tablename__ = "oncall_overrides"

    id: Mapped[int] = mapped_column(primary_key=True)
    schedule: Mapped[str] = mapped_column(String(64), index=True)
    person: Mapped[str] = mapped_column(String(64))
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    cancelled_at: Mapped[datetime | None]
    cancelled_by: Mapped[str | None] = mapped_column(String(64))


class Page(Base):
    __tablename__ = "pages"
    # A dedup key names one open page at a time; once it is resolved the key is free, so
    # an alert that fires again after its page resolved pages again.
    __table_args__ = (
        Index(
            "uq_pages_open_dedup_key",
            "dedup_key",
            unique=True,
            sqlite_where=text(_OPEN),
            postgresql_where=text(_OPEN),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    target: Mapped[str] = mapped_column(String(128))  # user:NAME | schedule:NAME | policy:NAME
    message: Mapped[str] = mapped_column(Text)
    incident_id: Mapped[int | None] = mapped_column(ForeignKey("incidents.id"), index=True)
    # The escalation steps as they were when the page was triggered, so a config reload
    # mid-page cannot change what happens next: {"steps": [{"targets": [...], "wait": s}], "repeat": n}
    policy: Mapped[dict[str, Any]]
    state: Mapped[str] = mapped_column(String(16), default=TRIGGERED, index=True)
    step: Mapped[int] = mapped_column(default=0)  # the next step to run
    cycle: Mapped[int] = mapped_column(default=0)  # how many times the chain has restarted
    generation: Mapped[int] = mapped_column(default=0)
    next_escalation_at: Mapped[datetime | None]
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    acknowledged_by: Mapped[str | None] = mapped_column(String(64))
    acknowledged_at: Mapped[datetime | None]
    resolved_by: Mapped[str | None] = mapped_column(String(64))
    resolved_at: Mapped[datetime | None]
    exhausted_at: Mapped[datetime | None]
    dedup_key: Mapped[str | None] = mapped_column(String(200))
    # What the page is about beyond its message, shown with it (an alert's labels and
    # links): {"source": ..., "labels": {...}, "links": [{"text", "url"}]}, or None.
    details: Mapped[dict[str, Any] | None]

    @property
    def reference(self) -> str:
        return f"P-{self.id}"

    @property
    def paged(self) -> Target:
        return Target.parse(self.target)

    @property
    def snapshot(self) -> EscalationSnapshot:
        return EscalationSnapshot.from_json(self.policy)


class PageNotification(Base):
    """One message to one person on one channel for one step of one cycle, sent at most once."""

    __tablename__ = "page_notifications"
    __table_args__ = (
        UniqueConstraint("page_id", "cycle", "step", "person", "channel", name="uq_notification"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    page_id: Mapped[int] = mapped_column(ForeignKey("pages.id"), index=True)
    cycle: Mapped[int]
    step: Mapped[int]
    person: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(16))  # slack | email | webhook
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]


class Handoff(Base):
    """A shift start that was announced, so each hand-off is announced once."""

    __tablename__ = "oncall_handoffs"
    __table_args__ = (UniqueConstraint("schedule", "starts_at", name="uq_handoff"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    schedule: Mapped[str] = mapped_column(String(64))
    starts_at: Mapped[datetime]
    person: Mapped[str | None] = mapped_column(String(64))
    announced_at: Mapped[datetime]
