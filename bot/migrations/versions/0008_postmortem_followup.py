"""Postmortem follow-up: action items and the review's reminders.

- `action_items`: what an incident's responders agreed to do, with owner, due date and done.
- `postmortem_followups`: one row per resolved incident: when its postmortem is due, when
  the commander is reminded next, how many reminders went out, and whether it is done. The
  leader's scheduler claims due rows under a row lock (`bot.postmortem.followup`).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op
from bot.db import UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "action_items",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("incident_id", sa.Integer, sa.ForeignKey("incidents.id"), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("owner", sa.String(64), nullable=True),
        sa.Column("due", sa.Date, nullable=True),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("done_by", sa.String(64), nullable=True),
        sa.Column("done_at", UTCDateTime(), nullable=True),
    )
    op.create_index("ix_action_items_incident_id", "action_items", ["incident_id"])
    op.create_table(
        "postmortem_followups",
        sa.Column("incident_id", sa.Integer, sa.ForeignKey("incidents.id"), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),  # armed | done | cancelled
        sa.Column("resolved_at", UTCDateTime(), nullable=False),
        sa.Column("due_at", UTCDateTime(), nullable=False),
        sa.Column("next_at", UTCDateTime(), nullable=True),
        sa.Column("reminders", sa.Integer, nullable=False),
        sa.Column("generation", sa.Integer, nullable=False),
        sa.Column("done_by", sa.String(64), nullable=True),
        sa.Column("done_at", UTCDateTime(), nullable=True),
    )
    op.create_index("ix_postmortem_followups_due", "postmortem_followups", ["state", "next_at"])


def downgrade() -> None:
    op.drop_index("ix_postmortem_followups_due", table_name="postmortem_followups")
    op.drop_table("postmortem_followups")
    op.drop_index("ix_action_items_incident_id", table_name="action_items")
    op.drop_table("action_items")
