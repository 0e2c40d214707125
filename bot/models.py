"""Every ORM model, imported in one place so Alembic and tests see the whole schema."""

from __future__ import annotations

from bot.alerts.records import AlertGroup, AlertStorm, StoredAlert
from bot.idempotency import SlackRequest as SlackRequest  # and the open-declaration index
from bot.incidents.models import Incident, RoleAssignment
from bot.oncall.models import Handoff, OncallOverride, Page, PageNotification
from bot.outbox import OutboxItem
from bot.postmortem.actions import ActionItemRow
from bot.postmortem.followup import PostmortemFollowup
from bot.runbooks.records import RunbookRun, RunbookRunFact, RunbookRunHost
from bot.timeline import TimelineEvent
from bot.webview.models import WebSession, WebSignIn

__all__ = [
    "ActionItemRow",
    "AlertGroup",
    "AlertStorm",
    "Handoff",
    "Incident",
    "OncallOverride",
    "OutboxItem",
    "Page",
    "PageNotification",
    "PostmortemFollowup",
    "RoleAssignment",
    "RunbookRun",
    "RunbookRunFact",
    "RunbookRunHost",
    "StoredAlert",
    "TimelineEvent",
    "WebSession",
    "WebSignIn",
]
