"""The database's guards that make one request have one effect.

- `SlackRequest`: the idempotency key of every Slack request acted on (the edge's record,
  written by `bot.slack.once` before a listener runs). A retry, or a second replica's copy
  of the same delivery, finds its key taken and is acknowledged without acting.
- `OPEN_DECLARATION`: a person has at most one open incident of a given title (compared
  case-insensitively), so identical declarations racing on threads or replicas give one
  incident; `bot.incidents.service.declare` returns the existing one. Rows whose declare
  key starts with `legacy-duplicate:` (duplicates from before migration 0004) are exempt.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, String, func, text
from sqlalchemy.orm import Mapped, mapped_column

from bot.db import Base
from bot.incidents.models import Incident

__all__ = ["LEGACY_DUPLICATE", "OPEN_DECLARATION", "SlackRequest"]

LEGACY_DUPLICATE = "legacy-duplicate:"
_OPEN = f"resolved_at IS NULL AND declare_key NOT LIKE '{LEGACY_DUPLICATE}%'"


class SlackRequest(Base):
    """A Slack request this deployment has accepted; pruned after a day."""

    __tablename__ = "slack_requests"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    kind: Mapped[str] = mapped_column(String(40))
    received_at: Mapped[datetime] = mapped_column(index=True)


OPEN_DECLARATION = Index(
    "uq_incidents_open_declaration",
    Incident.declared_by,
    func.lower(Incident.title),
    unique=True,
    sqlite_where=text(_OPEN),
    postgresql_where=text(_OPEN),
)
