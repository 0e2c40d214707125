"""The Slack outbox, and when each incident's Slack setup was finished.

- `slack_outbox`: posts and refreshes written in the same transaction as the change that
  causes them, delivered (in order per incident, with retries) by `bot.slack.outbox`.
- `incidents.set_up_at`: when the channel, invitation, topic, summary, pin and announcement
  were all done; NULL means the scheduler leader's reconcile pass still has to finish them.
  Incidents whose summary was posted before this revision count as set up.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op
from bot.db import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "slack_outbox",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("incident_id", sa.Integer, sa.ForeignKey("incidents.id"), nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("body", sa.JSON, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("sent_at", UTCDateTime(), nullable=True),
    )
    op.create_index("ix_slack_outbox_waiting", "slack_outbox", ["status", "next_attempt_at"])
    op.create_index("ix_slack_outbox_incident", "slack_outbox", ["incident_id", "id"])
    # Plain ALTER TABLE on both engines (a batch copy would drop 0004's expression index).
    op.add_column("incidents", sa.Column("set_up_at", UTCDateTime(), nullable=True))
    op.execute("UPDATE incidents SET set_up_at = declared_at WHERE summary_ts IS NOT NULL")


def downgrade() -> None:
    op.execute("ALTER TABLE incidents DROP COLUMN set_up_at")
    op.drop_index("ix_slack_outbox_incident", table_name="slack_outbox")
    op.drop_index("ix_slack_outbox_waiting", table_name="slack_outbox")
    op.drop_table("slack_outbox")
