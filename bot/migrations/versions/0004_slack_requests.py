"""One request, one effect: the Slack deliveries seen, and one open declaration per person.

- `slack_requests` records the idempotency key of every Slack request acted on
  (`trigger:<trigger_id>`, `event:<event_id>`, `action:<...>`); a retry or a second
  replica's copy of the same request finds its key taken and does nothing. Rows older than
  a day are pruned by the middleware that writes them (`bot.slack.once`).
- `uq_incidents_open_declaration`: a person has at most one open incident of a given title
  (case-insensitive), so identical declarations racing on several threads or replicas give
  one incident. Open duplicates declared before this revision keep their rows; all but the
  newest of each group get the declare key `legacy-duplicate:<id>`, which the index skips.
  On SQLite a migration that recreates `incidents` in batch mode must create this index
  again: SQLAlchemy cannot reflect an expression index, so the copy would not have it.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op
from bot.db import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

LEGACY_DUPLICATE = "legacy-duplicate:"
OPEN_DECLARATION = f"resolved_at IS NULL AND declare_key NOT LIKE '{LEGACY_DUPLICATE}%'"


def _mark_legacy_duplicates(bind: sa.Connection) -> None:
    incidents = sa.table(
        "incidents",
        sa.column("id", sa.Integer),
        sa.column("title", sa.String),
        sa.column("declared_by", sa.String),
        sa.column("resolved_at", UTCDateTime()),
        sa.column("declare_key", sa.String),
    )
    rows = bind.execute(
        sa.select(incidents.c.id, incidents.c.declared_by, sa.func.lower(incidents.c.title))
        .where(incidents.c.resolved_at.is_(None))
        .order_by(incidents.c.id.desc())
    ).all()
    newest: set[tuple[str, str]] = set()
    for incident_id, declared_by, title in rows:
        if (declared_by, title) not in newest:
            newest.add((declared_by, title))
            continue
        bind.execute(
            incidents.update()
            .where(incidents.c.id == incident_id)
            .values(declare_key=f"{LEGACY_DUPLICATE}{incident_id}")
        )


def upgrade() -> None:
    op.create_table(
        "slack_requests",
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_slack_requests_received_at", "slack_requests", ["received_at"])

    _mark_legacy_duplicates(op.get_bind())
    op.create_index(
        "uq_incidents_open_declaration",
        "incidents",
        ["declared_by", sa.text("lower(title)")],
        unique=True,
        sqlite_where=sa.text(OPEN_DECLARATION),
        postgresql_where=sa.text(OPEN_DECLARATION),
    )


def downgrade() -> None:
    # IF EXISTS: on SQLite a later migration that recreates `incidents` in batch mode loses
    # this index (SQLAlchemy cannot reflect an expression index to copy it).
    op.execute("DROP INDEX IF EXISTS uq_incidents_open_declaration")
    op.drop_index("ix_slack_requests_received_at", table_name="slack_requests")
    op.drop_table("slack_requests")
