"""Incidents, role assignments and the append-only timeline."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from bot.db import AppendOnlyError, Base, append_only, utcnow

__all__ = ["AppendOnlyError", "Incident", "RoleAssignment", "TimelineEvent"]


class Incident(Base):
    __tablename__ = "incidents"
    __table_args__ = (Index("ix_incidents_open", "resolved_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    severity: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(32))
    declared_by: Mapped[str] = mapped_column(String(64))
    declared_at: Mapped[datetime] = mapped_column(default=utcnow)
    resolved_at: Mapped[datetime | None]
    resolution: Mapped[str | None] = mapped_column(Text)
    # Slack idempotency key of the request that declared it (trigger or view id): a retried
    # request or a double-submitted modal finds this row instead of declaring again.
    declare_key: Mapped[str] = mapped_column(String(128), unique=True)
    # Filled in as the channel is set up; NULL means that step has not succeeded yet.
    channel_name: Mapped[str | None] = mapped_column(String(80))
    channel_id: Mapped[str | None] = mapped_column(String(32), unique=True)
    summary_ts: Mapped[str | None] = mapped_column(String(32))
    announcement_ts: Mapped[str | None] = mapped_column(String(32))

    @property
    def reference(self) -> str:
        return f"INC-{self.id}"

    @property
    def is_resolved(self) -> bool:
        return self.resolved_at is not None


class RoleAssignment(Base):
    """Who holds a role now; the history of hand-overs lives in the timeline."""

    __tablename__ = "role_assignments"

    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"), primary_key=True)
    role: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64))
    assigned_by: Mapped[str] = mapped_column(String(64))
    assigned_at: Mapped[datetime] = mapped_column(default=utcnow)


class TimelineEvent(Base):
    """One fact of an incident. Rows are never updated or deleted (the database enforces it)."""

    __tablename__ = "timeline_events"
    __table_args__ = (UniqueConstraint("incident_id", "dedup_key", name="uq_timeline_dedup"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"), index=True)
    kind: Mapped[str] = mapped_column(String(40))
    actor: Mapped[str] = mapped_column(String(64))
    occurred_at: Mapped[datetime] = mapped_column(default=utcnow)
    text: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Set for facts that must be recorded once however often Slack delivers them
    # (a :pushpin: on a message, a retried event).
    dedup_key: Mapped[str | None] = mapped_column(String(200))


append_only(TimelineEvent)
