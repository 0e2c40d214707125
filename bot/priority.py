"""Who goes first in this process: work someone is waiting on, before work nobody waits on.

Firebreak is one Python process, and its threads share one interpreter lock (the GIL).
Every database round trip and every Slack call lets go of the lock and must win it back;
while other threads are runnable, each of those waits behind them. Under an alert storm on
PostgreSQL the channel setups, summary edits and outbox sends of earlier webhooks (about
45 ms of CPU per new incident, more than the webhook itself) kept several threads runnable,
so each of an opening webhook's ~30 round trips waited 20-35 ms for the lock: 300-900 ms
per webhook instead of 30 ms (`benchmarks/REPORT.md`, "Alerts").

So each thread runs at a level (thread-local, set for a block of code):

- `URGENT`: a person waits on it (a page's DM: `urgent_writes`);
- `NORMAL`: the default, requests and scheduler jobs;
- `BACKGROUND`: nobody waits on it (the Slack work after an alert webhook was answered,
  the reconcile pass's safety-net sends and setups: `background_writes`).

`FOREGROUND` counts what is in the foreground right now: HTTP requests being served
(`ServingRequests`, a WSGI middleware) and, on PostgreSQL, open transactions of urgent or
normal threads (`bot.db`). Background work calls `yield_to_foreground()` at its checkpoints,
which are the start of each of its transactions (`bot.db`; on SQLite the write queue orders
writers itself) and each Slack Web API call (`bot.metrics.MeasuredWebClient`): it waits
there while anything is in the foreground, for at most `Foreground.patience` seconds (one)
per checkpoint, so a steady stream of requests slows background work down but never starves
it. A checkpoint holds no database connection's transaction open, but a background setup
may hold its incident's lock (`bot.locks`) while it waits: a request that needs the same
incident's lock then waits at most that second longer.

Only order changes: nothing is skipped, and every piece of background work still runs,
in the order it would have run.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

URGENT, NORMAL, BACKGROUND = 0, 1, 2  # served lowest first
_level = threading.local()


def level() -> int:
    """This thread's level (NORMAL unless a block set another)."""
    return int(getattr(_level, "value", NORMAL))


@contextmanager
def _at(value: int) -> Iterator[None]:
    before = level()
    _level.value = value
    try:
        yield
    finally:
        _level.value = before


def urgent_writes() -> Any:
    """Work in the block is urgent: a person waits on it, such as a page's DM. Its
    transactions go ahead of the other writers waiting in this process (SQLite) and count
    as foreground (PostgreSQL)."""
    return _at(URGENT)


def background_writes() -> Any:
    """Work in the block is background: nobody waits on it, such as editing a Slack summary
    after an alert webhook was answered. Its transactions let requests waiting in this
    process (SQLite) go first, and it yields to the foreground at each transaction
    (PostgreSQL) and each Slack call, for at most a second each."""
    return _at(BACKGROUND)


class Foreground:
    """A count of the foreground work in progress, and a wait for it to end."""

    def __init__(self, patience: float = 1.0) -> None:
        self.patience = patience
        self._changed = threading.Condition()
        self._active = 0
        self._waiting = 0  # background threads waiting (tests read it: `waiting`)

    @property
    def active(self) -> int:
        with self._changed:
            return self._active

    @property
    def waiting(self) -> int:
        with self._changed:
            return self._waiting

    def enter(self) -> None:
        with self._changed:
            self._active += 1

    def leave(self) -> None:
        with self._changed:
            if self._active <= 0:
                raise RuntimeError("Foreground.leave() without a matching enter()")
            self._active -= 1
            if not self._active:
                self._changed.notify_all()

    @contextmanager
    def held(self) -> Iterator[None]:
        """Foreground for the duration of the block."""
        self.enter()
        try:
            yield
        finally:
            self.leave()

    def wait_quiet(self) -> bool:
        """Wait until nothing is in the foreground, or `patience` seconds; True if it went
        quiet, False if the patience ran out first."""
        deadline = time.monotonic() + self.patience
        with self._changed:
            self._waiting += 1
            try:
                while self._active:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    self._changed.wait(left)
                return True
            finally:
                self._waiting -= 1


FOREGROUND = Foreground()


def yield_to_foreground(foreground: Foreground | None = None) -> None:
    """A background thread's checkpoint: wait while the foreground is busy (at most its
    patience). Urgent and normal threads go on at once."""
    if level() == BACKGROUND:
        (foreground or FOREGROUND).wait_quiet()


WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class ServingRequests:
    """WSGI middleware: each request counts as foreground until its response is built (a
    webhook's parsing as well as its transaction; Slack's 3-second acknowledgements)."""

    def __init__(self, app: WsgiApp, foreground: Foreground | None = None) -> None:
        self.app = app
        self.foreground = foreground or FOREGROUND

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        with self.foreground.held():
            return self.app(environ, start_response)
