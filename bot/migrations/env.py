"""Alembic environment: the URL comes from the caller (bot.migrations) or DATABASE_URL.

Alembic runs this file by path (it is not imported as `bot.migrations.env`).
"""

from __future__ import annotations

import os

from sqlalchemy import create_engine

import bot.models  # noqa: F401  (registers every table on Base.metadata)
from alembic import context
from bot.db import Base, normalise_url

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = config.attributes.get("database_url") or os.environ.get(
        "DATABASE_URL", "sqlite:///firebreak.db"
    )
    return normalise_url(url)


def run_migrations_offline() -> None:
    context.configure(
        url=_url(), target_metadata=target_metadata, literal_binds=True, render_as_batch=True
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(
            connection=connection, target_metadata=target_metadata, render_as_batch=True
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(_url())
    with engine.connect() as connection:
        context.configure(
            connection=connection, target_metadata=target_metadata, render_as_batch=True
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
