"""Engine, session factory and the declarative Base.

One session per request or job: `with db.session_scope() as session:` commits on success and
rolls back on any exception, so a state change and its timeline event land together or not
at all.

SQLite runs with WAL, a busy timeout and `BEGIN IMMEDIATE` transactions: writers queue for
the lock instead of failing with "database is locked" when two requests write at once.
Inside one process they queue in order (`WriteQueue`), page notifications first
(`urgent_writes`) and Slack bookkeeping after requests (`background_writes`), instead of in
SQLite's busy handler, which sleeps and retries, so a
newer transaction overtook an older one and an alert storm left some webhooks, and the
pages behind them, waiting seconds (see benchmarks/REPORT.md). On PostgreSQL, where
transactions run side by side, an urgent or normal transaction counts as foreground and a
background one yields to the foreground before it begins (`bot.priority`).

When the database fails under a unit of work (a connection terminated, the server restarting
or unreachable): `unavailable(error)` tells that apart from a bug, and `watch_writes()` tells
what the unit of work had committed by then, so the edge can say truthfully whether nothing
was recorded, the change was recorded and only its follow-up failed, or the COMMIT itself
went unanswered (recorded or not: nobody can know without looking).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

import psycopg
from sqlalchemy import JSON, DateTime, Engine, create_engine, event, exc
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Dialect, ExceptionContext, make_url
from sqlalchemy.orm import DeclarativeBase, ORMExecuteState, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from bot import priority
from bot.priority import BACKGROUND, NORMAL
from bot.priority import URGENT as URGENT  # re-exported: the write queue's levels
from bot.priority import background_writes as background_writes
from bot.priority import urgent_writes as urgent_writes

log = logging.getLogger(__name__)
T = TypeVar("T")
M = TypeVar("M", bound="Base")
CONNECT_TIMEOUT = 5
"""Seconds a new PostgreSQL connection may take (unless the URL sets connect_timeout), so a
request or `/readyz` answers promptly when the server does not."""
# SQLSTATE classes of a database that cannot serve us now: connection exception, insufficient
# resources (too many connections), operator intervention (terminated, shutting down,
# cancelled). Deadlocks and serialization failures (class 40) are not among them.
_UNAVAILABLE_CLASSES = ("08", "53", "57")
_WROTE = "firebreak.wrote"  # Session.info key: this transaction has written something


class ConnectionLost(Exception):
    """A connection that work relied on beyond one transaction (the one holding an advisory
    lock, `bot.locks`) was lost, and what it held with it. `unavailable` counts it."""


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on every backend (SQLite drops zones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column; attach a time zone first")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, datetime: UTCDateTime}


class AppendOnlyError(Exception):
    """Something tried to change or delete a row of an append-only history."""


def append_only(model: type[Base]) -> None:
    """Refuse updates and deletes of `model`'s rows in the ORM (migrations add the same
    guard as database triggers, for anything that bypasses the ORM)."""

    def refuse(_mapper: Any, _connection: Any, target: Any) -> None:
        raise AppendOnlyError(f"{model.__tablename__} row {target.id} is append-only")

    event.listen(model, "before_update", refuse)
    event.listen(model, "before_delete", refuse)


def insert_unless_taken(session: Session, model: type[M], **values: Any) -> M | None:
    """Insert one row and return it, persistent in `session`; None when a unique index
    already holds a row this one would duplicate (a twin request's, a rerun's). As with any
    insert, a twin that another transaction inserted and has not committed yet is waited for:
    None if it commits, the insert if it rolls back.

    One statement, `INSERT ... ON CONFLICT DO NOTHING RETURNING` (PostgreSQL and SQLite
    3.35+), where catching the `IntegrityError` needs a savepoint around the insert: three
    round trips, each of which, under load, waits for the interpreter lock again
    (`bot.priority`). Python-side column defaults apply; ORM events on `session.add` do not.
    """
    if session.get_bind().dialect.name == "postgresql":
        statement: Any = postgresql_insert(model).values(**values).on_conflict_do_nothing()
    else:
        statement = sqlite_insert(model).values(**values).on_conflict_do_nothing()
    return session.scalars(statement.returning(model)).one_or_none()


def utcnow() -> datetime:
    return datetime.now(UTC)


def normalise_url(url: str) -> str:
    """Accept plain `postgresql://` URLs and use psycopg 3, the driver we ship."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def unavailable(error: BaseException) -> bool:
    """Whether `error` is the database failing us (its connection terminated or lost, the
    server shutting down, refusing or out of connections, no pooled connection free in
    time), rather than a bug or a statement the database refused. Whatever transaction it
    interrupted was rolled back, unless it was interrupted during COMMIT."""
    if isinstance(error, exc.TimeoutError | ConnectionLost):  # no connection in time, or lost
        return True
    cause: BaseException | None = error
    if isinstance(error, exc.DBAPIError):
        if error.connection_invalidated:
            return True
        cause = error.orig
    if not isinstance(cause, psycopg.OperationalError):
        return False
    sqlstate = cause.sqlstate
    return sqlstate is None or sqlstate.startswith(_UNAVAILABLE_CLASSES)


def describe(error: BaseException) -> str:
    """One line without SQL or parameters, for a log line about a database failure."""
    cause = error.orig if isinstance(error, exc.DBAPIError) and error.orig is not None else error
    first_line = (str(cause).strip().splitlines() or [""])[0]
    return f"{type(cause).__name__}: {first_line}"


def where(error: BaseException) -> str:
    """The innermost place in Firebreak's own code (outside this module) that `error` passed
    through, as `bot/slack/channels.py:_announce`: enough, with `describe`, for one log line."""
    here = Path(__file__).resolve()
    root = here.parent.parent
    ours = (root / "bot", root / "integrations")  # not a virtualenv that lives under root
    found = "?"
    for frame in traceback.extract_tb(error.__traceback__):
        path = Path(frame.filename).resolve()
        if path.suffix == ".py" and path != here and any(path.is_relative_to(p) for p in ours):
            found = f"{path.relative_to(root)}:{frame.name}"
    return found


Ended = Literal["committed", "in doubt"]


@dataclass
class Writes:
    """The writing transactions this thread ended while watched (`watch_writes`), in order:
    "committed", or "in doubt" (the connection was lost during COMMIT: committed or not)."""

    outcomes: list[Ended] = field(default_factory=list)

    @property
    def first(self) -> Ended | None:
        """The outcome of the first write (in a request: the change itself), if any."""
        return self.outcomes[0] if self.outcomes else None


_watchers = threading.local()


@contextmanager
def watch_writes() -> Iterator[Writes]:
    """Record the writing transactions `Database.session_scope` ends in this thread (on any
    database) until the block ends. Transactions that only read are not recorded, nor are
    those rolled back (they wrote nothing)."""
    stack: list[Writes] = _watchers.__dict__.setdefault("stack", [])
    writes = Writes()
    stack.append(writes)
    try:
        yield writes
    finally:
        stack.remove(writes)


def _ended(outcome: Ended) -> None:
    for writes in _watchers.__dict__.get("stack", ()):
        writes.outcomes.append(outcome)


def _wrote_on_flush(session: Session, _context: Any) -> None:
    session.info[_WROTE] = True


def _wrote_on_execute(state: ORMExecuteState) -> None:
    if state.is_insert or state.is_update or state.is_delete:
        state.session.info[_WROTE] = True


class WriteQueue:
    """SQLite's writers of this process, served one at a time in order of arrival (urgent
    ones first). Order only: SQLite's own lock still guarantees one writer, and a writer
    that waits here longer than `timeout` goes on to SQLite's busy handler as before.

    A connection holds its turn from BEGIN until its COMMIT or ROLLBACK has returned. A
    background writer that has waited `patience` seconds queues as a normal one (in its
    original order), so a steady stream of requests never starves it."""

    def __init__(self, timeout: float = 30.0, patience: float = 1.0) -> None:
        self.timeout = timeout
        self.patience = patience
        self._lock = threading.Lock()
        self._waiting: list[tuple[int, int]] = []  # heap of (urgency, ticket)
        # Each waiter sleeps on a condition of its own (sharing `_lock`), so that a release
        # wakes the one writer whose turn it is, not all of them: with hundreds of writers
        # queued (a burst of pages), waking every one at every commit to find it was not
        # its turn was a fifth of the server's CPU.
        self._wakers: dict[tuple[int, int], threading.Condition] = {}
        self._tickets = itertools.count()
        self._holder: object | None = None

    def acquire(self, holder: object, *, level: int = NORMAL) -> None:
        ticket = (level, next(self._tickets))
        started = time.monotonic()
        deadline, promote = started + self.timeout, started + self.patience
        with self._lock:
            if self._holder is holder:
                return
            waker = threading.Condition(self._lock)
            self._queue(ticket, waker)
            while self._holder is not None or self._waiting[0] != ticket:
                now = time.monotonic()
                if now >= deadline:  # something holds on too long: leave it to SQLite
                    self._drop(ticket)
                    self._wake_next()
                    return
                if ticket[0] == BACKGROUND and now >= promote:
                    self._drop(ticket)
                    ticket = (NORMAL, ticket[1])
                    self._queue(ticket, waker)
                    continue
                until = promote if ticket[0] == BACKGROUND else deadline
                waker.wait(until - now)
            heapq.heappop(self._waiting)
            del self._wakers[ticket]
            self._holder = holder

    def _queue(self, ticket: tuple[int, int], waker: threading.Condition) -> None:
        heapq.heappush(self._waiting, ticket)
        self._wakers[ticket] = waker

    def _drop(self, ticket: tuple[int, int]) -> None:
        self._waiting.remove(ticket)
        heapq.heapify(self._waiting)
        del self._wakers[ticket]

    def _wake_next(self) -> None:
        """Wake the writer at the head of the queue if the turn is free (lock held). A
        writer that arrives in between and goes first is fine: the woken one finds it is
        not its turn and sleeps again, and the newcomer's release wakes the head then."""
        if self._holder is None and self._waiting:
            self._wakers[self._waiting[0]].notify()

    def release(self, holder: object) -> None:
        with self._lock:
            if self._holder is holder:
                self._holder = None
                self._wake_next()


def _around_transactions(
    engine: Engine, begin: Callable[[Any, Any], None], end: Callable[[Any], None]
) -> None:
    """Call `begin(connection, dbapi_connection)` as each transaction begins, and
    `end(dbapi_connection)` once its COMMIT or ROLLBACK has returned, or its connection is
    closed, invalidated or checked in (so `end` also comes for connections it holds nothing
    for, and must ignore them)."""
    dialect = engine.dialect
    commit, rollback = dialect.do_commit, dialect.do_rollback

    def raw(connection: Any) -> Any:
        return getattr(connection, "dbapi_connection", None) or connection

    def do_commit(connection: Any) -> None:
        try:
            commit(connection)
        finally:
            end(raw(connection))

    def do_rollback(connection: Any) -> None:
        try:
            rollback(connection)
        finally:
            end(raw(connection))

    dialect.do_commit = do_commit  # type: ignore[method-assign,assignment]
    dialect.do_rollback = do_rollback  # type: ignore[method-assign,assignment]

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        begin(connection, raw(connection.connection))

    def gone(dbapi_connection: Any, *_args: Any) -> None:
        end(dbapi_connection)

    event.listen(engine, "close", gone)
    event.listen(engine, "invalidate", gone)
    event.listen(engine, "checkin", gone)


def _queue_sqlite_writers(engine: Engine) -> None:
    """Take a turn in a `WriteQueue` before `BEGIN IMMEDIATE`; give it back once COMMIT or
    ROLLBACK returned (or the connection is closed or invalidated)."""
    queue = WriteQueue()

    def begin(connection: Any, holder: Any) -> None:
        queue.acquire(holder, level=priority.level())
        try:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            queue.release(holder)
            raise

    _around_transactions(engine, begin, queue.release)


def _track_foreground(engine: Engine, foreground: priority.Foreground) -> None:
    """PostgreSQL: an urgent or normal thread's transaction counts as foreground from its
    BEGIN until its COMMIT or ROLLBACK has returned (or its connection is closed or
    invalidated); a background thread's transaction first yields to the foreground
    (`bot.priority`). SQLite's `WriteQueue` does the same ordering for its writers."""
    holders: set[int] = set()  # id() of the DBAPI connections whose transaction counts
    guard = threading.Lock()

    def begin(_connection: Any, dbapi_connection: Any) -> None:
        if priority.level() == BACKGROUND:
            foreground.wait_quiet()
            return
        with guard:
            if id(dbapi_connection) in holders:
                return
            holders.add(id(dbapi_connection))
        foreground.enter()

    def end(dbapi_connection: Any) -> None:
        with guard:
            if id(dbapi_connection) not in holders:
                return
            holders.discard(id(dbapi_connection))
        foreground.leave()

    _around_transactions(engine, begin, end)


def make_engine(url: str, *, foreground: priority.Foreground | None = None) -> Engine:
    url = normalise_url(url)
    if make_url(url).get_backend_name() == "sqlite":
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            if make_url(url).database not in (None, "", ":memory:"):
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        _queue_sqlite_writers(engine)
        return engine
    connect_args = (
        {} if "connect_timeout" in make_url(url).query else {"connect_timeout": CONNECT_TIMEOUT}
    )
    engine = create_engine(
        url, pool_size=10, max_overflow=20, pool_pre_ping=True, connect_args=connect_args
    )
    event.listen(engine, "handle_error", _gone_means_gone)
    _track_foreground(engine, foreground or priority.FOREGROUND)
    return engine


# Operator intervention that ends the session: admin shutdown (pg_terminate_backend), crash
# shutdown, cannot connect now. (A cancelled statement, 57014, leaves the session usable.)
_SESSION_ENDED = ("57P01", "57P02", "57P03")


def _gone_means_gone(context: ExceptionContext) -> None:
    """A connection that failed because it is gone is discarded, never used again.

    - A pooled connection whose ping fails in any way is replaced, never handed out.
      SQLAlchemy's psycopg ping restores `autocommit` in a `finally`; when the socket closed
      under the ping, that raises "can't change 'autocommit' now: connection in transaction
      status ACTIVE", which SQLAlchemy takes for a bug and raises to the caller instead of
      connecting afresh (seen with backends terminated every few hundred milliseconds).
    - A statement that failed because the session ended (terminated, the server shutting
      down) or the socket broke (psycopg: "connection socket closed", no SQLSTATE) makes the
      connection invalid. SQLAlchemy does not always see these as disconnects; then it tried
      to ROLLBACK on the dead socket ("another command is already in progress") and its
      pool logged that with a traceback.
    """
    error = context.original_exception
    if context.is_pre_ping:
        context.is_disconnect = True
    elif isinstance(error, psycopg.OperationalError):
        state = error.sqlstate
        if state is None or state.startswith("08") or state in _SESSION_ENDED:
            context.is_disconnect = True


class Database:
    def __init__(self, url: str, *, foreground: priority.Foreground | None = None) -> None:
        """`foreground`: what this database's PostgreSQL transactions count in and yield to
        (`bot.priority`); the process's own by default."""
        self.url = normalise_url(url)
        self.engine = make_engine(self.url, foreground=foreground)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        event.listen(self._sessions, "after_flush", _wrote_on_flush)
        event.listen(self._sessions, "do_orm_execute", _wrote_on_execute)

    def listen(self, name: str, listener: Callable[..., Any]) -> None:
        """Add a SQLAlchemy session event listener to this database's sessions only (the
        metrics count committed facts with it: `bot.metrics.Metrics.watch`)."""
        event.listen(self._sessions, name, listener)

    @contextmanager
    def session_scope(self) -> Iterator[Session]:
        """One transaction: committed if the block returns, rolled back if it raises.

        Pending changes are flushed before COMMIT, so a failure up to the flush is known to
        have written nothing; a connection lost during COMMIT itself leaves the outcome
        unknown, and `watch_writes` counts it as in doubt.
        """
        session = self._sessions()
        committing = False
        try:
            yield session
            session.flush()
            committing = True
            session.commit()
        except BaseException as error:
            if committing and session.info.get(_WROTE) and unavailable(error):
                _ended("in doubt")
            session.rollback()
            raise
        else:
            if session.info.get(_WROTE):
                _ended("committed")
        finally:
            session.close()

    def retrying(self, work: Callable[[Session], T], *, attempts: int = 5, pause: float = 0.2) -> T:
        """`work(session)` in a transaction of its own, run again on a fresh connection while
        the database fails under it (`unavailable`): `attempts` times in all, `pause`, then
        twice `pause`... seconds apart (3 s in all by default). Any other error fails at
        once, as in `session_scope`.

        Only for work that is right to run again whatever became of the failed attempt, a
        COMMIT that went unanswered included: recording what a send did on a row that must
        still say "sending" (`bot.outbox.finish`, `bot.oncall.paging.finish_notifications`)
        is, and so is saving a message's ts where none is saved yet; adding a note is not
        (an unanswered COMMIT may have added it). Its use: the short write that records what
        Slack (or a notifier) just did, which, if lost with a dropped connection, would make
        the same message go out again.
        """
        for attempt in range(1, attempts + 1):
            try:
                with self.session_scope() as session:
                    return work(session)
            except Exception as error:
                if attempt == attempts or not unavailable(error):
                    raise
                log.info(
                    "the database failed (%s); trying again (%d of %d)",
                    describe(error),
                    attempt + 1,
                    attempts,
                )
                time.sleep(pause * attempt)
        raise AssertionError("attempts must be at least 1")

    def dispose(self) -> None:
        self.engine.dispose()
