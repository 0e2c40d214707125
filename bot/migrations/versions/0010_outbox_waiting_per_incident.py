"""The outbox's per-incident index leads with the status: "is anything earlier of this
incident still waiting?" is then a seek, not a walk past every item already sent.

`outbox.claim` sends an incident's items in order: an item waits while an earlier item of
its incident is pending, retrying or being sent. Over `(incident_id, id)` that check walked
every earlier item of the incident, sent ones included, for every candidate: with a
thousand notes in one incident a claim cost most of a core. `(incident_id, status, id)`
answers it with one seek per waiting status.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-21
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_slack_outbox_incident", table_name="slack_outbox")
    op.create_index(
        "ix_slack_outbox_incident_waiting", "slack_outbox", ["incident_id", "status", "id"]
    )


def downgrade() -> None:
    op.drop_index("ix_slack_outbox_incident_waiting", table_name="slack_outbox")
    op.create_index("ix_slack_outbox_incident", "slack_outbox", ["incident_id", "id"])
