"""Per-incident mutual exclusion that holds across replicas.

Channel setup and the topic/summary refreshes of one incident must not interleave, or two
replicas could create two channels, or an older state could overwrite a newer one. On
PostgreSQL `incident_lock` takes a session advisory lock keyed by the incident on a pooled
connection for the duration (every replica agrees on it); waiters poll with backoff and hold
no connection while they wait. On SQLite there is one process:
a fixed set of striped thread locks (no dictionary that grows with every incident).
"""

from __future__ import annotations

import threading
import time
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
    wait = 0.01
    while True:
        # Only the holder keeps a pooled connection: a waiter gives its back between tries,
        # so fifty requests for one incident never exhaust the pool waiting for one lock.
        with db.engine.connect() as connection:
            taken = connection.execute(
                text("SELECT pg_try_advisory_lock(:space, :id)"), keys
            ).scalar_one()
            connection.commit()
            if taken:
                try:
                    yield
                finally:
                    connection.execute(text("SELECT pg_advisory_unlock(:space, :id)"), keys)
                    connection.commit()
                return
        time.sleep(wait)
        wait = min(wait * 2, 0.2)
