"""`bot.db.insert_unless_taken`: one `INSERT ... ON CONFLICT DO NOTHING RETURNING` that
stands in for a savepoint around an insert, on SQLite and PostgreSQL (with
FIREBREAK_TEST_DATABASE_URL). What declarations, pages, alert groups and deduplicated
timeline events rely on: the row comes back persistent, a twin already committed gives
None, and a twin still uncommitted in another transaction is waited for."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from bot import timeline
from bot.db import Database, insert_unless_taken
from bot.incidents.models import Incident

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    try:
        yield database
    finally:
        database.dispose()


def incident_values(key: str) -> dict[str, object]:
    return {
        "title": f"Checkout down ({key})",
        "description": "",
        "severity": "sev2",
        "status": "investigating",
        "declared_by": "U0ALICE",
        "declared_at": NOW,
        "declare_key": key,
    }


def incidents(db: Database) -> int:
    with db.session_scope() as session:
        return int(session.scalar(select(func.count()).select_from(Incident)) or 0)


def test_the_row_comes_back_persistent_and_a_committed_twin_gives_none(db: Database) -> None:
    with db.session_scope() as session:
        inserted = insert_unless_taken(session, Incident, **incident_values("k1"))
        assert inserted is not None and inserted.id is not None
        assert inserted in session and inserted.reference == f"INC-{inserted.id}"
        inserted.severity = "sev1"  # an ordinary ORM object: changes flush with the session
    with db.session_scope() as session:
        assert insert_unless_taken(session, Incident, **incident_values("k1")) is None
        stored = session.get(Incident, inserted.id)
        assert stored is not None and stored.severity == "sev1"
    assert incidents(db) == 1


def test_a_deduplicated_timeline_event_is_recorded_once(db: Database) -> None:
    with db.session_scope() as session:
        incident = insert_unless_taken(session, Incident, **incident_values("k2"))
        assert incident is not None
        first = timeline.record(
            session, "topic_set", now=NOW, incident_id=incident.id, dedup_key="topic:initial"
        )
        again = timeline.record(
            session, "topic_set", now=NOW, incident_id=incident.id, dedup_key="topic:initial"
        )
        assert first is not None and again is None
        # Page facts are counted by the metrics from the session's new rows, which a
        # deduplicated insert bypasses: refused, not silently uncounted.
        with pytest.raises(ValueError, match="page fact"):
            timeline.record(
                session, "page_triggered", now=NOW, incident_id=incident.id, dedup_key="p"
            )
        kinds = [event.kind for event in timeline.for_incident(session, incident.id)]
    assert kinds == ["topic_set"]


@pytest.mark.parametrize("outcome", ["commit", "rollback"])
def test_an_uncommitted_twin_is_waited_for(db: Database, outcome: str) -> None:
    """The second insert waits for the first transaction: None if it commits, the row if
    it rolls back (PostgreSQL waits on the unique index, SQLite on the write lock)."""
    inserted_first = threading.Event()
    results: list[Incident | None] = []

    def second() -> None:
        inserted_first.wait(10)
        with db.session_scope() as session:
            results.append(insert_unless_taken(session, Incident, **incident_values("k3")))

    waiter = threading.Thread(target=second, name="second-insert")
    try:
        with db.session_scope() as session:
            assert insert_unless_taken(session, Incident, **incident_values("k3")) is not None
            waiter.start()
            inserted_first.set()
            waiter.join(0.5)
            assert waiter.is_alive(), "the second insert returned while its twin was uncommitted"
            if outcome == "rollback":
                session.rollback()
    finally:
        inserted_first.set()
        waiter.join(10)
    assert not waiter.is_alive()
    if outcome == "commit":
        assert results == [None]
    else:
        assert len(results) == 1 and results[0] is not None
    assert incidents(db) == 1
