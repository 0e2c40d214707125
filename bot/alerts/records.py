"""Alerts and alert groups as stored.

An `AlertGroup` is what one page (and, where the route says so, one incident) stands for:
the alerts of one Alertmanager group, or one PagerDuty dedup key. Only one group per source
and key is open at a time (a partial unique index), so two replicas receiving the same
webhook at once create one group, one page and one incident: the second insert waits for
the first to commit, fails, and finds the first's row. Once every alert of a group has
resolved the group is resolved, and the same key firing again opens a new group (a new
page), as PagerDuty does with a dedup key.

A `StoredAlert` is one alert in one group. A repeat of a firing alert updates its row (last
seen, count, annotations); only one row per group and fingerprint is firing at a time.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from bot.db import Base

OPEN = "open"
RESOLVED = "resolved"
FIRING = "firing"
_GROUP_OPEN = "state = 'open'"
_ALERT_FIRING = "status = 'firing'"


class AlertGroup(Base):
    __tablename__ = "alert_groups"
    __table_args__ = (
        Index(
            "uq_alert_groups_open",
            "source",
            "group_key",
            unique=True,
            sqlite_where=text(_GROUP_OPEN),
            postgresql_where=text(_GROUP_OPEN),
        ),
        Index("ix_alert_groups_route_opened", "route", "opened_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(16))
    group_key: Mapped[str] = mapped_column(String(255))
    title: Mapped[str] = mapped_column(Text)
    # The route that matched when the group opened (its label), and the service it pages;
    # both None when no route matched: the alerts are stored and page nobody.
    route: Mapped[str | None] = mapped_column(String(128))
    service: Mapped[str | None] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))  # open | resolved
    # True when the route's storm limit held the page back: stored and grouped, nobody paged.
    suppressed: Mapped[bool]
    page_id: Mapped[int | None] = mapped_column(ForeignKey("pages.id"), index=True)
    incident_id: Mapped[int | None] = mapped_column(ForeignKey("incidents.id"), index=True)
    opened_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    resolved_at: Mapped[datetime | None]
    # The alert summary message in the incident channel, edited in place as alerts change.
    summary_ts: Mapped[str | None] = mapped_column(String(32))


class StoredAlert(Base):
    __tablename__ = "alerts"
    __table_args__ = (
        Index(
            "uq_alerts_firing",
            "group_id",
            "fingerprint",
            unique=True,
            sqlite_where=text(_ALERT_FIRING),
            postgresql_where=text(_ALERT_FIRING),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("alert_groups.id"), index=True)
    fingerprint: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16))  # firing | resolved
    summary: Mapped[str] = mapped_column(Text)
    labels: Mapped[dict[str, Any]]
    annotations: Mapped[dict[str, Any]]
    links: Mapped[dict[str, Any]]  # {"links": [{"text": ..., "url": ...}]}
    starts_at: Mapped[datetime | None]
    ends_at: Mapped[datetime | None]
    first_seen_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    resolved_at: Mapped[datetime | None]
    # Deliveries received while firing: 1 on arrival, +1 per repeat.
    count: Mapped[int]


class AlertStorm(Base):
    """One row per route and storm window: the storm notice goes out when it is inserted,
    so each route sends one notice per window however many replicas see the storm."""

    __tablename__ = "alert_storms"

    route: Mapped[str] = mapped_column(String(128), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(primary_key=True)
    suppressed: Mapped[int]
    noticed_at: Mapped[datetime]
