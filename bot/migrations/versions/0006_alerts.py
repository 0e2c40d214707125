"""Alerts from monitoring: alert groups, alerts, storm windows.

- `alert_groups`: one page (and maybe one incident) per Alertmanager group or PagerDuty
  dedup key; one open group per source and key (partial unique index).
- `alerts`: each alert of a group; one firing row per group and fingerprint.
- `alert_storms`: one row per route and storm window, so one storm notice per window.
- `pages.details`: what a page shows beside its message (an alert's labels and links).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op
from bot.db import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_GROUP_OPEN = "state = 'open'"
_ALERT_FIRING = "status = 'firing'"


def upgrade() -> None:
    # Plain ALTER TABLE on both engines (a batch copy would rebuild the table).
    op.add_column("pages", sa.Column("details", sa.JSON, nullable=True))
    op.create_table(
        "alert_groups",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("group_key", sa.String(255), nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("route", sa.String(128), nullable=True),
        sa.Column("service", sa.String(64), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("suppressed", sa.Boolean, nullable=False),
        sa.Column("page_id", sa.Integer, sa.ForeignKey("pages.id"), nullable=True),
        sa.Column("incident_id", sa.Integer, sa.ForeignKey("incidents.id"), nullable=True),
        sa.Column("opened_at", UTCDateTime(), nullable=False),
        sa.Column("last_seen_at", UTCDateTime(), nullable=False),
        sa.Column("resolved_at", UTCDateTime(), nullable=True),
        sa.Column("summary_ts", sa.String(32), nullable=True),
    )
    op.create_index(
        "uq_alert_groups_open",
        "alert_groups",
        ["source", "group_key"],
        unique=True,
        sqlite_where=sa.text(_GROUP_OPEN),
        postgresql_where=sa.text(_GROUP_OPEN),
    )
    op.create_index("ix_alert_groups_route_opened", "alert_groups", ["route", "opened_at"])
    op.create_index("ix_alert_groups_page_id", "alert_groups", ["page_id"])
    op.create_index("ix_alert_groups_incident_id", "alert_groups", ["incident_id"])
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("group_id", sa.Integer, sa.ForeignKey("alert_groups.id"), nullable=False),
        sa.Column("fingerprint", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("labels", sa.JSON, nullable=False),
        sa.Column("annotations", sa.JSON, nullable=False),
        sa.Column("links", sa.JSON, nullable=False),
        sa.Column("starts_at", UTCDateTime(), nullable=True),
        sa.Column("ends_at", UTCDateTime(), nullable=True),
        sa.Column("first_seen_at", UTCDateTime(), nullable=False),
        sa.Column("last_seen_at", UTCDateTime(), nullable=False),
        sa.Column("resolved_at", UTCDateTime(), nullable=True),
        sa.Column("count", sa.Integer, nullable=False),
    )
    op.create_index(
        "uq_alerts_firing",
        "alerts",
        ["group_id", "fingerprint"],
        unique=True,
        sqlite_where=sa.text(_ALERT_FIRING),
        postgresql_where=sa.text(_ALERT_FIRING),
    )
    op.create_index("ix_alerts_group_id", "alerts", ["group_id"])
    op.create_table(
        "alert_storms",
        sa.Column("route", sa.String(128), primary_key=True),
        sa.Column("window_start", UTCDateTime(), primary_key=True),
        sa.Column("suppressed", sa.Integer, nullable=False),
        sa.Column("noticed_at", UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("alert_storms")
    op.drop_index("ix_alerts_group_id", table_name="alerts")
    op.drop_index("uq_alerts_firing", table_name="alerts")
    op.drop_table("alerts")
    op.drop_index("ix_alert_groups_incident_id", table_name="alert_groups")
    op.drop_index("ix_alert_groups_page_id", table_name="alert_groups")
    op.drop_index("ix_alert_groups_route_opened", table_name="alert_groups")
    op.drop_index("uq_alert_groups_open", table_name="alert_groups")
    op.drop_table("alert_groups")
    op.execute("ALTER TABLE pages DROP COLUMN details")
