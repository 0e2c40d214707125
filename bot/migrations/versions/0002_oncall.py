"""On-call: overrides, pages, notifications, page events, hand-offs, scheduler jobs.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op
from bot.db import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

APPEND_ONLY = {
    "postgresql": [
        """CREATE FUNCTION page_events_append_only() RETURNS trigger AS $$
        BEGIN RAISE EXCEPTION 'page events are append-only'; END;
        $$ LANGUAGE plpgsql""",
        """CREATE TRIGGER page_events_no_update BEFORE UPDATE OR DELETE ON page_events
        FOR EACH ROW EXECUTE FUNCTION page_events_append_only()""",
    ],
    "sqlite": [
        """CREATE TRIGGER page_events_no_update BEFORE UPDATE ON page_events
        BEGIN SELECT RAISE(ABORT, 'page events are append-only'); END""",
        """CREATE TRIGGER page_events_no_delete BEFORE DELETE ON page_events
        BEGIN SELECT RAISE(ABORT, 'page events are append-only'); END""",
    ],
}


def upgrade() -> None:
    op.create_table(
        "oncall_overrides",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("schedule", sa.String(64), nullable=False, index=True),
        sa.Column("person", sa.String(64), nullable=False),
        sa.Column("starts_at", UTCDateTime(), nullable=False),
        sa.Column("ends_at", UTCDateTime(), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("cancelled_at", UTCDateTime(), nullable=True),
        sa.Column("cancelled_by", sa.String(64), nullable=True),
        sa.CheckConstraint("ends_at > starts_at", name="ck_override_ends_after_start"),
    )
    op.create_table(
        "pages",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("target", sa.String(128), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column(
            "incident_id", sa.Integer, sa.ForeignKey("incidents.id"), nullable=True, index=True
        ),
        sa.Column("policy", sa.JSON, nullable=False),
        sa.Column("state", sa.String(16), nullable=False, index=True),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("cycle", sa.Integer, nullable=False),
        sa.Column("generation", sa.Integer, nullable=False),
        sa.Column("next_escalation_at", UTCDateTime(), nullable=True),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("acknowledged_by", sa.String(64), nullable=True),
        sa.Column("acknowledged_at", UTCDateTime(), nullable=True),
        sa.Column("resolved_by", sa.String(64), nullable=True),
        sa.Column("resolved_at", UTCDateTime(), nullable=True),
        sa.Column("exhausted_at", UTCDateTime(), nullable=True),
        sa.Column("dedup_key", sa.String(200), nullable=True, unique=True),
    )
    op.create_table(
        "page_notifications",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("page_id", sa.Integer, sa.ForeignKey("pages.id"), nullable=False, index=True),
        sa.Column("cycle", sa.Integer, nullable=False),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("person", sa.String(64), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False, index=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("sent_at", UTCDateTime(), nullable=True),
        sa.UniqueConstraint(
            "page_id", "cycle", "step", "person", "channel", name="uq_notification"
        ),
    )
    op.create_table(
        "page_events",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("page_id", sa.Integer, sa.ForeignKey("pages.id"), nullable=False, index=True),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("occurred_at", UTCDateTime(), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("data", sa.JSON, nullable=False),
    )
    op.create_table(
        "oncall_handoffs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("schedule", sa.String(64), nullable=False),
        sa.Column("starts_at", UTCDateTime(), nullable=False),
        sa.Column("person", sa.String(64), nullable=True),
        sa.Column("announced_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("schedule", "starts_at", name="uq_handoff"),
    )
    # APScheduler 3's SQLAlchemyJobStore table, created here so the schema has one owner.
    op.create_table(
        "apscheduler_jobs",
        sa.Column("id", sa.Unicode(191), primary_key=True),
        sa.Column("next_run_time", sa.Float(25), index=True),
        sa.Column("job_state", sa.LargeBinary, nullable=False),
    )
    for statement in APPEND_ONLY[
        "postgresql" if op.get_bind().dialect.name == "postgresql" else "sqlite"
    ]:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER page_events_no_update ON page_events")
        op.execute("DROP FUNCTION page_events_append_only()")
    op.drop_table("apscheduler_jobs")
    op.drop_table("oncall_handoffs")
    op.drop_table("page_events")
    op.drop_table("page_notifications")
    op.drop_table("pages")
    op.drop_table("oncall_overrides")
