"""Migration 0003 converts what 0001/0002's code wrote: Slack text becomes facts, the page
log folds into the timeline, and the append-only guard is back afterwards.

Rows are inserted exactly as the previous code wrote them (texts included), on the schema
at revision 0002, then the database is upgraded to head.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, inspect, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from bot.db import Database, normalise_url
from bot.migrations import upgrade
from bot.oncall.models import Page
from bot.timeline import TimelineEvent

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


@pytest.fixture
def old_database(empty_database_url: str) -> Iterator[Engine]:
    upgrade(empty_database_url, "0002")
    engine = create_engine(normalise_url(empty_database_url))
    yield engine
    engine.dispose()


def _write_0002_rows(engine: Engine) -> None:
    sqlite = engine.dialect.name == "sqlite"

    def ts(minute: int) -> Any:
        moment = T0.replace(minute=minute)
        return moment.replace(tzinfo=None) if sqlite else moment

    timeline_rows = [
        # (kind, actor, text, data, dedup_key)
        (
            "declared",
            "U0ALICE",
            "Declared sev2: Checkout down",
            {"severity": "sev2", "title": "Checkout down", "description": ""},
            None,
        ),
        ("note", "U0BOB", "Rolled back <!channel> &lt;v42&gt;", {}, None),
        (
            "topic_set",
            "firebreak",
            "Topic: SEV2 · investigating · Commander: <@U0ALICE>",
            {},
            "topic:initial",
        ),
        ("summary_pinned", "firebreak", "Pinned the summary", {}, "pin-summary:1700000000.000100"),
        (
            "pinned_message",
            "U0BOB",
            "Error rate back to 0.1%",
            {"channel": "C0INC", "ts": "1.2", "author": "U0CAROL"},
            "pin:C0INC:1.2",
        ),
        ("severity_changed", "U0BOB", "Severity sev2 → sev1", {"from": "sev2", "to": "sev1"}, None),
        (
            "page_triggered",
            "U0BOB",
            "P-1: Paged policy:payments: DB is on fire",
            {"page": 1, "target": "policy:payments"},
            None,
        ),
        (
            "page_notified",
            "firebreak",
            "P-1: Step 1: notified alice",
            {"page": 1, "step": 1, "cycle": 0, "people": ["alice"]},
            None,
        ),
        (
            "page_nobody",
            "firebreak",
            "P-1: Step 2 (repeat 1): nobody to notify (schedule:primary)",
            {"page": 1, "step": 2, "cycle": 1},
            None,
        ),
        (
            "page_delivery_failed",
            "firebreak",
            "P-1: slack to alice failed (try 2, will retry): ratelimited",
            {"page": 1, "channel": "slack", "person": "alice"},
            None,
        ),
        ("page_acknowledged", "U0ALICE", "P-1: Acknowledged by <@U0ALICE>", {"page": 1}, None),
    ]
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO incidents (id, title, description, severity, status, declared_by,"
                " declared_at, declare_key) VALUES (1, 'Checkout down', '', 'sev1',"
                " 'investigating', 'U0ALICE', :at, 'command:T1')"
            ),
            {"at": ts(0)},
        )
        pages = [
            (1, "policy:payments", "DB is on fire", 1, "acknowledged", "alert:db"),
            (2, "user:carol", "Disk at 95%", None, "resolved", "alert:disk"),
        ]
        for page_id, target, message, incident_id, state, key in pages:
            connection.execute(
                text(
                    "INSERT INTO pages (id, target, message, incident_id, policy, state, step,"
                    " cycle, generation, created_by, created_at, dedup_key) VALUES (:id, :target,"
                    " :message, :incident, :policy, :state, 1, 0, 3, 'U0BOB', :at, :key)"
                ),
                {
                    "id": page_id,
                    "target": target,
                    "message": message,
                    "incident": incident_id,
                    "policy": '{"steps": [{"targets": ["user:carol"], "wait": 300.0}], "repeat": 0}',
                    "state": state,
                    "at": ts(1),
                    "key": key,
                },
            )
        for minute, (kind, actor, body, data, key) in enumerate(timeline_rows):
            connection.execute(
                text(
                    "INSERT INTO timeline_events (incident_id, kind, actor, occurred_at, text,"
                    " data, dedup_key) VALUES (1, :kind, :actor, :at, :text, :data, :key)"
                ),
                {
                    "kind": kind,
                    "actor": actor,
                    "at": ts(minute),
                    "text": body,
                    "data": json.dumps(data),
                    "key": key,
                },
            )
        page_events = [
            # page 1 belongs to INC-1: its facts are already in the timeline (written twice)
            (
                1,
                "triggered",
                "U0BOB",
                "Paged policy:payments: DB is on fire",
                {"target": "policy:payments"},
            ),
            # page 2 belongs to no incident: its facts exist only here
            (2, "triggered", "cli:ops", "Paged user:carol: Disk at 95%", {"target": "user:carol"}),
            (
                2,
                "notified",
                "firebreak",
                "Step 1: notified carol",
                {"step": 1, "cycle": 0, "people": ["carol"]},
            ),
            (
                2,
                "delivered",
                "firebreak",
                "slack to carol",
                {"channel": "slack", "person": "carol"},
            ),
            (
                2,
                "delivery_failed",
                "firebreak",
                "email to carol failed for good after 5 tries: 550 no such user",
                {"channel": "email", "person": "carol"},
            ),
            (2, "resolved", "U0CAROL", "Resolved by <@U0CAROL>", {}),
        ]
        for minute, (page_id, kind, actor, body, data) in enumerate(page_events):
            connection.execute(
                text(
                    "INSERT INTO page_events (page_id, kind, actor, occurred_at, text, data)"
                    " VALUES (:page, :kind, :actor, :at, :text, :data)"
                ),
                {
                    "page": page_id,
                    "kind": kind,
                    "actor": actor,
                    "at": ts(20 + minute),
                    "text": body,
                    "data": json.dumps(data),
                },
            )


def test_0003_turns_texts_into_facts_and_folds_the_page_log_in(
    old_database: Engine, empty_database_url: str
) -> None:
    _write_0002_rows(old_database)
    upgrade(empty_database_url)

    tables = set(inspect(old_database).get_table_names())
    assert "page_events" not in tables and "apscheduler_jobs" not in tables
    columns = {c["name"] for c in inspect(old_database).get_columns("timeline_events")}
    assert "text" not in columns and "page_id" in columns

    db = Database(empty_database_url)
    try:
        with db.session_scope() as session:
            rows = session.scalars(select(TimelineEvent).order_by(TimelineEvent.id)).all()
            facts = [(r.kind, r.incident_id, r.page_id, r.data) for r in rows]
    finally:
        db.dispose()

    incident_facts = [f for f in facts if f[1] == 1]
    assert [f[0] for f in incident_facts] == [
        "declared",
        "note_added",
        "topic_set",
        "summary_pinned",
        "pinned_message",
        "severity_changed",
        "page_triggered",
        "page_step_notified",
        "page_step_nobody",
        "page_delivery_failed",
        "page_acknowledged",
    ]
    by_kind = {kind: (incident, page, data) for kind, incident, page, data in incident_facts}
    assert by_kind["note_added"] == (1, None, {"text": "Rolled back <!channel> &lt;v42&gt;"})
    assert by_kind["topic_set"][2] == {"topic": "SEV2 · investigating · Commander: <@U0ALICE>"}
    assert by_kind["summary_pinned"][2] == {"ts": "1700000000.000100"}
    assert by_kind["pinned_message"][2]["text"] == "Error rate back to 0.1%"
    assert by_kind["severity_changed"][2] == {"from": "sev2", "to": "sev1"}
    assert by_kind["page_triggered"] == (
        1,
        1,
        {"target": "policy:payments", "message": "DB is on fire"},
    )
    assert by_kind["page_step_notified"][1:] == (1, {"step": 1, "cycle": 0, "people": ["alice"]})
    assert by_kind["page_step_nobody"][2] == {
        "step": 2,
        "cycle": 1,
        "targets": ["schedule:primary"],
    }
    assert by_kind["page_delivery_failed"][2] == {
        "channel": "slack",
        "person": "alice",
        "attempt": 2,
        "error": "ratelimited",
        "final": False,
    }
    assert by_kind["page_acknowledged"][1:] == (1, {})

    # Page 2 (no incident) had its facts only in page_events: they moved, in order.
    page_two = [(kind, data) for kind, incident, page, data in facts if page == 2]
    assert all(incident is None for _, incident, page, _ in facts if page == 2)
    assert page_two == [
        ("page_triggered", {"target": "user:carol", "message": "Disk at 95%"}),
        ("page_step_notified", {"step": 1, "cycle": 0, "people": ["carol"]}),
        ("page_delivered", {"channel": "slack", "person": "carol", "attempt": None}),
        (
            "page_delivery_failed",
            {
                "channel": "email",
                "person": "carol",
                "attempt": 5,
                "error": "550 no such user",
                "final": True,
            },
        ),
        ("page_resolved", {}),
    ]
    # Page 1's copy in page_events was a duplicate of its timeline facts: not moved twice.
    assert sum(1 for kind, _, page, _ in facts if page == 1 and kind == "page_triggered") == 1


def test_after_0003_the_timeline_is_append_only_again(
    old_database: Engine, empty_database_url: str
) -> None:
    _write_0002_rows(old_database)
    upgrade(empty_database_url)
    for statement in (
        "UPDATE timeline_events SET kind = 'rewritten'",
        "DELETE FROM timeline_events",
    ):
        with pytest.raises(DBAPIError, match="append-only"), old_database.begin() as connection:
            connection.execute(text(statement))


def test_after_0003_a_dedup_key_names_one_open_page_and_is_free_once_resolved(
    old_database: Engine, empty_database_url: str
) -> None:
    _write_0002_rows(old_database)
    upgrade(empty_database_url)
    insert = text(
        "INSERT INTO pages (id, target, message, policy, state, step, cycle, generation,"
        " created_by, created_at, dedup_key) VALUES (:id, 'user:carol', 'again', '{}', :state,"
        " 0, 0, 1, 'U0BOB', :at, :key)"
    )
    at = T0.replace(tzinfo=None) if old_database.dialect.name == "sqlite" else T0
    # alert:disk's page is resolved: the key is free again.
    with old_database.begin() as connection:
        connection.execute(insert, {"id": 3, "state": "triggered", "at": at, "key": "alert:disk"})
    # alert:db's page is still open (acknowledged): a second open page with it is refused.
    with pytest.raises(IntegrityError), old_database.begin() as connection:
        connection.execute(insert, {"id": 4, "state": "triggered", "at": at, "key": "alert:db"})
    db = Database(empty_database_url)
    try:
        with db.session_scope() as session:
            keys = sorted((p.dedup_key or "", p.state) for p in session.scalars(select(Page)).all())
    finally:
        db.dispose()
    assert keys == [
        ("alert:db", "acknowledged"),
        ("alert:disk", "resolved"),
        ("alert:disk", "triggered"),
    ]
