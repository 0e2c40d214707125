"""Incidents, role assignments and the append-only timeline.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op
from bot.db import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

PG_APPEND_ONLY = """
CREATE FUNCTION timeline_events_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'timeline events are append-only';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER timeline_events_no_update BEFORE UPDATE OR DELETE ON timeline_events
    FOR EACH ROW EXECUTE FUNCTION timeline_events_append_only();
"""

SQLITE_APPEND_ONLY = [
    """CREATE TRIGGER timeline_events_no_update BEFORE UPDATE ON timeline_events
       BEGIN SELECT RAISE(ABORT, 'timeline events are append-only'); END""",
    """CREATE TRIGGER timeline_events_no_delete BEFORE DELETE ON timeline_events
       BEGIN SELECT RAISE(ABORT, 'timeline events are append-only'); END""",
]


def upgrade() -> None:
    op.create_table(
        "incidents",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("severity", sa.String(32), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("declared_by", sa.String(64), nullable=False),
        sa.Column("declared_at", UTCDateTime(), nullable=False),
        sa.Column("resolved_at", UTCDateTime(), nullable=True),
        sa.Column("resolution", sa.Text, nullable=True),
        sa.Column("declare_key", sa.String(128), nullable=False, unique=True),
        sa.Column("channel_name", sa.String(80), nullable=True),
        sa.Column("channel_id", sa.String(32), nullable=True, unique=True),
        sa.Column("summary_ts", sa.String(32), nullable=True),
        sa.Column("announcement_ts", sa.String(32), nullable=True),
    )
    op.create_index("ix_incidents_open", "incidents", ["resolved_at"])
    op.create_table(
        "role_assignments",
        sa.Column("incident_id", sa.Integer, sa.ForeignKey("incidents.id"), primary_key=True),
        sa.Column("role", sa.String(32), primary_key=True),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("assigned_by", sa.String(64), nullable=False),
        sa.Column("assigned_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "timeline_events",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("incident_id", sa.Integer, sa.ForeignKey("incidents.id"), nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("occurred_at", UTCDateTime(), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("data", sa.JSON, nullable=False),
        sa.Column("dedup_key", sa.String(200), nullable=True),
        sa.UniqueConstraint("incident_id", "dedup_key", name="uq_timeline_dedup"),
    )
    op.create_index("ix_timeline_events_incident_id", "timeline_events", ["incident_id"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_APPEND_ONLY)
    else:
        for statement in SQLITE_APPEND_ONLY:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER timeline_events_no_update ON timeline_events")
        op.execute("DROP FUNCTION timeline_events_append_only()")
    op.drop_table("timeline_events")
    op.drop_table("role_assignments")
    op.drop_index("ix_incidents_open", table_name="incidents")
    op.drop_table("incidents")
