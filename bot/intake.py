"""Alerts in: one transaction through `bot.alerts.ingest`, then what it set in motion.

`receive` commits the batch (alerts, group, page with its first step, incident, outbox
items) before it returns, so the webhook is answered 2xx only for what is durably stored.
The slow part, sending the page's notifications, setting up a new incident's channel and
delivering the channel posts, runs after the commit on the worker pool, so a burst of
webhooks is answered in milliseconds. Whatever that part cannot finish (a crash, a Slack
outage) the scheduler leader's reconcile pass finishes: notifications and outbox items are
rows, and an incident without `set_up_at` is set up again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy.orm import Session

from bot import logs
from bot.alerts.ingest import Ingested, Policy, ingest
from bot.alerts.model import Batch
from bot.clock import Clock
from bot.config import FileConfig
from bot.db import Database, background_writes, urgent_writes
from bot.jobs import JobRunner
from bot.metrics import Metrics
from bot.oncall.paging import Step
from bot.timeline import BOT
from bot.workers import WorkerPool

log = logging.getLogger(__name__)


class AlertPosts(Protocol):
    """What Slack must hear about a batch (`bot.slack.alerts` through the outbox)."""

    def enqueue(self, session: Session, result: Ingested) -> list[int]: ...

    def deliver(self, queued: list[int]) -> None: ...

    def set_up(self, incident_id: int, requester: str) -> None: ...


@dataclass(frozen=True)
class Received:
    """What the sender is told: the batch's outcome, committed."""

    result: Ingested
    dedup_key: str | None


class AlertIntake:
    def __init__(
        self,
        db: Database,
        config: FileConfig,
        jobs: JobRunner,
        workers: WorkerPool,
        clock: Clock,
        metrics: Metrics,
        posts: AlertPosts | None = None,
    ) -> None:
        self.db = db
        self.policy = Policy(config.alert_routes, config.oncall, config.incidents)
        self.jobs = jobs
        self.workers = workers
        self.clock = clock
        self.metrics = metrics
        self.posts = posts

    def receive(self, batch: Batch) -> Received:
        """Store the batch (one transaction), then start its effects on the worker pool.

        Raises what the database raises when it is unavailable: the caller answers 503 and
        the sender retries; nothing was committed.
        """
        with self.db.session_scope() as session:
            result = ingest(session, self.policy, batch, now=self.clock())
            queued = self.posts.enqueue(session, result) if self.posts is not None else []
            steps = self._steps(result)
            effects = [(step, self.jobs.effects(session, step)) for step in steps]
        self._count(batch, result)
        page = result.triggered.page.id if result.triggered is not None else None
        # The tasks below log with the batch's ids (the pool copies them).
        with logs.bind(alert=result.group_id, incident=result.incident_id, page=page):
            # Pages first, as a task of their own: a DM never waits behind a channel setup.
            if effects:
                self.workers.submit_page(self._notify, effects)
            if queued or result.incident_created:
                self.workers.submit(self._tell_slack, result, queued)
        return Received(result, batch.dedup_key)

    @staticmethod
    def _steps(result: Ingested) -> list[Step]:
        steps = [outcome.step for outcome in result.outcomes if outcome.step is not None]
        if result.triggered is not None and result.triggered.step is not None:
            steps.insert(0, result.triggered.step)
        return steps

    def _notify(self, effects: list[tuple[Step, list[int]]]) -> None:
        # A person waits on these: their transactions (claim the notification, record it
        # sent) go ahead of the storm's other writers queued in this process.
        with urgent_writes():
            for step, step_queued in effects:
                self.jobs.after_commit(step, step_queued)

    def _tell_slack(self, result: Ingested, queued: list[int]) -> None:
        """Set up a new incident's channel, then deliver the posts the batch queued.

        Its transactions let the webhooks waiting for the database go first (`bot.db`'s
        write queue, SQLite): this work is not what a webhook's answer waits for."""
        with background_writes():
            self._set_up_and_post(result, queued)

    def _set_up_and_post(self, result: Ingested, queued: list[int]) -> None:
        if self.posts is None:
            return
        if result.incident_created and result.incident_id is not None:
            try:
                self.posts.set_up(result.incident_id, BOT)
            except Exception as error:  # the reconcile pass finishes the setup
                log.warning("INC-%s: channel setup unfinished: %s", result.incident_id, error)
        if queued:
            self.posts.deliver(queued)

    def _count(self, batch: Batch, result: Ingested) -> None:
        received = self.metrics.alerts_received
        if batch.action == "acknowledge":
            received.labels(batch.source, "acknowledge").inc()
            return
        if result.route is None:
            received.labels(batch.source, "unrouted").inc(len(batch.alerts))
            return
        received.labels(batch.source, "new").inc(result.new)
        received.labels(batch.source, "repeat").inc(result.repeated)
        received.labels(batch.source, "resolved").inc(result.resolved)
        if result.suppressed:
            self.metrics.alert_pages_held_back.labels(result.route).inc()
