"""Run the Alembic migrations, safely from several processes at once.

The migrations live in this package (`env.py`, `versions/`) and ship in the wheel, so an
installed `firebreak` migrates from any directory; no `alembic.ini` is needed at run time.

`firebreak serve` calls `upgrade()` at start, so no user meets a missing-migration error.
Two replicas starting together must not both create tables: on PostgreSQL the upgrade runs
under a session advisory lock; on SQLite under an exclusive lock on a file beside the
database. The second process waits, then finds the schema at head and does nothing.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, create_engine, text
from sqlalchemy.engine import make_url

from alembic import command
from bot.db import normalise_url

MIGRATIONS_DIR = Path(__file__).resolve().parent
ADVISORY_LOCK_KEY = 0x46495245  # "FIRE"


def alembic_config(url: str) -> Config:
    """The Alembic configuration, built in code: script_location is this package."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    config.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    config.attributes["database_url"] = normalise_url(url)
    return config


def head_revision(url: str) -> str | None:
    return ScriptDirectory.from_config(alembic_config(url)).get_current_head()


def current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def upgrade(url: str, revision: str = "head") -> None:
    url = normalise_url(url)
    config = alembic_config(url)
    parsed = make_url(url)
    engine = create_engine(url)
    try:
        if parsed.get_backend_name() == "postgresql":
            with engine.connect() as connection:
                connection.execute(
                    text("SELECT pg_advisory_lock(:key)"), {"key": ADVISORY_LOCK_KEY}
                )
                connection.commit()
                try:
                    config.attributes["connection"] = connection
                    command.upgrade(config, revision)
                    connection.commit()
                finally:
                    connection.execute(
                        text("SELECT pg_advisory_unlock(:key)"), {"key": ADVISORY_LOCK_KEY}
                    )
                    connection.commit()
        else:
            with _file_lock(parsed.database):
                command.upgrade(config, revision)
    finally:
        engine.dispose()


@contextmanager
def _file_lock(database: str | None) -> Iterator[None]:
    if database in (None, "", ":memory:"):
        yield
        return
    lock_path = Path(f"{database}.migrate.lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
