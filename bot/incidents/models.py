"""Incidents and role assignments; their facts live in the timeline (`bot.timeline`)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from bot.db import Base

__all__ = ["Incident", "RoleAssignment"]


class Incident(Base):
    __tablename__ = "incidents"
    __table_args__ = (Index("ix_incidents_open", "resolved_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    severity: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(32))
    declared_by: Mapped[str] = mapped_column(String(64))
    declared_at: Mapped[datetime]
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
    # When every setup step had succeeded; NULL: the reconcile pass still has work to do.
    set_up_at: Mapped[datetime | None]

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
    assigned_at: Mapped[datetime]
