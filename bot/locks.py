"""Per-incident mutual exclusion that holds across replicas.

Channel setup and the topic/summary refreshes of one incident must not interleave, or two
replicas could create two channels, or an older state could overwrite a newer one. On
PostgreSQL `incident_lock` takes a session advisory lock keyed by the incident on a pooled
connection for the duration (every replica agrees on it). On SQLite there is one process:
a fixed set of striped thread locks (no dictionary that grows with every incident).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import text

from bot.db import Database

# The two-key advisory lock space for incidents: (b"INCI", incident id).
INCIDENT_LOCK_SPACE = 0x494E4349
_STRIPES = tuple(threading.Lock() for _ in range(64))


@contextmanager
def incident_lock(db: Database, incident_id: int) -> Iterator[None]:
    if db.engine.dialect.name != "postgresql":
        with _STRIPES[incident_id % len(_STRIPES)]:
            yield
        return
    keys = {"space": INCIDENT_LOCK_SPACE, "id": incident_id}
    with db.engine.connect() as connection:
        connection.execute(text("SELECT pg_advisory_lock(:space, :id)"), keys)
        connection.commit()
        try:
            yield
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:space, :id)"), keys)
            connection.commit()
