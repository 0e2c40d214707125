"""Every ORM model, imported in one place so Alembic and tests see the whole schema."""

from __future__ import annotations

from bot.incidents.models import Incident, RoleAssignment, TimelineEvent
from bot.oncall.models import Handoff, OncallOverride, Page, PageEvent, PageNotification

__all__ = [
    "Handoff",
    "Incident",
    "OncallOverride",
    "Page",
    "PageEvent",
    "PageNotification",
    "RoleAssignment",
    "TimelineEvent",
]
