"""Is this replica ready to serve? One answer for `GET /readyz` and for `/metrics`.

Ready when the database answers, its schema is the latest migration, and, if this replica
should run the scheduler, the scheduler runs. A load balancer takes a replica out on 503;
Prometheus alerts on `firebreak_ready == 0` (see examples/firebreak-alerts.yml).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import text

from bot.db import Database
from bot.migrations import current_revision, head_revision

SchedulerState = Callable[[], tuple[str, bool]]


class Readiness:
    def __init__(self, db: Database, scheduler_state: SchedulerState) -> None:
        self.db = db
        self.scheduler_state = scheduler_state
        self.head = head_revision(db.url)

    def check(self) -> tuple[bool, dict[str, Any]]:
        """(ready, the JSON body): `database` "ok" or the error's class name, `schema` (and
        `expected` when it is not the latest), `scheduler` "leader", "standby" or "off"."""
        scheduler, healthy = self.scheduler_state()
        try:
            with self.db.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
                revision = current_revision(connection)
        except Exception as error:
            failed = type(error).__name__
            return False, {"status": "unavailable", "database": failed, "scheduler": scheduler}
        body: dict[str, Any] = {"database": "ok", "schema": revision, "scheduler": scheduler}
        if revision != self.head:
            return False, {"status": "unavailable", **body, "expected": self.head}
        return healthy, {"status": "ready" if healthy else "unavailable", **body}
