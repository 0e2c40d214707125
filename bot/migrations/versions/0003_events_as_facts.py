"""Timeline events become facts: one event log for incidents and pages, no Slack text.

- `timeline_events` loses `text` (Slack mrkdwn) and gains `page_id`; `incident_id` may be
  NULL for a page that belongs to no incident. What the text carried moves into `data`.
- `page_events` (a second log that every incident page wrote twice) is folded in and dropped.
- `pages.dedup_key` is unique among open pages only (a partial unique index).
- `apscheduler_jobs` is dropped: the scheduler leader keeps its jobs in memory and rebuilds
  them from the database at takeover.

The append-only triggers are lifted for this migration only and restored at its end.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21
"""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

OPEN_PAGES = "state IN ('triggered', 'acknowledged', 'exhausted') AND dedup_key IS NOT NULL"

TRIGGERS = {
    "postgresql": [
        """CREATE FUNCTION timeline_events_append_only() RETURNS trigger AS $$
        BEGIN RAISE EXCEPTION 'timeline events are append-only'; END;
        $$ LANGUAGE plpgsql""",
        """CREATE TRIGGER timeline_events_no_update BEFORE UPDATE OR DELETE ON timeline_events
        FOR EACH ROW EXECUTE FUNCTION timeline_events_append_only()""",
    ],
    "sqlite": [
        """CREATE TRIGGER timeline_events_no_update BEFORE UPDATE ON timeline_events
        BEGIN SELECT RAISE(ABORT, 'timeline events are append-only'); END""",
        """CREATE TRIGGER timeline_events_no_delete BEFORE DELETE ON timeline_events
        BEGIN SELECT RAISE(ABORT, 'timeline events are append-only'); END""",
    ],
}
DROP_TRIGGERS = {
    "postgresql": [
        "DROP TRIGGER IF EXISTS timeline_events_no_update ON timeline_events",
        "DROP FUNCTION IF EXISTS timeline_events_append_only()",
        "DROP TRIGGER IF EXISTS page_events_no_update ON page_events",
        "DROP FUNCTION IF EXISTS page_events_append_only()",
    ],
    "sqlite": [
        "DROP TRIGGER IF EXISTS timeline_events_no_update",
        "DROP TRIGGER IF EXISTS timeline_events_no_delete",
        "DROP TRIGGER IF EXISTS page_events_no_update",
        "DROP TRIGGER IF EXISTS page_events_no_delete",
    ],
}

# Page facts: the old kind (in page_events, or after "page_" in the timeline) -> the new kind.
PAGE_KINDS = {
    "triggered": "page_triggered",
    "notified": "page_step_notified",
    "nobody": "page_step_nobody",
    "escalated": "page_escalated",
    "acknowledged": "page_acknowledged",
    "resolved": "page_resolved",
    "exhausted": "page_exhausted",
    "delivered": "page_delivered",
    "delivery_failed": "page_delivery_failed",
}
_PAGE_PREFIX = re.compile(r"^P-\d+: ")
_NOBODY_TARGETS = re.compile(r"\(([^()]*)\)\s*$")
_TRY = re.compile(r"\(try (\d+)|after (\d+) tries")
_FAILED_ERROR = re.compile(r"(?:will retry\)|tries): (.*)$", re.DOTALL)


def convert_page_fact(
    old_kind: str, text: str, data: dict[str, Any], message: str | None
) -> tuple[str, dict[str, Any]]:
    """A page fact written by 0002's code (kind without "page_") -> (new kind, facts)."""
    kind = PAGE_KINDS.get(old_kind, f"page_{old_kind}")
    text = _PAGE_PREFIX.sub("", text)
    facts = {key: value for key, value in data.items() if key != "page"}
    if kind == "page_triggered":
        facts = {"target": data.get("target"), "message": message}
    elif kind == "page_step_notified":
        facts = {"step": data.get("step"), "cycle": data.get("cycle"), "people": data.get("people")}
    elif kind == "page_step_nobody":
        found = _NOBODY_TARGETS.search(text)
        targets = [t.strip() for t in found.group(1).split(",")] if found else []
        facts = {"step": data.get("step"), "cycle": data.get("cycle"), "targets": targets}
    elif kind == "page_delivered":
        facts = {"channel": data.get("channel"), "person": data.get("person"), "attempt": None}
    elif kind == "page_delivery_failed":
        tries = _TRY.search(text)
        error = _FAILED_ERROR.search(text)
        facts = {
            "channel": data.get("channel"),
            "person": data.get("person"),
            "attempt": int(tries.group(1) or tries.group(2)) if tries else None,
            "error": error.group(1) if error else text,
            "final": "for good" in text,
        }
    return kind, facts


def convert_incident_fact(
    kind: str, text: str, data: dict[str, Any], dedup_key: str | None
) -> tuple[str, dict[str, Any]]:
    """An incident fact written by 0001's code -> (new kind, facts); text moves into data."""
    if kind == "note":
        return "note_added", {"text": text}
    if kind == "pinned_message":
        return kind, {**data, "text": text}
    if kind == "topic_set":
        return kind, {"topic": text.removeprefix("Topic: ")}
    if kind == "summary_pinned":
        return kind, {"ts": (dedup_key or "").removeprefix("pin-summary:") or None}
    return kind, data


def _tables() -> tuple[sa.Table, sa.Table, sa.Table]:
    meta = sa.MetaData()
    events = sa.Table(
        "timeline_events",
        meta,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("incident_id", sa.Integer),
        sa.Column("page_id", sa.Integer),
        sa.Column("kind", sa.String(40)),
        sa.Column("actor", sa.String(64)),
        sa.Column("occurred_at", sa.DateTime(timezone=True)),
        sa.Column("text", sa.Text),
        sa.Column("data", sa.JSON),
        sa.Column("dedup_key", sa.String(200)),
    )
    page_events = sa.Table(
        "page_events",
        meta,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("page_id", sa.Integer),
        sa.Column("kind", sa.String(40)),
        sa.Column("actor", sa.String(64)),
        sa.Column("occurred_at", sa.DateTime(timezone=True)),
        sa.Column("text", sa.Text),
        sa.Column("data", sa.JSON),
    )
    pages = sa.Table(
        "pages",
        meta,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("incident_id", sa.Integer),
        sa.Column("message", sa.Text),
    )
    return events, page_events, pages


def _convert_rows(bind: sa.Connection) -> None:
    events, page_events, pages = _tables()
    page_rows = {row.id: row for row in bind.execute(sa.select(pages))}
    for row in bind.execute(sa.select(events)).all():
        data = dict(row.data or {})
        page_id = None
        if row.kind.startswith("page_") and "page" in data:
            page_id = int(data["page"])
            page = page_rows.get(page_id)
            kind, facts = convert_page_fact(
                row.kind.removeprefix("page_"), row.text, data, page.message if page else None
            )
        else:
            kind, facts = convert_incident_fact(row.kind, row.text, data, row.dedup_key)
        bind.execute(
            events.update()
            .where(events.c.id == row.id)
            .values(kind=kind, data=facts, page_id=page_id)
        )
    # A page that belongs to an incident wrote each fact twice; its timeline copy (converted
    # above) stays. A page of no incident had only page_events: its facts move over.
    for row in bind.execute(sa.select(page_events).order_by(page_events.c.id)).all():
        page = page_rows.get(row.page_id)
        if page is None or page.incident_id is not None:
            continue
        kind, facts = convert_page_fact(row.kind, row.text, dict(row.data or {}), page.message)
        bind.execute(
            events.insert().values(
                incident_id=None,
                page_id=row.page_id,
                kind=kind,
                actor=row.actor,
                occurred_at=row.occurred_at,
                text="",
                data=facts,
                dedup_key=None,
            )
        )


def upgrade() -> None:
    bind = op.get_bind()
    dialect = "postgresql" if bind.dialect.name == "postgresql" else "sqlite"
    for statement in DROP_TRIGGERS[dialect]:
        op.execute(statement)

    with op.batch_alter_table("timeline_events", recreate="auto") as batch:
        batch.add_column(sa.Column("page_id", sa.Integer, nullable=True))
        batch.alter_column("incident_id", existing_type=sa.Integer, nullable=True)
    _convert_rows(bind)
    with op.batch_alter_table("timeline_events", recreate="auto") as batch:
        batch.drop_column("text")
        batch.create_foreign_key("fk_timeline_events_page_id", "pages", ["page_id"], ["id"])
        batch.create_index("ix_timeline_events_page_id", ["page_id"])
        batch.create_check_constraint(
            "ck_timeline_owner", "incident_id IS NOT NULL OR page_id IS NOT NULL"
        )

    op.drop_table("page_events")
    op.drop_table("apscheduler_jobs")

    if dialect == "postgresql":
        op.drop_constraint("pages_dedup_key_key", "pages", type_="unique")
    else:
        naming = {"uq": "uq_%(table_name)s_%(column_0_name)s"}
        with op.batch_alter_table("pages", recreate="always", naming_convention=naming) as batch:
            batch.drop_constraint("uq_pages_dedup_key", type_="unique")
    op.create_index(
        "uq_pages_open_dedup_key",
        "pages",
        ["dedup_key"],
        unique=True,
        sqlite_where=sa.text(OPEN_PAGES),
        postgresql_where=sa.text(OPEN_PAGES),
    )

    for statement in TRIGGERS[dialect]:
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError(
        "0003 folds page_events into the timeline and drops Slack text; restore a backup "
        "taken before the upgrade to go back"
    )
