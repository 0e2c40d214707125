"""The job runner: what the scheduler leader runs, rebuilt from the database at takeover.

Only the leader (see `bot.leader`) runs the APScheduler here, with an in-memory job store:
every job is derived from database state, so nothing is lost when a leader dies. Its jobs:

- `escalations`, one job at the earliest time a page falls due for its next step: it runs
  every due step in batches (`escalate_due`), then moves itself to the next due time;
- one delivery job per notification retry, at its next attempt;
- reconcile, every few seconds: recreates any job the rows call for (a page triggered on
  another replica, a job a dead leader held) and runs whatever is overdue, once;
  the passes of other layers run with it (the Slack outbox's unsent posts; the web view's
  sign-in links and sessions that ended a day ago, purged at most every 10 minutes:
  `bot.webview.auth.WebAccess.purge_if_due`);
- hand-offs, every minute;
- runbook runs, every few seconds: approvals past their deadline expire, and runs whose
  executor stopped beating (its process died mid-run) are marked interrupted
  (`bot.runbooks.runs.sweep`);
- postmortem reminders, every minute: follow-ups whose reminder is due are claimed under
  their row lock and their channel post and DM queued in the same transaction
  (`bot.postmortem.followup.claim_due`, sent by `bot.slack.postmortem.SlackReminders`).

A job re-reads its row under a lock and does nothing unless the state and generation still
match (`bot.oncall.paging.escalate`), so a late, repeated or doubled job never pages twice.

Why one job for all escalations rather than one per page: a burst of 1,000 pages falls due
within seconds, and one transaction, one notification claim and one result record per page
(each a turn at SQLite's single writer, or a round trip on PostgreSQL) left escalations
half a minute late on two CPUs. `escalate_due` locks and escalates up to
`ESCALATION_BATCH` due pages in one transaction (each still under its row lock with its
generation checked, each with its own timeline event), claims their notifications in one
more, sends them from `SENDERS` threads at once and records the results in one more
(`deliver`). The profiles are in `benchmarks/REPORT.md` (paging section).

Any replica may deliver the notifications it has just created (`after_commit`): sending is
claimed row by row, so it needs no leader; only *scheduling* does.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor as SendPool
from datetime import UTC, datetime, timedelta
from typing import Protocol

from apscheduler.events import EVENT_JOB_SUBMITTED, JobSubmissionEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy.orm import Session

from bot import logs
from bot.clock import Clock
from bot.db import Database, describe, unavailable, urgent_writes, where
from bot.oncall import paging
from bot.oncall.configuration import OncallConfig
from bot.oncall.handoffs import DueHandoff, due_handoffs
from bot.oncall.models import Page
from bot.oncall.notify import Notification, Notifier, NotifyError
from bot.oncall.paging import Step
from bot.runbooks import runs as runbook_runs

log = logging.getLogger(__name__)
RECONCILE_EVERY = timedelta(seconds=5)
HANDOFFS_EVERY = timedelta(minutes=1)
GRACE = timedelta(seconds=2)
SUPERVISE_EVERY = timedelta(seconds=2)
REMINDERS_EVERY = timedelta(minutes=1)
ESCALATIONS = "escalations"  # the job id of `escalate_due`
# Pages escalated in one transaction: large enough that a burst costs a few transactions,
# small enough that SQLite's writer is never held for long (a /page waits behind it).
ESCALATION_BATCH = 50
# Threads for the `escalations` job alone: one pass at a time runs (`escalate_due`), and a
# second thread lets a run that fires meanwhile start at once, to ask that pass to look again.
ESCALATION_THREADS = 2
# Notifications of one batch sent at once (each a Slack, SMTP or webhook call).
SENDERS = 8
# Batches whose notifications are being sent while the leader escalates the next ones.
DELIVERY_WORKERS = 4
# A page still due right after a pass (a failing page, or one locked by another
# transaction): the next pass waits this long rather than spinning on it.
STUCK_RETRY = timedelta(seconds=1)


def _failed(what: str, error: BaseException) -> None:
    """Log that `what` failed: in one line when the database failed under it (a terminated
    connection, a restart: `bot.db.unavailable`), with the traceback when it is a bug."""
    if unavailable(error):
        log.warning("%s: the database failed at %s (%s)", what, where(error), describe(error))
    else:
        log.error("%s", what, exc_info=error)


def _alive(scheduler: BackgroundScheduler) -> bool:
    thread = getattr(scheduler, "_thread", None)
    return bool(scheduler.running and thread is not None and thread.is_alive())


class JobObserver(Protocol):
    """Who hears how late jobs run (the metrics, `bot.metrics.Metrics`)."""

    def job_started(self, job: str, lag_seconds: float) -> None:
        """The scheduler handed `job` (escalation, delivery, reconcile...) to a worker
        `lag_seconds` after it was due."""
        ...

    def escalation_started(self, lateness_seconds: float) -> None:
        """A scheduled escalation step ran `lateness_seconds` after the page's due time."""
        ...


class Announcer(Protocol):
    """Where the runner reports what people must see (Slack, in `bot.slack.announcer`)."""

    def page_exhausted(self, session: Session, page: Page) -> list[int]:
        """Queue the announcement in the transaction that exhausted the page (outbox ids)."""
        ...

    def send(self, queued: list[int]) -> None:
        """Send what `page_exhausted` queued, after the commit."""
        ...

    def handoffs(self, due: list[DueHandoff]) -> None: ...


class JobRunner:
    def __init__(
        self,
        db: Database,
        config: OncallConfig,
        notifiers: Mapping[str, Notifier],
        clock: Clock,
        announcer: Announcer | None = None,
        reconcilers: Sequence[Callable[[], object]] = (),
        reminders: Callable[[], object] | None = None,
        runbook_stale_after: timedelta = runbook_runs.STALE_AFTER,
    ) -> None:
        self.db = db
        # `runbooks.interrupted_after`: a running run silent this long is swept interrupted.
        self.runbook_stale_after = runbook_stale_after
        self.config = config
        self.notifiers = dict(notifiers)
        self.clock = clock
        self.announcer = announcer
        # More reconcile passes from other layers (the Slack outbox and unfinished setups).
        self.reconcilers = list(reconcilers)
        # The postmortem reminders pass (Slack, in `bot.slack.postmortem.SlackReminders`).
        self.reminders = reminders
        self.observer: JobObserver | None = None
        self.scheduler: BackgroundScheduler | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        # One escalation pass at a time in this process; a call while one runs asks it to
        # go round again (`escalate_due`).
        self._sweeping = threading.Lock()
        self._sweep_again = threading.Event()
        self._wake_lock = threading.Lock()
        # The leader's senders of what escalation passes ran (`_after_batch`), so a pass
        # goes on to the next batch while the last one's DMs are being sent.
        self._deliveries: SendPool | None = None
        self._supervisor: threading.Thread | None = None

    # -- leadership -----------------------------------------------------------------

    def start(self) -> None:
        """Become the scheduler (the leader calls this); jobs are rebuilt by reconcile."""
        with self._lock:
            if self.scheduler is not None:
                return
            scheduler = BackgroundScheduler(
                jobstores={"default": MemoryJobStore()},
                # Escalations run on threads of their own: a person waits on them, and on
                # the shared ones they queued behind a burst's one-shot delivery jobs (each
                # a Slack call) for over a second (benchmarks/REPORT.md, "Paging").
                executors={
                    "default": ThreadPoolExecutor(8),
                    ESCALATIONS: ThreadPoolExecutor(ESCALATION_THREADS),
                },
                # Late jobs still run, once: no grace limit, coalesced.
                job_defaults={"coalesce": True, "misfire_grace_time": None, "max_instances": 1},
                timezone=UTC,
            )
            scheduler.add_listener(self._submitted, EVENT_JOB_SUBMITTED)
            scheduler.start()
            scheduler.add_job(
                self._guarded(self.reconcile),
                "interval",
                seconds=RECONCILE_EVERY.total_seconds(),
                id="reconcile",
                next_run_time=datetime.now(UTC),
            )
            scheduler.add_job(
                self._guarded(self.announce_handoffs),
                "interval",
                seconds=HANDOFFS_EVERY.total_seconds(),
                id="handoffs",
            )
            scheduler.add_job(
                self._guarded(self.sweep_runbook_runs),
                "interval",
                seconds=runbook_runs.sweep_every(self.runbook_stale_after).total_seconds(),
                id="runbook-runs",
            )
            scheduler.add_job(
                self._guarded(self.remind_postmortems),
                "interval",
                seconds=REMINDERS_EVERY.total_seconds(),
                id="postmortem-reminders",
            )
            self.scheduler = scheduler
            if self._deliveries is None:  # kept when the supervisor restarts the scheduler
                self._deliveries = SendPool(DELIVERY_WORKERS, "firebreak-deliver")
            if self._supervisor is None or not self._supervisor.is_alive():
                self._stopping.clear()
                self._supervisor = threading.Thread(
                    target=self._supervise, name="firebreak-scheduler-watch", daemon=True
                )
                self._supervisor.start()
        log.info("scheduler started (this replica leads)")

    def _supervise(self) -> None:
        """Restart the scheduler if its thread died while this replica leads (a crash
        inside APScheduler must not silently stop paging); `/readyz` is 503 meanwhile."""
        while not self._stopping.wait(SUPERVISE_EVERY.total_seconds()):
            with self._lock:
                scheduler = self.scheduler
                if scheduler is None or _alive(scheduler):
                    continue
                self.scheduler = None
            log.error("the scheduler's thread died; starting it again")
            with contextlib.suppress(Exception):
                scheduler.shutdown(wait=False)
            try:
                self.start()
            except Exception:
                log.exception("could not restart the scheduler; retrying")

    def stop(self, wait: bool = True) -> None:
        """Stop scheduling (leadership lost, or shutting down)."""
        self._stopping.set()
        with self._lock:
            scheduler, self.scheduler = self.scheduler, None
            deliveries, self._deliveries = self._deliveries, None
        if scheduler is not None and scheduler.running:
            scheduler.shutdown(wait=wait)
            log.info("scheduler stopped")
        if deliveries is not None:  # what it had not sent yet, reconcile sends (any leader)
            deliveries.shutdown(wait=wait, cancel_futures=not wait)

    @property
    def running(self) -> bool:
        """The scheduler is started and its thread is alive."""
        scheduler = self.scheduler
        return scheduler is not None and _alive(scheduler)

    # -- after a transaction that ran a step ----------------------------------------

    def effects(self, session: Session, step: Step | None) -> list[int]:
        """What a step needs written in its own transaction: an exhausted page's
        announcement (queued in the outbox). Returns what to send after the commit."""
        if step is None or not step.exhausted or self.announcer is None:
            return []
        return self.announcer.page_exhausted(session, paging.get(session, step.page_id))

    def after_commit(self, step: Step | None, queued: Sequence[int] = ()) -> None:
        """Send what a committed step created, and schedule the page's next step."""
        if step is None:
            return
        if step.next_at is not None:
            self._wake(step.next_at)
        if queued and self.announcer is not None:
            try:
                self.announcer.send(list(queued))
            except Exception as error:  # queued: the outbox's reconcile sends it
                _failed(f"could not send the announcement of page {step.page_id}", error)
        if step.notifications:
            self.deliver(step.notifications)

    # -- job bodies -----------------------------------------------------------------

    def run_escalation(
        self, page_id: int, generation: int, due: datetime | None = None
    ) -> Step | None:
        """One page's next step in a transaction of its own (if `generation` is current)."""
        now = self.clock()
        with self.db.session_scope() as session:
            step = paging.escalate(session, self.config, page_id, generation, now)
            queued = self.effects(session, step)
        if step is not None and due is not None and self.observer is not None:
            self.observer.escalation_started((now - due).total_seconds())
        self.after_commit(step, queued)
        return step

    def escalate_due(self) -> int:
        """Run every escalation step that is due, in batches, then set the `escalations`
        job to the next due time; returns how many pages it escalated (or exhausted).

        One pass at a time in this process: called while another pass runs (the job fired
        again, or reconcile), it only asks that pass to look once more, so nothing due is
        missed and nothing runs twice at once (a doubled pass would still page nobody
        twice: every page is escalated under its row lock, generation checked)."""
        ran = 0
        while True:
            self._sweep_again.set()
            if not self._sweeping.acquire(blocking=False):
                return ran
            try:
                # A person waits on these: on SQLite their transactions go ahead of the other
                # writers queued in this process (a burst of /page requests, alert ingest).
                with urgent_writes():
                    while self._sweep_again.is_set():
                        self._sweep_again.clear()
                        ran += self._escalate_batches()
            finally:
                self._sweeping.release()
            if not self._sweep_again.is_set():
                return ran

    def _escalate_batches(self) -> int:
        """Batches until none is full, then the wake-up for the next due step."""
        ran = 0
        while True:
            started = self.clock()
            steps = self._escalate_batch(started)
            ran += sum(1 for step in steps if step is not None)
            if len(steps) < ESCALATION_BATCH or not any(steps):
                break
        with self.db.session_scope() as session:
            upcoming = paging.next_due(session)
        if upcoming is not None:
            # Still due at the time the last batch looked: it failed or another transaction
            # held it; try again shortly rather than at once, over and over.
            self._wake(max(upcoming, started + STUCK_RETRY) if upcoming <= started else upcoming)
        return ran

    def _escalate_batch(self, now: datetime) -> list[Step | None]:
        """Up to ESCALATION_BATCH pages due by `now` escalated in one transaction, then
        their notifications sent; returns their steps (None for a page that failed)."""
        try:
            with self.db.session_scope() as session:
                ran = paging.escalate_due(
                    session, self.config, now, ESCALATION_BATCH, clock=self.clock
                )
                done = [(step, self.effects(session, step)) for step, _, _ in ran]
        except Exception as error:
            if unavailable(error):
                raise
            # A page that cannot be escalated must not hold back the others of its batch:
            # each on its own, the failing one logged (and retried by the next pass).
            _failed("an escalation batch failed; escalating its pages one by one", error)
            return self._escalate_one_by_one(now)
        if self.observer is not None:
            for _, due, at in ran:
                self.observer.escalation_started((at - due).total_seconds())
        self._after_batch(done)
        return [step for step, _ in done]

    def _escalate_one_by_one(self, now: datetime) -> list[Step | None]:
        with self.db.session_scope() as session:
            due = paging.due_now(session, now, ESCALATION_BATCH)
        steps: list[Step | None] = []
        for page_id, generation, at in due:
            try:
                steps.append(self.run_escalation(page_id, generation, at))
            except Exception as single:
                _failed(f"could not escalate page {page_id}", single)
                steps.append(None)
        return steps

    def _after_batch(self, done: Sequence[tuple[Step | None, list[int]]]) -> None:
        """`after_commit` for a batch: one wake-up, then its notifications and announcements
        sent by the leader's delivery workers (here, when there are none), so the next
        escalation never waits for this one's Slack calls."""
        steps = [step for step, _ in done if step is not None]
        upcoming = [step.next_at for step in steps if step.next_at is not None]
        if upcoming:
            self._wake(min(upcoming))
        notifications = [nid for step in steps for nid in step.notifications]
        queued = [item for _, items in done for item in items]
        if not notifications and not queued:
            return
        deliveries = self._deliveries
        if deliveries is not None:
            with contextlib.suppress(RuntimeError):  # shut down meanwhile: send it here
                context = contextvars.copy_context()
                deliveries.submit(context.run, self._send_batch, notifications, queued)
                return
        self._send_batch(notifications, queued)

    def _send_batch(self, notifications: list[int], queued: list[int]) -> None:
        """A batch's DMs (urgent), then its announcements of exhausted pages."""
        try:
            if notifications:
                with urgent_writes():
                    self.deliver(notifications)
        except Exception as error:  # claimed rows are retried once their lease ends
            _failed("could not send the notifications of an escalation batch", error)
        if queued and self.announcer is not None:
            try:
                self.announcer.send(queued)
            except Exception as error:  # queued: the outbox's reconcile sends it
                _failed("could not send the announcements of exhausted pages", error)

    def deliver(self, ids: list[int] | None = None) -> int:
        """Send due notifications (these ids, or every due one); returns how many went out."""
        with self.db.session_scope() as session:
            claimed = paging.claim_notifications(session, self.config, self.clock(), ids)
        if not claimed:
            return 0
        in_flight = [notification_id for notification_id, _, _ in claimed]
        with self._leases_renewed(in_flight):
            if len(claimed) == 1:
                results = [self._attempt(claimed[0])]
            else:  # each send waits on the network: several at once
                with SendPool(min(SENDERS, len(claimed)), "firebreak-send") as pool:
                    context = contextvars.copy_context()
                    attempts = [
                        pool.submit(context.copy().run, self._attempt, item) for item in claimed
                    ]
                    results = [attempt.result() for attempt in attempts]
            self._finish(results)
            in_flight.clear()
        return sum(1 for attempt in results if attempt.error is None)

    def _attempt(self, claimed: tuple[int, str, Notification]) -> paging.Attempt:
        """One send: what it did and when it ended. A failed attempt is logged (with the
        page bound) as well as recorded: an operator reading the logs sees a person who
        could not be reached without querying the database."""
        notification_id, channel, notification = claimed
        with logs.bind(page=notification.page_id):
            error, retryable = self._send(channel, notification)
            if error is not None:
                log.warning(
                    "%s: could not reach %s by %s at step %d (%s): %s",
                    notification.reference,
                    notification.person,
                    channel,
                    notification.step,
                    "will retry" if retryable else "not retryable",
                    error,
                )
        return paging.Attempt(notification_id, error, retryable, self.clock())

    def _send(self, channel: str, notification: Notification) -> tuple[str | None, bool]:
        """(error, retryable) of one attempt; (None, True) when it was delivered."""
        notifier = self.notifiers.get(channel)
        try:
            if notifier is None:
                raise NotifyError("this notification channel is not configured", retryable=False)
            notifier.send(notification)
        except NotifyError as failure:
            return str(failure), failure.retryable
        except Exception as failure:  # a notifier bug must not stop the others
            log.exception("notifier %s crashed", channel)
            return f"{type(failure).__name__}: {failure}", True
        return None, True

    def _finish(self, attempts: list[paging.Attempt]) -> None:
        """Record what the attempts did, in one transaction, each at the time it ended.
        Retried while the database fails: were the record lost with a dropped connection,
        the notifications would stay "sending" and go out again once their lease ran out
        (`finish_notifications` acts only on rows still "sending", so a retry after a
        COMMIT that did commit changes nothing)."""
        again = self.db.retrying(
            lambda session: paging.finish_notifications(
                session, attempts, max_attempts=self.config.paging.max_attempts
            )
        )
        for notification_id, at in again.items():
            if at is not None:
                self._schedule_delivery(notification_id, at)

    @contextlib.contextmanager
    def _leases_renewed(self, in_flight: list[int]) -> Iterator[None]:
        """Renew the leases of `in_flight` (a list the caller shrinks) every third of a lease,
        so only a sender that died lets them expire; see `bot.oncall.paging.LEASE`."""
        done = threading.Event()

        def renew() -> None:
            while not done.wait(paging.LEASE.total_seconds() / 3):
                try:
                    with self.db.session_scope() as session:
                        paging.renew_leases(session, list(in_flight), self.clock())
                except Exception as error:
                    _failed("could not renew the leases of notifications being sent", error)

        renewer = threading.Thread(target=renew, name="firebreak-lease", daemon=True)
        if in_flight:
            renewer.start()
        try:
            yield
        finally:
            done.set()
            if renewer.is_alive():
                renewer.join()

    def reconcile(self) -> None:
        """Recreate missing jobs and run whatever is overdue."""
        now = self.clock()
        with self.db.session_scope() as session:
            upcoming = paging.next_due(session)
            retries = paging.retry_times(session)
        if upcoming is not None and upcoming <= now:
            self.escalate_due()
        elif upcoming is not None:
            self._wake(upcoming)
        # A notification that has just become due is being sent by whoever made or leased
        # it; reconcile is the safety net, so it steps in only once it is GRACE overdue.
        overdue = [nid for nid, at in retries if at <= now - GRACE]
        if overdue:
            self.deliver(overdue)
        for notification_id, at in retries:
            if at > now - GRACE:
                self._schedule_delivery(notification_id, at + GRACE, only_if_missing=True)
        for reconcile in self.reconcilers:
            try:
                reconcile()
            except Exception as error:
                _failed("a reconcile pass failed; the next one retries", error)

    def announce_handoffs(self) -> None:
        if self.announcer is None or not self.config.schedules:
            return
        with self.db.session_scope() as session:
            due = due_handoffs(session, self.config, self.clock())
        if due:
            self.announcer.handoffs(due)

    def sweep_runbook_runs(self) -> dict[str, list[int]]:
        """Expire runbook approvals past their deadline and mark runs interrupted whose
        executor stopped beating; each run is re-read under its row lock, so a run that
        beat or finished meanwhile is left alone."""
        with self.db.session_scope() as session:
            swept = runbook_runs.sweep(session, self.clock(), stale_after=self.runbook_stale_after)
        for run_id in swept["interrupted"]:
            log.warning("runbook run R-%d stopped beating mid-run: marked interrupted", run_id)
        return swept

    def remind_postmortems(self) -> object:
        """Send the postmortem reminders that are due (each claimed once, under its row
        lock, so a restarted or doubled run never repeats one)."""
        if self.reminders is None:
            return None
        return self.reminders()

    # -- scheduling -----------------------------------------------------------------

    def _wake(self, at: datetime) -> None:
        """Have the `escalations` job run at `at`, unless it is set to run earlier already
        (it moves itself on to the next due time after each pass). Only on the leader; a
        replica that does not lead leaves it to the leader's reconcile pass."""
        scheduler = self.scheduler
        if scheduler is None or not scheduler.running:
            return
        with self._wake_lock:
            job = scheduler.get_job(ESCALATIONS)
            if job is not None and job.next_run_time is not None and job.next_run_time <= at:
                return
            scheduler.add_job(
                self._guarded(self.escalate_due),
                "date",
                run_date=at,
                id=ESCALATIONS,
                executor=ESCALATIONS,
                replace_existing=True,
                # A pass still running when the job fires again: the new run only asks it to
                # look once more (`escalate_due`), so let it start instead of being skipped.
                max_instances=4,
            )

    def _schedule_delivery(
        self, notification_id: int, at: datetime, *, only_if_missing: bool = False
    ) -> None:
        job_id = f"notify-{notification_id}"
        self._schedule_once(lambda: self.deliver([notification_id]), job_id, at, only_if_missing)

    def _schedule_once(
        self, job: Callable[[], object], job_id: str, at: datetime, only_if_missing: bool
    ) -> None:
        """A one-shot job at `at` if this replica leads; otherwise the leader's reconcile
        finds the row within `RECONCILE_EVERY` and schedules it there."""
        scheduler = self.scheduler
        if scheduler is None or not scheduler.running:
            return
        if only_if_missing and scheduler.get_job(job_id) is not None:
            return
        scheduler.add_job(self._guarded(job), "date", run_date=at, id=job_id, replace_existing=True)

    def _submitted(self, event: JobSubmissionEvent) -> None:
        """Job lag for the metrics: how long after its due time the scheduler handed a job
        to its workers (one-shot jobs by kind, never by page or notification id)."""
        if self.observer is None or not event.scheduled_run_times:
            return
        job = event.job_id
        kind = "escalation" if job == ESCALATIONS else job
        kind = "delivery" if kind.startswith("notify-") else kind
        lag = datetime.now(UTC) - max(event.scheduled_run_times)
        self.observer.job_started(kind, lag.total_seconds())

    @staticmethod
    def _guarded(job: Callable[[], object]) -> Callable[[], None]:
        """A job that raises is logged; the rows it left are retried by the next reconcile."""

        def run() -> None:
            try:
                job()
            except Exception as error:
                _failed("scheduler job failed; reconcile will retry it", error)

        return run
