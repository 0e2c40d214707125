"""What the `firebreak postmortem` and `firebreak report` commands share: a problem is
`error:` lines on stderr and exit status 2, and their reads run in one transaction on the
configured database after upgrading its schema."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, NoReturn

import click

from bot.config import ConfigError, Settings, load_settings

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


def fail(*problems: str) -> NoReturn:
    for problem in problems:
        click.echo(f"error: {problem}", err=True)
    sys.exit(2)


def settings_or_fail() -> Settings:
    """The settings, or their problems and exit 2."""
    try:
        return load_settings()
    except ConfigError as error:
        fail(*error.problems)


@contextmanager
def upgraded_session(settings: Settings) -> Iterator[Session]:
    """One transaction (`session_scope`) on the configured database, its schema upgraded
    first (a problem: `error:` lines, exit 2); the engine is disposed of afterwards."""
    from bot.db import Database
    from bot.migrations import upgrade

    try:
        upgrade(settings.env.database_url)
    except ConfigError as error:
        fail(*error.problems)
    database = Database(settings.env.database_url)
    try:
        with database.session_scope() as session:
            yield session
    finally:
        database.dispose()
