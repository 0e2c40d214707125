"""Runbook runs: every run and refusal, per-host results, the runs' append-only audit trail.

- `runbook_runs`: the request, the plan as shown, who asked and approved, the run's state.
- `runbook_run_hosts`: one row per planned host: outcome, host key, step results, output.
- `runbook_run_facts`: requested, refused, approval refused, cancelled... (append-only).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op
from bot.db import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

PG_APPEND_ONLY = """
CREATE FUNCTION runbook_run_facts_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'runbook run facts are append-only';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER runbook_run_facts_no_update BEFORE UPDATE OR DELETE ON runbook_run_facts
    FOR EACH ROW EXECUTE FUNCTION runbook_run_facts_append_only();
"""

SQLITE_APPEND_ONLY = [
    """CREATE TRIGGER runbook_run_facts_no_update BEFORE UPDATE ON runbook_run_facts
       BEGIN SELECT RAISE(ABORT, 'runbook run facts are append-only'); END""",
    """CREATE TRIGGER runbook_run_facts_no_delete BEFORE DELETE ON runbook_run_facts
       BEGIN SELECT RAISE(ABORT, 'runbook run facts are append-only'); END""",
]


def upgrade() -> None:
    op.create_table(
        "runbook_runs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("runbook_id", sa.String(64), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("risk", sa.String(8), nullable=False),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("plan", sa.JSON, nullable=False),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("source", sa.String(8), nullable=False),
        sa.Column("requester", sa.String(64), nullable=False),
        sa.Column("approver", sa.String(64), nullable=True),
        sa.Column("incident_id", sa.Integer, sa.ForeignKey("incidents.id"), nullable=True),
        sa.Column("requested_at", UTCDateTime(), nullable=False),
        sa.Column("confirmed_at", UTCDateTime(), nullable=True),
        sa.Column("approved_at", UTCDateTime(), nullable=True),
        sa.Column("started_at", UTCDateTime(), nullable=True),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.Column("expires_at", UTCDateTime(), nullable=True),
        sa.Column("refusal", sa.Text, nullable=True),
        sa.Column("heartbeat_at", UTCDateTime(), nullable=True),
        sa.Column("cancel_requested_by", sa.String(64), nullable=True),
        sa.Column("cancel_requested_at", UTCDateTime(), nullable=True),
        sa.Column("slack_channel", sa.String(32), nullable=True),
        sa.Column("slack_ts", sa.String(32), nullable=True),
    )
    op.create_index("ix_runbook_runs_status", "runbook_runs", ["status"])
    op.create_index("ix_runbook_runs_incident_id", "runbook_runs", ["incident_id"])
    op.create_table(
        "runbook_run_hosts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runbook_runs.id"), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("address", sa.String(255), nullable=False),
        sa.Column("port", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("host_key_fingerprint", sa.String(128), nullable=True),
        sa.Column("steps", sa.JSON, nullable=False),
        sa.Column("output", sa.Text, nullable=False),
        sa.Column("output_truncated", sa.Boolean, nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("started_at", UTCDateTime(), nullable=True),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.UniqueConstraint("run_id", "name", name="uq_runbook_run_hosts_name"),
    )
    op.create_index("ix_runbook_run_hosts_run_id", "runbook_run_hosts", ["run_id"])
    op.create_table(
        "runbook_run_facts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runbook_runs.id"), nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("occurred_at", UTCDateTime(), nullable=False),
        sa.Column("data", sa.JSON, nullable=False),
    )
    op.create_index("ix_runbook_run_facts_run_id", "runbook_run_facts", ["run_id"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_APPEND_ONLY)
    else:
        for statement in SQLITE_APPEND_ONLY:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER runbook_run_facts_no_update ON runbook_run_facts")
        op.execute("DROP FUNCTION runbook_run_facts_append_only()")
    op.drop_index("ix_runbook_run_facts_run_id", table_name="runbook_run_facts")
    op.drop_table("runbook_run_facts")
    op.drop_index("ix_runbook_run_hosts_run_id", table_name="runbook_run_hosts")
    op.drop_table("runbook_run_hosts")
    op.drop_index("ix_runbook_runs_incident_id", table_name="runbook_runs")
    op.drop_index("ix_runbook_runs_status", table_name="runbook_runs")
    op.drop_table("runbook_runs")
