"""The Alembic migrations: upgrade, concurrency, downgrade, append-only timeline, UTC times."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, create_engine, inspect, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, StatementError

import bot.models  # noqa: F401  (registers every table on Base.metadata)
from alembic import command
from bot.db import AppendOnlyError, Base, Database, normalise_url, utcnow
from bot.incidents import service
from bot.incidents.config import IncidentsSection
from bot.incidents.models import Incident
from bot.migrations import alembic_config, current_revision, head_revision, upgrade
from bot.timeline import TimelineEvent
from tests.conftest import PROXY_VARIABLES

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TABLES = {"incidents", "role_assignments", "timeline_events"}
BERLIN = ZoneInfo("Europe/Berlin")


def plain_engine(url: str) -> Engine:
    return create_engine(normalise_url(url))


def revision_and_tables(url: str) -> tuple[str | None, set[str], int]:
    made = plain_engine(url)
    try:
        with made.connect() as connection:
            revision = current_revision(connection)
            tables = set(inspect(connection).get_table_names())
            versions = (
                connection.execute(text("SELECT count(*) FROM alembic_version")).scalar_one()
                if "alembic_version" in tables
                else 0
            )
        return revision, tables, versions
    finally:
        made.dispose()


DECLARED = {"severity": "sev2", "title": "Checkout latency above 2s", "description": ""}


def add_incident(db: Database, **overrides: object) -> int:
    with db.session_scope() as session:
        fields: dict[str, object] = {"declared_at": utcnow()} | overrides
        incident = Incident(
            title="Checkout latency above 2s",
            severity="sev2",
            status="investigating",
            declared_by="U0ALICE",
            declare_key=f"key-{time.monotonic_ns()}",
            **fields,
        )
        session.add(incident)
        session.flush()
        session.add(
            TimelineEvent(
                incident_id=incident.id,
                kind="declared",
                actor="U0ALICE",
                occurred_at=utcnow(),
                data=DECLARED,
            )
        )
        return incident.id


# -- upgrade ------------------------------------------------------------------------------


def test_upgrade_on_an_empty_database_reaches_head(empty_database_url: str) -> None:
    head = head_revision(empty_database_url)
    assert head is not None
    assert revision_and_tables(empty_database_url)[0] is None

    upgrade(empty_database_url)

    revision, tables, versions = revision_and_tables(empty_database_url)
    assert revision == head
    assert versions == 1
    assert TABLES | {"alembic_version"} <= tables


def test_upgrading_twice_is_a_no_op_that_keeps_the_data(empty_database_url: str) -> None:
    upgrade(empty_database_url)
    db = Database(empty_database_url)
    try:
        incident_id = add_incident(db)
        upgrade(empty_database_url)
        revision, _, versions = revision_and_tables(empty_database_url)
        assert (revision, versions) == (head_revision(empty_database_url), 1)
        with db.session_scope() as session:
            incident = session.get(Incident, incident_id)
            assert incident is not None and incident.title == "Checkout latency above 2s"
            events = session.scalars(select(TimelineEvent)).all()
            assert [event.kind for event in events] == ["declared"]
    finally:
        db.dispose()


def test_three_processes_upgrading_at_once_all_succeed(
    empty_database_url: str, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    script = (
        "import os, sys, time\n"
        "from bot.migrations import upgrade\n"
        "go = sys.argv[2]\n"
        "deadline = time.monotonic() + 30\n"
        "while not os.path.exists(go) and time.monotonic() < deadline:\n"
        "    time.sleep(0.002)\n"
        "upgrade(sys.argv[1])\n"
        "print('upgraded')\n"
    )
    env = {key: value for key, value in os.environ.items() if key not in PROXY_VARIABLES}
    env.pop("DATABASE_URL", None)
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", script, empty_database_url, str(go)],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    try:
        time.sleep(0.5)  # let every process import and reach the starting line
        go.touch()
        outcomes = [process.communicate(timeout=60) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    for process, (out, err) in zip(processes, outcomes, strict=True):
        assert process.returncode == 0, err
        assert out.strip() == "upgraded"
    revision, tables, versions = revision_and_tables(empty_database_url)
    assert revision == head_revision(empty_database_url)
    assert versions == 1
    assert tables >= TABLES


def postgresql(url: str) -> bool:
    return make_url(url).get_backend_name() == "postgresql"


def test_downgrade_to_base_and_upgrade_again(empty_database_url: str) -> None:
    # 0003 folds page_events into the timeline and drops its Slack text, so it cannot be
    # undone; every migration before it downgrades.
    upgrade(empty_database_url, "0002")
    command.downgrade(alembic_config(empty_database_url), "base")

    revision, tables, _ = revision_and_tables(empty_database_url)
    assert revision is None
    assert not TABLES & tables

    upgrade(empty_database_url)
    revision, tables, versions = revision_and_tables(empty_database_url)
    assert (revision, versions) == (head_revision(empty_database_url), 1)
    assert tables >= TABLES
    with pytest.raises(NotImplementedError, match="restore a backup"):
        command.downgrade(alembic_config(empty_database_url), "base")
    revision, tables, versions = revision_and_tables(empty_database_url)
    # 0003 refused. PostgreSQL's transactional DDL rolls the whole downgrade back (still at
    # head); SQLite keeps what ran before the refusal (the migrations after 0003 undone).
    expected = head_revision(empty_database_url) if postgresql(empty_database_url) else "0003"
    assert (revision, versions) == (expected, 1), "0003 refused, its schema unchanged"
    assert tables >= TABLES
    # The append-only guard came back with the table (at head again, as the models are).
    upgrade(empty_database_url)
    db = Database(empty_database_url)
    try:
        add_incident(db)
        with pytest.raises(DBAPIError, match="append-only"), db.engine.begin() as connection:
            connection.execute(text("DELETE FROM timeline_events"))
    finally:
        db.dispose()


# -- the append-only timeline -------------------------------------------------------------


def test_raw_sql_cannot_update_or_delete_timeline_events(database_url: str) -> None:
    db = Database(database_url)
    try:
        incident_id = add_incident(db)
        made = plain_engine(database_url)
        try:
            for change in (
                """UPDATE timeline_events SET data = '{"rewritten": "history"}'""",
                "UPDATE timeline_events SET kind = 'note_added'",
            ):
                with pytest.raises(DBAPIError, match="append-only"), made.begin() as connection:
                    connection.execute(text(change))
            with pytest.raises(DBAPIError, match="append-only"), made.begin() as connection:
                connection.execute(
                    text("DELETE FROM timeline_events WHERE incident_id = :id"), {"id": incident_id}
                )
            with made.begin() as connection:
                # Appending is what the table is for.
                connection.execute(
                    text(
                        "INSERT INTO timeline_events (incident_id, kind, actor, occurred_at, data)"
                        """ VALUES (:id, 'note_added', 'U0BOB', :at, '{"text": "Rolled back"}')"""
                    ),
                    {"id": incident_id, "at": datetime(2026, 1, 2, 3, 4, 5)},
                )
            with made.connect() as connection:
                rows = connection.execute(
                    select(TimelineEvent.kind, TimelineEvent.data).order_by(TimelineEvent.id)
                ).all()
        finally:
            made.dispose()
        assert [tuple(row) for row in rows] == [
            ("declared", DECLARED),
            ("note_added", {"text": "Rolled back"}),
        ]
    finally:
        db.dispose()


def test_the_orm_refuses_to_change_or_delete_timeline_events(database_url: str) -> None:
    db = Database(database_url)
    try:
        add_incident(db)
        with pytest.raises(AppendOnlyError), db.session_scope() as session:
            event = session.scalars(select(TimelineEvent)).one()
            event.data = {"rewritten": "history"}
        with pytest.raises(AppendOnlyError), db.session_scope() as session:
            event = session.scalars(select(TimelineEvent)).one()
            event.kind = "note_added"
        with pytest.raises(AppendOnlyError), db.session_scope() as session:
            session.delete(session.scalars(select(TimelineEvent)).one())
        with db.session_scope() as session:
            event = session.scalars(select(TimelineEvent)).one()
            assert (event.kind, event.data) == ("declared", DECLARED)
    finally:
        db.dispose()


# -- times are UTC --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("local", "utc"),
    [
        # CEST, UTC+2
        (
            datetime(2026, 7, 1, 14, 30, 15, 123456, tzinfo=BERLIN),
            datetime(2026, 7, 1, 12, 30, 15, 123456, tzinfo=UTC),
        ),
        # 02:30 happens twice when the clocks go back: first in CEST, then (fold=1) in CET.
        (
            datetime(2026, 10, 25, 2, 30, tzinfo=BERLIN, fold=0),
            datetime(2026, 10, 25, 0, 30, tzinfo=UTC),
        ),
        (
            datetime(2026, 10, 25, 2, 30, tzinfo=BERLIN, fold=1),
            datetime(2026, 10, 25, 1, 30, tzinfo=UTC),
        ),
    ],
)
def test_an_aware_datetime_comes_back_as_the_same_instant_in_utc(
    database_url: str, local: datetime, utc: datetime
) -> None:
    db = Database(database_url)
    try:
        incident_id = add_incident(db, declared_at=local)
        with db.session_scope() as session:
            incident = session.get(Incident, incident_id)
            assert incident is not None
            declared = incident.declared_at
        assert declared.tzinfo is UTC
        # (An ambiguous wall time never compares equal across zones; compare instants.)
        assert declared.timestamp() == local.timestamp()
        assert declared == utc
        with db.session_scope() as session:
            # Comparisons in SQL use the same instant, whatever zone the bound value has.
            found = session.scalars(
                select(Incident.id).where(
                    Incident.declared_at == local.astimezone(ZoneInfo("Asia/Tokyo"))
                )
            ).all()
        assert found == [incident_id]
    finally:
        db.dispose()


def test_times_written_now_come_back_as_now_in_utc(database_url: str) -> None:
    db = Database(database_url)
    try:
        before = datetime.now(UTC)
        with db.session_scope() as session:
            declared = service.declare(
                session,
                title="Checkout latency above 2s",
                declared_by="U0ALICE",
                declare_key="key-now",
                policy=IncidentsSection(),
                now=utcnow(),
            )
            incident_id = declared.incident.id
        after = datetime.now(UTC)
        with db.session_scope() as session:
            incident = session.get(Incident, incident_id)
            assert incident is not None
            event = session.scalars(select(TimelineEvent).order_by(TimelineEvent.id)).first()
            assert event is not None and event.kind == "declared"
        for value in (incident.declared_at, event.occurred_at):
            assert value.tzinfo is UTC
            assert before - timedelta(seconds=1) <= value <= after + timedelta(seconds=1)
    finally:
        db.dispose()


def test_a_naive_datetime_is_refused(database_url: str) -> None:
    db = Database(database_url)
    try:
        with pytest.raises(StatementError, match="naive datetime"):
            add_incident(db, declared_at=datetime(2026, 7, 1, 14, 30))
        with db.session_scope() as session:
            assert session.scalars(select(Incident)).all() == []
    finally:
        db.dispose()


def test_the_models_match_the_migrations(empty_database_url: str) -> None:
    """What the migrations build is what the ORM models declare: autogenerate finds nothing.

    The scheduler keeps its jobs in memory (rebuilt from the database at takeover), so the
    migrations own no table besides the models' and Alembic's own.
    """
    upgrade(empty_database_url)
    engine = plain_engine(empty_database_url)
    try:
        with engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
            tables = set(inspect(connection).get_table_names())
    finally:
        engine.dispose()
    assert differences == []
    assert tables == set(Base.metadata.tables) | {"alembic_version"}
