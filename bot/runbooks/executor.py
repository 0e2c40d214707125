"""The run executor: an approved run's steps on its hosts, bounded, cancellable, recorded.

`Executor` owns its thread pools (never the pool that answers Slack): one small pool of run
coordinators and one pool of host workers (`max_workers`, shared by every run). A run:

1. is claimed (approved -> running, compare-and-set: whoever wins runs it);
2. starts hosts in plan order, at most `plan.concurrency` at once; once `plan.max_failures`
   hosts have failed (at least one), no new host starts and the rest are `skipped`;
3. on each host: one connection, the steps in order (`ok_exit_codes`, `on_failure`: abort
   stops the host, continue goes on, rollback runs the rollback steps there and stops), the
   connection closed in `finally`;
4. beats its heartbeat every `heartbeat` seconds; the beat also reads the run's row, so a
   cancel pressed on another replica (or the run swept as interrupted) stops it: no new
   steps, running ones killed by the transport;
5. always ends in a final recorded state: succeeded only when every host succeeded,
   cancelled when cancelled, else failed (a crash of the executor itself ends it failed; a
   crash of the process is found by the sweep job and ends it interrupted).

Output is redacted and capped before it is stored or shown (`bot.runbooks.output`).
Observers are told as things happen; an observer that raises is logged and ignored.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bot import logs
from bot.clock import system_now
from bot.db import Database
from bot.runbooks import records, runs
from bot.runbooks.output import HostOutput, compile_redactions
from bot.runbooks.plan import Host, Plan, PlannedStep
from bot.runbooks.records import RunbookRun, RunbookRunHost
from bot.runbooks.transport import (
    CommandResult,
    Connection,
    HostError,
    HostKeyRejected,
    Stream,
    Transport,
)
from bot.timeline import BOT

log = logging.getLogger(__name__)
security = logging.getLogger("firebreak.security")
FAILURES = frozenset(
    {records.HOST_FAILED, records.TIMED_OUT, records.HOST_KEY, records.UNREACHABLE, records.AUTH}
)


@dataclass(frozen=True)
class StepResult:
    step: str
    exit_code: int | None
    duration: float
    timed_out: bool
    outcome: str  # ok | failed | timed_out | cancelled
    rollback: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "exit_code": self.exit_code,
            "duration": round(self.duration, 3),
            "timed_out": self.timed_out,
            "outcome": self.outcome,
            "rollback": self.rollback,
        }


@dataclass(frozen=True)
class HostResult:
    host: str
    status: str  # one of records.HOST_STATUSES
    fingerprint: str | None
    steps: tuple[StepResult, ...]
    error: str | None
    duration: float
    output_truncated: bool = False


@dataclass(frozen=True)
class RunSummary:
    run_id: int
    status: str
    hosts: tuple[HostResult, ...]  # plan order; hosts never started included

    @property
    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for host in self.hosts:
            counts[host.status] = counts.get(host.status, 0) + 1
        return counts


class RunObserver(Protocol):
    """Who watches a run: the terminal streams it, Slack edits a thread message. Calls come
    one at a time (the executor serialises them) from the executor's threads."""

    def host_started(self, host: str) -> None: ...

    def output(self, host: str, stream: Stream, text: str) -> None:
        """Redacted text, a line at a time (or a step's last partial line)."""
        ...

    def host_finished(self, result: HostResult) -> None: ...

    def run_finished(self, summary: RunSummary) -> None: ...


class Quiet:
    """An observer that watches nothing (a base for observers that want a few calls)."""

    def host_started(self, host: str) -> None:
        pass

    def output(self, host: str, stream: Stream, text: str) -> None:
        pass

    def host_finished(self, result: HostResult) -> None:
        pass

    def run_finished(self, summary: RunSummary) -> None:
        pass


class _Told:
    """Calls an observer one at a time; its exceptions are logged, never raised."""

    def __init__(self, observer: RunObserver, run_id: int) -> None:
        self._observer = observer
        self._run_id = run_id
        self._lock = threading.Lock()

    def __call__(self, method: str, *args: Any) -> None:
        with self._lock:
            try:
                getattr(self._observer, method)(*args)
            except Exception:
                log.exception("runbook run %d: the observer failed in %s", self._run_id, method)


@dataclass
class _Run:
    id: int
    plan: Plan
    incident_id: int | None
    cancelled: threading.Event
    told: _Told
    host_ids: dict[str, int]


class Executor:
    def __init__(
        self,
        db: Database,
        transport_factory: Callable[[], Transport],
        max_workers: int = 20,
        *,
        max_runs: int = 4,
        clock: Callable[[], datetime] = system_now,
        heartbeat: float = 5.0,
        connect_timeout: float = 10.0,
    ) -> None:
        self.db = db
        self.transport_factory = transport_factory
        self.clock = clock
        self.heartbeat = heartbeat
        self.connect_timeout = connect_timeout
        self._coordinators = ThreadPoolExecutor(max_runs, thread_name_prefix="firebreak-run")
        self._workers = ThreadPoolExecutor(max_workers, thread_name_prefix="firebreak-run-host")
        self._cancels: dict[int, threading.Event] = {}
        self._lock = threading.Lock()

    # -- the API --------------------------------------------------------------------

    def start(self, run_id: int, observer: RunObserver | None = None) -> Future[RunSummary]:
        """Claim the approved run (`RunError` if it is not approved, or already claimed) and
        run it in the background; the future gives its summary."""
        with self.db.session_scope() as session:
            run = runs.claim(session, run_id, self.clock())
            plan = runs.plan_of(run)
            host_ids = {host.name: host.id for host in runs.hosts(session, run_id)}
            incident_id = run.incident_id
        cancelled = threading.Event()
        with self._lock:
            self._cancels[run_id] = cancelled
        told = _Told(observer or Quiet(), run_id)
        state = _Run(run_id, plan, incident_id, cancelled, told, host_ids)
        with logs.bind(run=run_id, incident=incident_id):  # the run's log lines carry them
            return self._coordinators.submit(logs.in_context(self._run), state)

    def execute(self, run_id: int, observer: RunObserver | None = None) -> RunSummary:
        """`start`, then wait for the end (the terminal's way)."""
        return self.start(run_id, observer).result()

    def cancel(self, run_id: int) -> bool:
        """Stop a run this executor is running now: no new steps, running ones killed.
        (`bot.runbooks.runs.cancel` records a cancel for whichever replica runs it.)"""
        with self._lock:
            event = self._cancels.get(run_id)
        if event is None:
            return False
        event.set()
        return True

    def close(self, *, cancel: bool = True) -> None:
        """Shut the pools down (cancelling what runs unless told not to) and wait."""
        if cancel:
            with self._lock:
                for event in self._cancels.values():
                    event.set()
        self._coordinators.shutdown(wait=True)
        self._workers.shutdown(wait=True)

    # -- a run ----------------------------------------------------------------------

    def _run(self, run: _Run) -> RunSummary:
        results: dict[str, HostResult] = {}
        failure: str | None = None
        try:
            transport = self.transport_factory()
            self._hosts(run, transport, results)
        except Exception as error:
            log.exception("runbook run %d: the executor failed", run.id)
            run.cancelled.set()
            failure = f"the executor failed: {type(error).__name__}: {error}"
        finally:
            with self._lock:
                self._cancels.pop(run.id, None)
        summary = self._finish(run, results, failure)
        run.told("run_finished", summary)
        return summary

    def _hosts(self, run: _Run, transport: Transport, results: dict[str, HostResult]) -> None:
        plan = run.plan
        pending = deque(plan.hosts)
        active: dict[Future[HostResult], str] = {}
        limit = max(plan.max_failures, 1)
        failed = 0
        last_beat = time.monotonic()
        while pending or active:
            while (
                pending
                and len(active) < max(plan.concurrency, 1)
                and failed < limit
                and not run.cancelled.is_set()
            ):
                host = pending.popleft()
                work = logs.in_context(self._host)
                active[self._workers.submit(work, run, transport, host)] = host.name
            if not active:
                break
            done, _ = wait(list(active), timeout=self.heartbeat, return_when=FIRST_COMPLETED)
            for future in done:
                active.pop(future)
                result = future.result()  # `_host` catches everything
                results[result.host] = result
                failed += result.status in FAILURES
            if time.monotonic() - last_beat >= self.heartbeat:
                self._beat(run)
                last_beat = time.monotonic()

    def _beat(self, run: _Run) -> None:
        """Say the run is alive; notice a cancel recorded anywhere (or the run swept)."""
        try:
            with self.db.session_scope() as session:
                session.execute(
                    update(RunbookRun)
                    .where(RunbookRun.id == run.id, RunbookRun.status == records.RUNNING)
                    .values(heartbeat_at=self.clock())
                    .execution_options(synchronize_session=False)
                )
                row = session.execute(
                    select(RunbookRun.status, RunbookRun.cancel_requested_at).where(
                        RunbookRun.id == run.id
                    )
                ).one()
        except Exception:
            log.warning("runbook run %d: could not beat its heartbeat", run.id, exc_info=True)
            return
        if row.status != records.RUNNING or row.cancel_requested_at is not None:
            run.cancelled.set()

    def _finish(self, run: _Run, results: dict[str, HostResult], failure: str | None) -> RunSummary:
        cancelled = run.cancelled.is_set()
        left = records.HOST_CANCELLED if cancelled else records.SKIPPED
        hosts = tuple(
            results.get(host.name) or HostResult(host.name, left, None, (), failure, 0.0)
            for host in run.plan.hosts
        )
        if all(host.status == records.HOST_SUCCEEDED for host in hosts) and failure is None:
            status = records.SUCCEEDED
        elif cancelled and failure is None:
            status = records.CANCELLED
        else:
            status = records.FAILED
        summary = RunSummary(run.id, status, hosts)
        now = self.clock()
        with self.db.session_scope() as session:
            row = runs.get(session, run.id, lock=True)
            for stored in runs.hosts(session, run.id):
                if stored.status in records.HOST_UNFINISHED:
                    stored.status = left
                    stored.finished_at = now
                    stored.error = stored.error or failure
            if row.status != records.RUNNING:
                log.warning(
                    "runbook run %d ended while marked %s; its host results are stored",
                    run.id,
                    row.status,
                )
                return RunSummary(run.id, row.status, hosts)
            row.status = status
            row.finished_at = now
            row.heartbeat_at = now
            data = {"outcome": status, "counts": summary.counts, "error": failure}
            runs.note(session, row, "runbook_finished", actor=BOT, now=now, data=data)
        return summary

    # -- a host ---------------------------------------------------------------------

    def _host(self, run: _Run, transport: Transport, host: Host) -> HostResult:
        began = time.monotonic()
        try:
            return self._host_steps(run, transport, host, began)
        except Exception as error:  # a bug: the host fails, the run goes on
            log.exception("runbook run %d: host %s failed unexpectedly", run.id, host.name)
            result = HostResult(
                host.name,
                records.HOST_FAILED,
                None,
                (),
                f"{type(error).__name__}: {error}",
                time.monotonic() - began,
            )
            try:
                self._host_done(run, result, None)
            except Exception:
                log.exception("runbook run %d: could not record host %s", run.id, host.name)
            return result

    def _host_steps(self, run: _Run, transport: Transport, host: Host, began: float) -> HostResult:
        if run.cancelled.is_set():
            result = HostResult(host.name, records.HOST_CANCELLED, None, (), None, 0.0)
            self._host_done(run, result, None)
            return result
        self._host_update(run, host.name, status=records.HOST_RUNNING, started_at=self.clock())
        run.told("host_started", host.name)
        output = HostOutput(
            compile_redactions(run.plan.redact),
            run.plan.max_output_bytes,
            lambda stream, text: run.told("output", host.name, stream, text),
        )
        try:
            connection = transport.connect(host, timeout=self.connect_timeout)
        except HostKeyRejected as rejected:
            return self._host_key_rejected(run, host, rejected, began)
        except HostError as error:
            status = error.kind if error.kind in records.HOST_STATUSES else records.UNREACHABLE
            result = HostResult(host.name, status, None, (), error.detail, time.monotonic() - began)
            self._host_done(run, result, output)
            return result
        try:
            fingerprint = connection.host_key_fingerprint
            status, error_text, steps = self._steps(run, connection, host, output)
        finally:
            try:
                connection.close()
            except Exception:
                log.warning("runbook run %d: closing %s failed", run.id, host.name, exc_info=True)
        result = HostResult(
            host.name,
            status,
            fingerprint,
            tuple(steps),
            error_text,
            time.monotonic() - began,
            output.truncated,
        )
        self._host_done(run, result, output)
        return result

    def _steps(
        self, run: _Run, connection: Connection, host: Host, output: HostOutput
    ) -> tuple[str, str | None, list[StepResult]]:
        status = records.HOST_SUCCEEDED
        done: list[StepResult] = []
        for step in run.plan.steps:
            if run.cancelled.is_set():
                return records.HOST_CANCELLED, None, done
            try:
                result = self._step(run, connection, host, step, output, rollback=False)
            except HostError as lost:
                return records.UNREACHABLE, lost.detail, done
            done.append(result)
            if result.outcome == "cancelled":
                return records.HOST_CANCELLED, None, done
            if result.outcome == "ok":
                continue
            if status == records.HOST_SUCCEEDED:
                status = records.TIMED_OUT if result.timed_out else records.HOST_FAILED
            if step.on_failure == "continue":
                continue
            if step.on_failure == "rollback":
                for undo in run.plan.rollback:
                    if run.cancelled.is_set():
                        break
                    try:
                        done.append(self._step(run, connection, host, undo, output, rollback=True))
                    except HostError as lost:
                        return status, f"rollback: {lost.detail}", done
            break
        return status, None, done

    def _step(
        self,
        run: _Run,
        connection: Connection,
        host: Host,
        step: PlannedStep,
        output: HostOutput,
        *,
        rollback: bool,
    ) -> StepResult:
        ran: CommandResult = connection.run(
            step.argv,
            timeout=step.timeout,
            on_output=output.feed,
            cancelled=run.cancelled,
            max_bytes=run.plan.max_output_bytes,
        )
        output.flush()
        if ran.cancelled:
            outcome = "cancelled"
        elif ran.timed_out:
            outcome = "timed_out"
        elif ran.exit_code is not None and ran.exit_code in step.ok_exit_codes:
            outcome = "ok"
        else:
            outcome = "failed"
        result = StepResult(step.id, ran.exit_code, ran.duration, ran.timed_out, outcome, rollback)
        truncated = output.truncated or ran.output_truncated
        if ran.output_truncated:
            output.truncated = True
        now = self.clock()
        with self.db.session_scope() as session:
            row = session.get(RunbookRunHost, run.host_ids[host.name])
            assert row is not None
            row.steps = [*row.steps, result.as_json()]
            row.output = output.text
            row.output_truncated = truncated
            stored = runs.get(session, run.id)
            data = {"host": host.name, **result.as_json()}
            runs.note(session, stored, "runbook_step_finished", actor=BOT, now=now, data=data)
        return result

    def _host_key_rejected(
        self, run: _Run, host: Host, rejected: HostKeyRejected, began: float
    ) -> HostResult:
        security.warning(
            "runbook run %d: host key of %s (%s:%d) rejected, offered %s: %s; nothing ran there",
            run.id,
            host.name,
            host.address,
            host.port,
            rejected.fingerprint or "an unknown key",
            rejected.detail,
        )
        result = HostResult(
            host.name,
            records.HOST_KEY,
            rejected.fingerprint,
            (),
            f"host key rejected: {rejected.detail}",
            time.monotonic() - began,
        )
        now = self.clock()
        with self.db.session_scope() as session:
            stored = runs.get(session, run.id)
            data = {
                "host": host.name,
                "address": host.address,
                "port": host.port,
                "fingerprint": rejected.fingerprint,
                "detail": rejected.detail,
            }
            runs.note(session, stored, "runbook_host_key_rejected", actor=BOT, now=now, data=data)
            self._record_host(session, run, result, None, now)
        run.told("host_finished", result)
        return result

    def _host_done(self, run: _Run, result: HostResult, output: HostOutput | None) -> None:
        with self.db.session_scope() as session:
            self._record_host(session, run, result, output, self.clock())
        run.told("host_finished", result)

    def _record_host(
        self,
        session: Session,
        run: _Run,
        result: HostResult,
        output: HostOutput | None,
        now: datetime,
    ) -> None:
        row = session.get(RunbookRunHost, run.host_ids[result.host])
        assert row is not None
        row.status = result.status
        row.host_key_fingerprint = result.fingerprint
        row.error = result.error
        row.finished_at = now
        if output is not None:
            row.output = output.text
            row.output_truncated = output.truncated
        stored = runs.get(session, run.id)
        data = {
            "host": result.host,
            "outcome": result.status,
            "fingerprint": result.fingerprint,
            "duration": round(result.duration, 3),
            "error": result.error,
        }
        runs.note(session, stored, "runbook_host_finished", actor=BOT, now=now, data=data)

    def _host_update(self, run: _Run, name: str, **values: Any) -> None:
        with self.db.session_scope() as session:
            session.execute(
                update(RunbookRunHost)
                .where(RunbookRunHost.id == run.host_ids[name])
                .values(**values)
                .execution_options(synchronize_session=False)
            )
