"""Bounded pools for the work around a Slack acknowledgement, with one idle signal.

Listeners parse, acknowledge within milliseconds, and hand the slow part (database writes,
Web API calls) to the worker pool, so a burst of commands never makes Slack wait. Bolt's own
listener executor is tracked too (`listener_executor()`): bolt may answer Slack before a
listener has even started, so "idle" must count listeners as well as the work they hand
off. `wait_idle` lets tests, the demo and shutdown wait until everything accepted is done.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

log = logging.getLogger(__name__)
P = ParamSpec("P")
T = TypeVar("T")


class _Tracked(ThreadPoolExecutor):
    """A thread pool whose tasks count towards its WorkerPool's pending total."""

    def __init__(self, owner: WorkerPool, size: int, name: str) -> None:
        super().__init__(max_workers=size, thread_name_prefix=name)
        self._owner = owner

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        self._owner._started()
        try:
            # The submitter's context (the log ids bound by `bot.logs`) goes with the task.
            context = contextvars.copy_context()
            future = super().submit(lambda: context.run(fn, *args, **kwargs))
        except BaseException:
            self._owner._finished(None)
            raise
        future.add_done_callback(self._owner._finished)
        return future


class WorkerPool:
    def __init__(self, size: int = 8, listeners: int = 32, pages: int = 4) -> None:
        self._pending = 0
        self._idle = threading.Condition()
        self._work = _Tracked(self, size, "firebreak-work")
        self._listeners = _Tracked(self, listeners, "firebreak-ack")
        # Page notifications have a pool of their own, so a burst of slower work (channel
        # setups during an alert storm) never holds a page back.
        self._pages = _Tracked(self, pages, "firebreak-page")

    def listener_executor(self) -> ThreadPoolExecutor:
        """The executor to give bolt, so its listeners count as pending work."""
        return self._listeners

    def submit(self, work: Callable[..., Any], *args: Any) -> Future[Any]:
        return self._work.submit(work, *args)

    def submit_page(self, work: Callable[..., Any], *args: Any) -> Future[Any]:
        """Work that sends page notifications: it never queues behind other work."""
        return self._pages.submit(work, *args)

    def _started(self) -> None:
        with self._idle:
            self._pending += 1

    def _finished(self, future: Future[Any] | None) -> None:
        if future is not None and not future.cancelled() and future.exception() is not None:
            log.error("background work failed", exc_info=future.exception())
        with self._idle:
            self._pending -= 1
            self._idle.notify_all()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout=timeout)

    def shutdown(self) -> None:
        self._listeners.shutdown(wait=True)
        self._work.shutdown(wait=True)
        self._pages.shutdown(wait=True)
