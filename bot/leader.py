"""Leader election: which replica runs the scheduler.

Every replica serves HTTP; exactly one runs the scheduler. `Leadership` decides which one
with a PostgreSQL session advisory lock (`LEADER_LOCK_KEY`) held on a dedicated connection,
so PostgreSQL is the whole distributed engine and there is no other service to run. On
SQLite (or any other backend) there is one process, and it always leads.

    leadership = Leadership(db.url, on_elected=paging.start, on_lost=paging.shutdown)
    leadership.start()   # returns at once; on SQLite on_elected has already run
    leadership.state     # "leader" | "standby" | "stopped"
    leadership.stop()    # steps down (on_lost), releases the lock, closes the connection

On PostgreSQL one daemon thread runs the election; the callbacks never overlap each other.

- *standby*: every `poll_interval` it calls `pg_try_advisory_lock(LEADER_LOCK_KEY)`.
- When the lock is taken it waits `takeover_delay` (checking the lock each poll) before
  calling `on_elected()`: longer than a previous leader can go on leading after its lock was
  freed (below). Only after `on_elected()` returns does the state read "leader".
- *leader*: every `poll_interval` one query proves both that the connection is alive and
  that this session still holds the lock (`pg_locks` for our backend). If it fails (the
  connection dropped, `pg_terminate_backend`, the database restarted, the lock gone) or has
  not answered within `check_timeout` (a partition, a proxy that keeps the socket open, a
  frozen server), the state turns "standby" and `on_lost()` runs at once; the connection is
  then dropped (which also frees the lock, should the server still hold it) and the thread
  goes back to trying.

Why two never lead at once: a leader has confirmed its lock at most `poll_interval +
check_timeout` ago, or has stepped down, whatever the network does; a new leader takes the
lock only once it is free and then waits `takeover_delay`, which must be longer.

Timing, with the defaults (2 s poll, 2 s check timeout, so a 5 s takeover delay):

- The leader process dies (crash, SIGKILL, OOM): its kernel closes the socket, the server
  ends the session and frees the lock at once; a standby takes it within one poll and leads
  the takeover delay later: 5-7 s.
- The leader's machine vanishes: the server notices through the TCP keepalives this
  connection sets for its own session (`SERVER_SETTINGS`: 2 s idle, then 3 probes 1 s apart,
  so within 5 s of the last packet), then one poll and the takeover delay: at most 12 s.
- The database restarts or the leader is cut off: the leader steps down within one poll plus
  the check timeout (at once when the server closed the connection); a new leader comes once
  the lock is free again, as above.

The election narrows the overlap; it is not the only guard. Every scheduler job re-reads its
row under a lock and does nothing unless the state and generation still match, so a leader
paused longer than the takeover delay (a stopped VM, a long GC) cannot page twice.

The advisory lock is a *session* lock: point `DATABASE_URL` at PostgreSQL itself or at a
session-mode pooler, never a transaction-mode pooler (PgBouncer `pool_mode=transaction`),
which would hand the lock's session to other clients.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Literal

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from bot.db import normalise_url

log = logging.getLogger(__name__)

State = Literal["leader", "standby", "stopped"]

LEADER_LOCK_KEY = 0x4649524542524B4C
"""The advisory lock of the scheduler's leader: b"FIREBRKL" as a 64-bit integer.

Distinct from `bot.migrations.ADVISORY_LOCK_KEY` (0x46495245, b"FIRE", the migration lock).
Advisory locks are per database, so deployments on separate databases never contend. In
`pg_locks` it shows as classid 0x46495245, objid 0x42524B4C, objsubid 1.
"""

CLIENT_SETTINGS: dict[str, Any] = {
    "keepalives": 1,
    "keepalives_idle": 3,  # seconds of silence before the first probe
    "keepalives_interval": 1,
    "keepalives_count": 3,
    "tcp_user_timeout": 5000,  # ms a sent query may stay unacknowledged before we give up
}
"""libpq parameters: how soon a blocked query of this process fails when the server is gone
(the check timeout steps down sooner; these free the thread and the socket)."""

SERVER_SETTINGS: dict[str, str] = {
    "tcp_keepalives_idle": "2",
    "tcp_keepalives_interval": "1",
    "tcp_keepalives_count": "3",
    "tcp_user_timeout": "5000",
    "statement_timeout": "5000",
}
"""Session settings: how soon the server notices that this process is gone and frees the
lock (the server's defaults follow the operating system's: two hours)."""

APPLICATION_NAME = "firebreak-leader"
FAILURE_BACKOFF_POLLS = 5
"""After `on_elected` raises, wait this many polls before trying again (others may lead)."""
JOIN_TIMEOUT = 30.0
"""How long `stop()` waits for the election thread (it may be inside a callback)."""
_WARN_EVERY = 30
"""While the database stays unreachable, warn on the first failure and every 30th."""


class LeaderLockLost(Exception):
    """This session no longer holds the leader lock, or could not confirm it in time."""


class Leadership:
    """Leads (runs `on_elected`) while holding the leader lock; see the module docstring.

    `url` is a SQLAlchemy URL as in `bot.db.Database.url`. `poll_interval` is how often a
    standby tries the lock and a leader checks it; a leader whose check has not answered
    within `check_timeout` steps down. `takeover_delay` (default: one poll, one check timeout
    and 1 s) must exceed `poll_interval + check_timeout`. `connect_timeout` bounds each
    connection attempt, in whole seconds. The callbacks must not call `stop()`.
    """

    def __init__(
        self,
        url: str,
        on_elected: Callable[[], None],
        on_lost: Callable[[], None],
        *,
        poll_interval: float = 2.0,
        check_timeout: float = 2.0,
        takeover_delay: float | None = None,
        connect_timeout: int = 5,
    ) -> None:
        if takeover_delay is None:
            takeover_delay = poll_interval + check_timeout + 1.0
        if poll_interval <= 0 or check_timeout <= 0:
            raise ValueError("poll_interval and check_timeout must be positive")
        if takeover_delay <= poll_interval + check_timeout:
            raise ValueError(
                "takeover_delay must exceed poll_interval + check_timeout (see bot.leader)"
            )
        self._url = normalise_url(url)
        parsed = make_url(self._url)
        self._distributed = parsed.get_backend_name() == "postgresql"
        self._where = f"{parsed.get_backend_name()} {parsed.host or ''}/{parsed.database or ''}"
        self._on_elected = on_elected
        self._on_lost = on_lost
        self.poll_interval = poll_interval
        self.check_timeout = check_timeout
        self.takeover_delay = takeover_delay
        self.connect_timeout = connect_timeout

        self._lock = threading.Lock()  # guards _state, _started and the check sequence
        self._state: State = "stopped"
        self._started = False
        self._callbacks = threading.RLock()  # one of on_elected / on_lost at a time
        self._check_seq = 0  # which leader check is in flight (its deadline's token)
        self._overdue_seq = -1  # the last check whose deadline passed
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        # Used by the election thread only.
        self._engine: Engine | None = None
        self._connection: Connection | None = None
        self._backend_pid: int | None = None
        self._held_since: float | None = None  # monotonic time the lock was taken
        self._next_connect = 0.0
        self._failures = 0

    # -- what callers use ---------------------------------------------------------------

    @property
    def state(self) -> State:
        with self._lock:
            return self._state

    @property
    def is_leader(self) -> bool:
        return self.state == "leader"

    @property
    def alive(self) -> bool:
        """Whether the election runs: the thread on PostgreSQL; start() to stop() otherwise.

        False before `start()`, after `stop()`, and if the election thread died: a replica
        whose election is dead can neither lead nor take over, so it is not ready.
        """
        with self._lock:
            if not self._started or self._state == "stopped":
                return False
        thread = self._thread
        return thread.is_alive() if thread is not None else not self._distributed

    def start(self) -> None:
        """Begin the election. On SQLite `on_elected` runs here, and what it raises propagates
        (no other process could take over, so failing to start must be loud)."""
        with self._lock:
            if self._started:
                raise RuntimeError("Leadership.start() may be called once")
            self._started = True
            self._state = "standby"
        if not self._distributed:
            with self._callbacks:
                self._on_elected()
                if self._become_leader():
                    log.info("elected leader: %s has one process, which always leads", self._where)
            return
        self._engine = create_engine(
            self._url,
            poolclass=NullPool,  # a dedicated connection, never one of the app's pool
            isolation_level="AUTOCOMMIT",
            connect_args=self._connect_args(),
        )
        self._thread = threading.Thread(target=self._run, name="leader-election", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Step down (`on_lost` if leading), release the lock, close the connection, join."""
        with self._lock:
            if not self._started:
                self._state = "stopped"
                return
        self._stopping.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(JOIN_TIMEOUT)
            if thread.is_alive():
                log.warning(
                    "the election thread did not stop within %.0f s; stepping down without it",
                    JOIN_TIMEOUT,
                )
        self._step_down("stop requested", to="stopped")

    # -- the election thread ------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stopping.is_set():
                try:
                    delay = self._cycle()
                except Exception as error:
                    delay = self._after_failure(error)
                self._stopping.wait(delay)
        except BaseException:
            log.critical("the election thread died", exc_info=True)
            raise
        finally:
            reason = "stop requested" if self._stopping.is_set() else "election thread ending"
            self._step_down(reason)
            self._disconnect(release=True)
            if self._engine is not None:
                self._engine.dispose()

    def _cycle(self) -> float:
        """One step of the election; returns the seconds to wait before the next."""
        if self._connection is None:
            wait = self._next_connect - time.monotonic()
            if wait > 0:
                return wait
            self._connect()
        if self._held_since is None:
            if not self._try_lock():
                return self.poll_interval
            self._held_since = time.monotonic()
            log.info(
                "took the leader lock (backend pid %s); leading in %.1f s, once any previous "
                "leader has noticed its loss",
                self._backend_pid,
                self.takeover_delay,
            )
            return min(self.takeover_delay, self.poll_interval)
        if self.is_leader:
            self._confirm_lead()
            return self.poll_interval
        if not self._holds_lock():
            raise LeaderLockLost("this session no longer holds the leader lock")
        remaining = self._held_since + self.takeover_delay - time.monotonic()
        if remaining > 0:
            return min(remaining, self.poll_interval)
        self._elect()
        return self.poll_interval

    def _confirm_lead(self) -> None:
        """The leader's check, bounded by `check_timeout` whatever the network does: if it
        has not answered by then, a timer steps down while the query is still blocked."""
        with self._lock:
            self._check_seq += 1
            seq = self._check_seq
        deadline = threading.Timer(self.check_timeout, self._check_overdue, (seq,))
        deadline.name = "leader-check-deadline"
        deadline.daemon = True
        deadline.start()
        try:
            held = self._holds_lock()
        finally:
            deadline.cancel()
            with self._lock:
                self._check_seq += 1  # a deadline that fires from now on finds a stale token
                overdue = self._overdue_seq == seq
        if overdue:
            raise LeaderLockLost(f"the leader check took longer than {self.check_timeout:g} s")
        if not held:
            raise LeaderLockLost("this session no longer holds the leader lock")

    def _check_overdue(self, seq: int) -> None:
        with self._lock:
            if self._check_seq != seq:
                return  # the check answered in time
            self._overdue_seq = seq
        self._step_down(f"the leader lock was not confirmed within {self.check_timeout:g} s")

    def _elect(self) -> None:
        with self._callbacks:
            try:
                self._on_elected()
            except Exception:
                backoff = FAILURE_BACKOFF_POLLS * self.poll_interval
                log.exception(
                    "on_elected failed; undoing it, releasing the leader lock, retrying in %.0f s",
                    backoff,
                )
                self._call_on_lost()  # undo whatever on_elected started before it raised
                self._disconnect(release=True)
                self._next_connect = time.monotonic() + backoff
                return
            if self._become_leader():
                log.info("elected leader (backend pid %s) on %s", self._backend_pid, self._where)
            else:  # stop() came first: undo at once
                self._call_on_lost()

    def _after_failure(self, error: Exception) -> float:
        reason = _describe(error)
        expected = isinstance(error, DBAPIError | LeaderLockLost)
        if self.is_leader:
            if not expected:
                log.error("the leader check failed unexpectedly", exc_info=error)
            self._step_down(f"lost the leader lock: {reason}")
        else:
            self._failures += 1
            if self._failures == 1 or self._failures % _WARN_EVERY == 0:
                log.warning(
                    "leader election on %s failed (%d in a row): %s",
                    self._where,
                    self._failures,
                    reason,
                    exc_info=None if expected else error,
                )
        self._disconnect(release=False)
        return self.poll_interval

    # -- state --------------------------------------------------------------------------

    def _become_leader(self) -> bool:
        with self._lock:
            if self._state != "standby":
                return False
            self._state = "leader"
            return True

    def _step_down(self, reason: str, to: State = "standby") -> None:
        """Leave "leader" (calling `on_lost` once) or just record `to`; safe from any thread."""
        with self._lock:
            was_leader = self._state == "leader"
            if self._state != "stopped":
                self._state = to
        if not was_leader:
            return
        if reason == "stop requested":
            log.info("stepped down as leader: %s", reason)
        else:
            log.warning("lost leadership: %s", reason)
        self._call_on_lost()

    def _call_on_lost(self) -> None:
        with self._callbacks:
            try:
                self._on_lost()
            except Exception:
                log.exception("on_lost failed")

    # -- the dedicated connection -------------------------------------------------------

    def _connect_args(self) -> dict[str, Any]:
        args: dict[str, Any] = {**CLIENT_SETTINGS, "connect_timeout": self.connect_timeout}
        if "application_name" not in make_url(self._url).query:
            args["application_name"] = APPLICATION_NAME
        return args

    def _connect(self) -> None:
        assert self._engine is not None
        connection = self._engine.connect()
        try:
            calls = ", ".join(f"set_config('{name}', :{name}, false)" for name in SERVER_SETTINGS)
            connection.execute(text(f"SELECT {calls}"), SERVER_SETTINGS)
            self._backend_pid = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
        except BaseException:
            connection.invalidate()
            connection.close()
            raise
        self._connection = connection
        if self._failures:
            log.info("leader election reconnected after %d failures", self._failures)
        self._failures = 0

    def _try_lock(self) -> bool:
        assert self._connection is not None
        query = text("SELECT pg_try_advisory_lock(:key)")
        return bool(self._connection.execute(query, {"key": LEADER_LOCK_KEY}).scalar_one())

    def _holds_lock(self) -> bool:
        """One round trip that proves the connection and our hold on the lock."""
        assert self._connection is not None
        query = text(
            "SELECT EXISTS (SELECT FROM pg_locks WHERE locktype = 'advisory'"
            " AND pid = pg_backend_pid() AND granted AND classid::bigint = :high"
            " AND objid::bigint = :low AND objsubid = 1)"
        )
        key = {"high": LEADER_LOCK_KEY >> 32, "low": LEADER_LOCK_KEY & 0xFFFFFFFF}
        return bool(self._connection.execute(query, key).scalar_one())

    def _disconnect(self, *, release: bool) -> None:
        """Drop the connection, which frees the lock: politely (unlock, close) if `release`,
        else at once (a broken connection gets no reset, no rollback, no noise)."""
        connection, self._connection = self._connection, None
        held, self._held_since = self._held_since is not None, None
        if connection is None:
            return
        try:
            if release and held:
                unlock = text("SELECT pg_advisory_unlock(:key)")
                connection.execute(unlock, {"key": LEADER_LOCK_KEY})
                log.info("released the leader lock (backend pid %s)", self._backend_pid)
            if release:
                connection.close()
                return
        except Exception as error:
            log.debug("closing the leader connection: %s", _describe(error))
        with contextlib.suppress(Exception):
            connection.invalidate()
            connection.close()


def _describe(error: BaseException) -> str:
    """One line, without SQL or URLs: what a log line about a lost connection needs."""
    cause = error.orig if isinstance(error, DBAPIError) and error.orig is not None else error
    first_line = (str(cause).strip().splitlines() or [""])[0]
    return f"{type(cause).__name__}: {first_line}"
