"""Per-incident mutual exclusion that holds across replicas.

Channel setup and the topic/summary refreshes of one incident must not interleave, or two
replicas could create two channels, or an older state could overwrite a newer one. On
PostgreSQL `incident_lock` takes a session advisory lock keyed by the incident on a pooled
connection for the duration (every replica agrees on it); waiters poll with backoff and hold
no connection while they wait. On SQLite there is one process:
a fixed set of striped thread locks (no dictionary that grows with every incident).

The advisory lock lives as long as its connection: if that connection is terminated (a
database restart, `pg_terminate_backend`), the server frees the lock and another replica may
take it while the holder still works. So the holder calls `Held.check()` right before each
Slack call that must not happen twice (a channel created, a summary or announcement posted,
a summary overwritten); a lock that is gone raises `bot.db.ConnectionLost`, which
`bot.db.unavailable` counts as the database failing, so the work stops cleanly and is
finished later (the leader's reconcile pass) instead of going on unguarded. Taking the lock
is retried while the database fails, a few times; releasing a lock whose connection is gone
is nothing to do (the server released it).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from sqlalchemy import Connection, exc, text

from bot.db import ConnectionLost, Database, describe, unavailable

log = logging.getLogger(__name__)
# The two-key advisory lock space for incidents: (b"INCI", incident id).
INCIDENT_LOCK_SPACE = 0x494E4349
_STRIPES = tuple(threading.Lock() for _ in range(64))
TAKE_ATTEMPTS = 5
"""How many times taking the lock may fail because the database failed, before giving up."""
_HELD = text(
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() "
    "AND classid = :space AND objid = :id AND objsubid = 2 AND granted"
)


class Held:
    """An incident's lock as its holder sees it."""

    def __init__(self, incident_id: int, connection: Connection | None = None) -> None:
        self.incident_id = incident_id
        self._connection = connection
        self.lost = False
        self._told = False  # a check raised ConnectionLost: the holder knows

    def check(self) -> None:
        """Raise `ConnectionLost` unless this lock is still held (on PostgreSQL, one query on
        the lock's own connection). Call it right before a step that must not run twice."""
        if self._connection is None:
            return
        if not self.lost:
            try:
                keys = {"space": INCIDENT_LOCK_SPACE, "id": self.incident_id}
                held = self._connection.execute(_HELD, keys).scalar_one()
                self._connection.commit()
            except Exception as error:
                if not _connection_gone(error):
                    raise
                held = 0
            self.lost = not held
        if self.lost:
            self._told = True
            raise ConnectionLost(
                f"the lock of incident {self.incident_id} was lost with its database connection"
            )

    def release(self) -> None:
        """Unlock and give the connection back; a lock lost with its connection is free."""
        connection = self._connection
        if connection is None:
            return
        self._connection = None
        try:
            if not self.lost:
                keys = {"space": INCIDENT_LOCK_SPACE, "id": self.incident_id}
                unlocked = connection.execute(
                    text("SELECT pg_advisory_unlock(:space, :id)"), keys
                ).scalar_one()
                connection.commit()
                self.lost = not unlocked
        except Exception as error:
            if not _connection_gone(error):
                raise
            self.lost = True
        finally:
            with suppress(Exception):
                connection.close()
        if self.lost and not self._told:
            log.warning(
                "incident %s: its lock was lost with its database connection before the work "
                "under it ended",
                self.incident_id,
            )


def _connection_gone(error: BaseException) -> bool:
    """The lock's connection failed (or was invalidated by an earlier failure)."""
    return unavailable(error) or isinstance(error, exc.PendingRollbackError)


@contextmanager
def incident_lock(db: Database, incident_id: int) -> Iterator[Held]:
    if db.engine.dialect.name != "postgresql":
        with _STRIPES[incident_id % len(_STRIPES)]:
            yield Held(incident_id)
        return
    held = _take(db, incident_id)
    try:
        yield held
    finally:
        held.release()


def _take(db: Database, incident_id: int) -> Held:
    keys = {"space": INCIDENT_LOCK_SPACE, "id": incident_id}
    wait, failures = 0.01, 0
    while True:
        # Only the holder keeps a pooled connection: a waiter gives its back between tries,
        # so fifty requests for one incident never exhaust the pool waiting for one lock.
        connection = None
        try:
            connection = db.engine.connect()
            taken = connection.execute(
                text("SELECT pg_try_advisory_lock(:space, :id)"), keys
            ).scalar_one()
            connection.commit()
        except Exception as error:
            if connection is not None:
                with suppress(Exception):
                    connection.close()
            failures += 1
            if not unavailable(error) or failures >= TAKE_ATTEMPTS:
                raise
            log.info(
                "incident %s: taking its lock failed (%s); trying again",
                incident_id,
                describe(error),
            )
            time.sleep(0.2 * failures)
            continue
        if taken:
            return Held(incident_id, connection)
        connection.close()
        time.sleep(wait)
        wait = min(wait * 2, 0.2)
