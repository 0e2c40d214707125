"""What `/runbook` needs beyond a listener: the catalogue, the SSH check, the executor, and
the thread reply that shows a run's progress.

`RunbookRunner` builds the `Executor` (its own pools, never the pool that answers Slack)
and its SSH transport lazily, on the first run: a Firebreak without runbooks never reads
FIREBREAK_SSH_KEY. The transport is built from the environment for every run, so a new
pinned host key or a rotated identity applies without a restart.

`ThreadProgress` watches one run for the executor and keeps ONE reply in the plan
message's thread up to date: the executor's calls only change its state; its own thread
edits the reply (chat.update) at most every `interval` seconds, and once more at the end,
then refreshes the plan message's status line. It ends by itself when the run ends.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.clock import Clock
from bot.config import ConfigError, Settings
from bot.db import Database
from bot.runbooks import runs
from bot.runbooks.catalogue import Catalogue, load_catalogue
from bot.runbooks.executor import Executor, HostResult, RunSummary
from bot.runbooks.transport import Stream, Transport
from bot.slack import runbook_blocks
from bot.slack.channels import slack_error

log = logging.getLogger(__name__)

INTERVAL = 1.5  # seconds between edits of the progress reply
MAX_OUTPUT = 2800  # characters of the latest output shown in the reply


class RunbookRunner:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        client: WebClient,
        clock: Clock,
        *,
        environ: Mapping[str, str] = os.environ,
        interval: float = INTERVAL,
    ) -> None:
        self.settings = settings
        self.db = db
        self.client = client
        self.clock = clock
        self.environ = environ
        self.interval = interval
        self._executor: Executor | None = None
        self._lock = threading.Lock()
        self._refresh_lock = threading.Lock()  # reads and edits in turn: the last edit is latest
        self._progress: set[ThreadProgress] = set()
        self._closed = False

    def catalogue(self) -> Catalogue:
        """The catalogue as it is now on disk; ConfigError lists its problems."""
        return load_catalogue(
            self.settings.env.runbooks_path, required="FIREBREAK_RUNBOOKS" in self.environ
        )

    def transport(self) -> Transport:
        """The SSH transport from FIREBREAK_SSH_KEY and FIREBREAK_KNOWN_HOSTS; ConfigError
        naming the variable when either is missing or unusable."""
        from integrations.ssh import SshTransport

        return SshTransport.from_environment(self.environ)

    def ssh_problems(self) -> list[str]:
        try:
            self.transport()
        except ConfigError as error:
            return error.problems
        return []

    @property
    def executor(self) -> Executor:
        with self._lock:
            if self._closed:
                raise RuntimeError("Firebreak is shutting down; runbook runs are stopped")
            if self._executor is None:
                heartbeat = runs.heartbeat_every(self.settings.file.runbooks.interrupted_after)
                self._executor = Executor(
                    self.db, self.transport, clock=self.clock, heartbeat=heartbeat
                )
            return self._executor

    def start(self, run_id: int, channel: str | None, ts: str | None) -> Future[RunSummary]:
        """Start an approved run; its progress goes to the plan message's thread (if any).
        `runs.RunError` when it is not approved (or another replica claimed it)."""
        progress: ThreadProgress | None = None
        if channel and ts:
            progress = ThreadProgress(self, run_id, channel, ts)
        future = self.executor.start(run_id, progress)  # nothing to undo if it raises
        if progress is not None:
            with self._lock:
                self._progress.add(progress)
            progress.begin()
        return future

    def _done(self, progress: ThreadProgress) -> None:
        with self._lock:
            self._progress.discard(progress)

    def cancel(self, run_id: int) -> bool:
        """Stop a run this replica runs now (the database's cancel reaches the others)."""
        with self._lock:
            executor = self._executor
        return executor.cancel(run_id) if executor is not None else False

    def refresh(self, run_id: int) -> None:
        """Edit the run's plan message to show its present state (and buttons)."""
        with self._refresh_lock:
            self._refresh(run_id)

    def _refresh(self, run_id: int) -> None:
        with self.db.session_scope() as session:
            run = runs.get(session, run_id)
            if not run.slack_channel or not run.slack_ts or not run.plan:
                return
            channel, ts = run.slack_channel, run.slack_ts
            text, blocks = runbook_blocks.plan_message(
                run, runs.plan_of(run), runs.hosts(session, run_id)
            )
        try:
            self.client.chat_update(channel=channel, ts=ts, text=text, blocks=blocks)
        except SlackApiError as error:
            log.warning("could not update the plan message of R-%d: %s", run_id, slack_error(error))

    def close(self) -> None:
        """Stop: running runs are cancelled (and recorded so), the pools shut down."""
        with self._lock:
            self._closed = True
            executor = self._executor
        if executor is not None:
            executor.close(cancel=True)
        with self._lock:
            watching = list(self._progress)
        for progress in watching:  # their last edits, before the database goes away
            progress.join(timeout=30)


class ThreadProgress:
    """The executor's observer for a run started from Slack (see the module docstring)."""

    def __init__(self, runner: RunbookRunner, run_id: int, channel: str, plan_ts: str) -> None:
        self.runner = runner
        self.run_id = run_id
        self.reference = f"R-{run_id}"
        self.channel = channel
        self.plan_ts = plan_ts
        self._lock = threading.Lock()
        self._changed = threading.Event()
        self._states: dict[str, tuple[str, str]] = {}
        self._lines: deque[str] = deque()
        self._size = 0
        self._trimmed = False
        self._summary: RunSummary | None = None
        self._reply_ts: str | None = None
        with runner.db.session_scope() as session:
            for host in runs.hosts(session, run_id):
                self._states[host.name] = (host.status, "")
        self._thread = threading.Thread(
            target=self._loop, name=f"firebreak-run-slack-{run_id}", daemon=True
        )

    # -- the observer (called by the executor, one call at a time) ----------------------

    def host_started(self, host: str) -> None:
        self._set(host, "running", "")

    def output(self, host: str, stream: Stream, text: str) -> None:
        with self._lock:
            for line in text.rstrip("\n").split("\n"):
                shown = f"{host} | {line}"
                self._lines.append(shown)
                self._size += len(shown) + 1
            while self._size > MAX_OUTPUT and len(self._lines) > 1:
                self._size -= len(self._lines.popleft()) + 1
                self._trimmed = True
        self._changed.set()

    def host_finished(self, result: HostResult) -> None:
        codes = " ".join(
            f"{step.step}={'timeout' if step.timed_out else step.exit_code}"
            for step in result.steps
        )
        detail = f"{codes} {result.duration:.1f}s".strip()
        if result.error:
            detail += f" ({result.error[:200]})"
        self._set(result.host, result.status, detail)

    def run_finished(self, summary: RunSummary) -> None:
        with self._lock:
            self._summary = summary
            for host in summary.hosts:
                _, detail = self._states.get(host.host, (host.status, ""))
                self._states[host.host] = (host.status, detail)
        self._changed.set()

    def _set(self, host: str, status: str, detail: str) -> None:
        with self._lock:
            self._states[host] = (status, detail)
        self._changed.set()

    # -- the thread that edits Slack -----------------------------------------------------

    def begin(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _render(self) -> tuple[str, bool]:
        with self._lock:
            states = [(host, status, detail) for host, (status, detail) in self._states.items()]
            output = "\n".join(self._lines)
            summary = self._summary
            trimmed = self._trimmed
        final = summary.status if summary is not None else None
        text = runbook_blocks.progress_text(
            self.reference, states, output, trimmed=trimmed, final=final
        )
        return text, summary is not None

    def _loop(self) -> None:
        try:
            self._post(self._render()[0])
            self.runner.refresh(self.run_id)  # claimed: the plan message says running
            last = time.monotonic()
            while True:
                self._changed.wait()
                pause = self.runner.interval - (time.monotonic() - last)
                with self._lock:
                    finished = self._summary is not None
                if pause > 0 and not finished:
                    time.sleep(pause)
                self._changed.clear()
                text, finished = self._render()
                self._edit(text)
                last = time.monotonic()
                if finished:
                    break
        except Exception:
            log.exception("%s: the progress reply failed", self.reference)
        finally:
            try:
                self.runner.refresh(self.run_id)
            except Exception:
                log.exception("%s: could not refresh the plan message", self.reference)
            self.runner._done(self)

    def _post(self, text: str) -> None:
        reply: Any = self._call(
            lambda: self.runner.client.chat_postMessage(
                channel=self.channel, thread_ts=self.plan_ts, text=text
            )
        )
        if reply is not None:
            self._reply_ts = reply.get("ts")

    def _edit(self, text: str) -> None:
        ts = self._reply_ts
        if ts is None:
            self._post(text)
            return
        self._call(lambda: self.runner.client.chat_update(channel=self.channel, ts=ts, text=text))

    def _call(self, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except SlackApiError as error:
            log.warning(
                "%s: Slack refused the progress reply: %s", self.reference, slack_error(error)
            )
            return None
