"""Paging in motion: APScheduler jobs for escalation steps, notification retries, reconcile
and hand-offs, on a job store in the application's own database.

`Paging` is what the Slack listeners and the CLI call. A new page runs its first step at
once in the caller's process; each later step is a one-shot job `page-<id>-g<generation>`.
A job whose generation has moved on does nothing when it fires; because every generation
has its own job id, replicas sharing the job store never replace or delete each other's
current job.
Sending happens outside any transaction: notifications are claimed in one, sent, and their
result recorded in another. A reconcile job every minute recreates any job a triggered page
or an unsent notification should have but lacks (a crash between commit and scheduling, a
page made by `firebreak page` in another process) and runs what is overdue.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.base import JobLookupError
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from slack_sdk import WebClient

from bot.config import FileConfig
from bot.db import Database, utcnow
from bot.oncall import paging
from bot.oncall.models import Page
from bot.oncall.notify import Notifier, NotifyError
from bot.oncall.paging import Outcome, Step

log = logging.getLogger(__name__)
RECONCILE_EVERY = timedelta(minutes=1)

_current: Paging | None = None
_current_lock = threading.Lock()


class Paging:
    def __init__(
        self,
        db: Database,
        config: FileConfig,
        notifiers: Mapping[str, Notifier],
        client: WebClient | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.config = config
        self.notifiers = dict(notifiers)
        self.client = client
        self.clock = clock
        self.scheduler: BackgroundScheduler | None = None

    # -- what people do -------------------------------------------------------------

    def page(
        self,
        *,
        target: str,
        message: str,
        created_by: str,
        incident_id: int | None = None,
        dedup_key: str | None = None,
    ) -> Page:
        """Trigger a page and run its first step now; later steps run from the scheduler."""
        with self.db.session_scope() as session:
            page = paging.trigger(
                session,
                self.config,
                target=target,
                message=message,
                created_by=created_by,
                now=self.clock(),
                incident_id=incident_id,
                dedup_key=dedup_key,
            )
            page_id, generation = page.id, page.generation
        self.run_escalation(page_id, generation)
        with self.db.session_scope() as session:
            return paging.get(session, page_id)

    def acknowledge(self, page_id: int, by: str) -> Outcome:
        with self.db.session_scope() as session:
            outcome = paging.acknowledge(session, page_id, by=by, now=self.clock())
        self._unschedule(outcome)
        return outcome

    def resolve(self, page_id: int, by: str) -> Outcome:
        with self.db.session_scope() as session:
            outcome = paging.resolve(session, page_id, by=by, now=self.clock())
        self._unschedule(outcome)
        return outcome

    def escalate_now(self, page_id: int, by: str) -> Outcome:
        with self.db.session_scope() as session:
            outcome = paging.escalate_now(session, page_id, by=by, now=self.clock())
            generation = outcome.page.generation
        if outcome.changed:
            self.run_escalation(page_id, generation)
        return outcome

    # -- job bodies -----------------------------------------------------------------

    def run_escalation(self, page_id: int, generation: int) -> Step | None:
        with self.db.session_scope() as session:
            step = paging.escalate(session, self.config, page_id, generation, self.clock())
        if step is None:
            return None
        if step.next_at is not None:
            self._schedule_escalation(page_id, step.generation, step.next_at)
        if step.exhausted:
            self._announce_exhausted(page_id)
        if step.notifications:
            self.deliver(step.notifications)
        return step

    def deliver(self, ids: list[int] | None = None) -> int:
        """Send due notifications (these ids, or every due one); returns how many went out."""
        with self.db.session_scope() as session:
            claimed = paging.claim_notifications(session, self.config, self.clock(), ids)
        sent = 0
        for notification_id, channel, notification in claimed:
            error, retryable = None, True
            notifier = self.notifiers.get(channel)
            try:
                if notifier is None:
                    raise NotifyError(
                        "this notification channel is not configured", retryable=False
                    )
                notifier.send(notification)
                sent += 1
            except NotifyError as failure:
                error, retryable = str(failure), failure.retryable
            except Exception as failure:  # a notifier bug must not stop the others
                log.exception("notifier crashed")
                error = f"{type(failure).__name__}: {failure}"
            with self.db.session_scope() as session:
                again = paging.finish_notification(
                    session,
                    notification_id,
                    now=self.clock(),
                    error=error,
                    retryable=retryable,
                    max_attempts=self.config.paging.max_attempts,
                )
            if again is not None:
                self._schedule_delivery(notification_id, again)
        return sent

    def reconcile(self) -> None:
        """Recreate missing jobs and run whatever is overdue."""
        now = self.clock()
        with self.db.session_scope() as session:
            pages = paging.due_pages(session, now)
            retries = paging.retry_times(session)
        for page_id, generation, due in pages:
            if due <= now:
                self.run_escalation(page_id, generation)
            else:
                self._schedule_escalation(page_id, generation, due, only_if_missing=True)
        overdue = [nid for nid, at in retries if at <= now]
        if overdue:
            self.deliver(overdue)
        for notification_id, at in retries:
            if at > now:
                self._schedule_delivery(notification_id, at, only_if_missing=True)

    def announce_handoffs(self) -> None:
        if self.client is None or not self.config.schedules:
            return
        from bot.slack.handoffs import announce_handoffs

        announce_handoffs(self.db, self.client, self.config, self.clock())

    def _announce_exhausted(self, page_id: int) -> None:
        channel = self.config.slack.announce_channel
        if self.client is None or channel is None:
            return
        with self.db.session_scope() as session:
            page = paging.get(session, page_id)
            text = (
                f":rotating_light: Nobody acknowledged page {page.reference} ({page.target}): "
                f"{page.message}. Every step and repeat went unanswered."
            )
        try:
            self.client.chat_postMessage(channel=channel, text=text)
        except Exception:
            log.exception("could not announce exhausted page %s", page_id)

    # -- the scheduler --------------------------------------------------------------

    def start(self) -> None:
        """Run jobs in this process (one per process; `serve` calls this)."""
        global _current
        with _current_lock:
            _current = self
        scheduler = BackgroundScheduler(
            jobstores={
                "default": SQLAlchemyJobStore(engine=self.db.engine, tablename="apscheduler_jobs")
            },
            executors={"default": ThreadPoolExecutor(8)},
            # Late jobs still run after a restart, once: no grace limit, coalesced.
            job_defaults={"coalesce": True, "misfire_grace_time": None, "max_instances": 1},
            timezone=UTC,
        )
        scheduler.start()
        self.scheduler = scheduler
        every = int(RECONCILE_EVERY.total_seconds())
        scheduler.add_job(
            reconcile_job,
            "interval",
            seconds=every,
            id="reconcile",
            replace_existing=True,
            next_run_time=datetime.now(UTC),
        )
        scheduler.add_job(
            handoff_job, "interval", seconds=every, id="handoffs", replace_existing=True
        )

    def shutdown(self) -> None:
        global _current
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=True)
        self.scheduler = None
        with _current_lock:
            if _current is self:
                _current = None

    def _running(self) -> BackgroundScheduler | None:
        scheduler = self.scheduler
        return scheduler if scheduler is not None and scheduler.running else None

    def _schedule_escalation(
        self, page_id: int, generation: int, at: datetime, *, only_if_missing: bool = False
    ) -> None:
        job_id = f"page-{page_id}-g{generation}"
        self._schedule_once(run_escalation_job, job_id, at, [page_id, generation], only_if_missing)

    def _schedule_delivery(
        self, notification_id: int, at: datetime, *, only_if_missing: bool = False
    ) -> None:
        job_id = f"notify-{notification_id}"
        self._schedule_once(deliver_job, job_id, at, [notification_id], only_if_missing)

    def _schedule_once(
        self,
        job: Callable[..., None],
        job_id: str,
        at: datetime,
        args: list[int],
        only_if_missing: bool,
    ) -> None:
        """A one-shot job at `at`; without a running scheduler here, reconcile elsewhere runs it."""
        scheduler = self._running()
        if scheduler is None:
            return
        if only_if_missing and scheduler.get_job(job_id) is not None:
            return
        scheduler.add_job(job, "date", run_date=at, args=args, id=job_id, replace_existing=True)

    def _unschedule(self, outcome: Outcome) -> None:
        """Tidy away the job of the generation this change made stale (it would do nothing)."""
        scheduler = self._running()
        if scheduler is None or not outcome.changed:
            return
        job_id = f"page-{outcome.page.id}-g{outcome.page.generation - 1}"
        with contextlib.suppress(JobLookupError):  # it already ran, or never existed here
            scheduler.remove_job(job_id)


# Jobs are stored by reference, so they are module functions that find this process's
# Paging; a job loaded before `start()` finds none and is left for reconcile.


def _runtime() -> Paging | None:
    with _current_lock:
        return _current


def run_escalation_job(page_id: int, generation: int) -> None:
    runtime = _runtime()
    if runtime is not None:
        runtime.run_escalation(page_id, generation)


def deliver_job(notification_id: int) -> None:
    runtime = _runtime()
    if runtime is not None:
        runtime.deliver([notification_id])


def reconcile_job() -> None:
    runtime = _runtime()
    if runtime is not None:
        runtime.reconcile()


def handoff_job() -> None:
    runtime = _runtime()
    if runtime is not None:
        runtime.announce_handoffs()
