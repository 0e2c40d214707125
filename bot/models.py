"""Every ORM model, imported in one place so Alembic and tests see the whole schema."""

from __future__ import annotations

from bot.incidents.models import Incident, RoleAssignment, TimelineEvent

__all__ = ["Incident", "RoleAssignment", "TimelineEvent"]
