"""A bounded pool for the work that follows a Slack acknowledgement.

Listeners parse, acknowledge within milliseconds, and hand the slow part (database writes,
Web API calls) to this pool, so a burst of commands never makes Slack wait. `wait_idle`
lets tests and shutdown wait until every accepted piece of work has finished.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

log = logging.getLogger(__name__)


class WorkerPool:
    def __init__(self, size: int = 8) -> None:
        self._executor = ThreadPoolExecutor(max_workers=size, thread_name_prefix="firebreak-work")
        self._pending = 0
        self._idle = threading.Condition()

    def submit(self, work: Callable[..., Any], *args: Any) -> Future[Any]:
        with self._idle:
            self._pending += 1
        future = self._executor.submit(work, *args)
        future.add_done_callback(self._finished)
        return future

    def _finished(self, future: Future[Any]) -> None:
        error = future.exception()
        if error is not None:
            log.error("background work failed", exc_info=error)
        with self._idle:
            self._pending -= 1
            self._idle.notify_all()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout=timeout)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True)
