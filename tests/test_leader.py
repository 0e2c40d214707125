"""Leader election: SQLite always leads; on PostgreSQL exactly one Leadership leads, and
another takes over when the leader stops, loses its backend or its process is killed."""

from __future__ import annotations

import logging
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from bot.leader import LEADER_LOCK_KEY, Leadership
from bot.migrations import ADVISORY_LOCK_KEY

POLL = 0.2
CHECK = 0.3
TAKEOVER = 0.8
PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Recorder:
    """The callbacks of one Leadership, and what they were called with."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self._lock = threading.Lock()
        self.elected_fails = 0  # raise from on_elected this many more times
        self.lost_fails = False

    def on_elected(self) -> None:
        with self._lock:
            self.events.append("elected")
            if self.elected_fails > 0:
                self.elected_fails -= 1
                raise RuntimeError("the scheduler would not start")

    def on_lost(self) -> None:
        with self._lock:
            self.events.append("lost")
        if self.lost_fails:
            raise RuntimeError("the scheduler would not stop")

    def count(self, event: str) -> int:
        with self._lock:
            return self.events.count(event)


@pytest.fixture
def leaderships() -> Iterator[Callable[..., tuple[Leadership, Recorder]]]:
    """Make Leaderships with short polls; every one is stopped at the end of the test."""
    made: list[Leadership] = []

    def make(url: str, **knobs: Any) -> tuple[Leadership, Recorder]:
        recorder = Recorder()
        knobs = {"poll_interval": POLL, "check_timeout": CHECK, "takeover_delay": TAKEOVER, **knobs}
        leadership = Leadership(url, recorder.on_elected, recorder.on_lost, **knobs)
        made.append(leadership)
        return leadership, recorder

    yield make
    for leadership in made:
        leadership.stop()


def wait_for(condition: Callable[[], object], timeout: float) -> float:
    """Seconds until `condition()` held; fails after `timeout`."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, "condition not met in time"
        time.sleep(0.01)
    return time.monotonic() - started


@contextmanager
def never_two_leaders(*candidates: Leadership) -> Iterator[None]:
    """Sample the states every 50 ms while the block runs; fail if two ever lead at once."""
    seen: list[int] = []
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            seen.append(sum(c.is_leader for c in candidates))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield
    finally:
        done.set()
        sampler.join()
    assert seen, "no samples taken"
    assert max(seen) <= 1, f"two leaders at once in {seen.count(2)} of {len(seen)} samples"


def leaders(*candidates: Leadership) -> list[Leadership]:
    return [c for c in candidates if c.is_leader]


def lock_holder(url: str) -> int | None:
    """The backend pid holding the leader lock in this database, as an operator finds it."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            return connection.execute(
                text(
                    "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
                    " AND database = (SELECT oid FROM pg_database"
                    "                 WHERE datname = current_database())"
                    " AND classid::bigint = :high AND objid::bigint = :low AND objsubid = 1"
                ),
                {"high": LEADER_LOCK_KEY >> 32, "low": LEADER_LOCK_KEY & 0xFFFFFFFF},
            ).scalar_one_or_none()
    finally:
        engine.dispose()


def terminate_backend(url: str, pid: int) -> None:
    engine = create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            assert connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    finally:
        engine.dispose()


def test_the_leader_lock_is_not_the_migration_lock() -> None:
    assert LEADER_LOCK_KEY != ADVISORY_LOCK_KEY
    assert 0 < LEADER_LOCK_KEY < 2**63  # a PostgreSQL bigint


# -- SQLite: the one process leads --------------------------------------------------------


def test_on_sqlite_the_one_process_leads_at_once_and_stop_steps_down_once(
    tmp_path: Path, leaderships: Callable[..., tuple[Leadership, Recorder]]
) -> None:
    leadership, recorder = leaderships(f"sqlite:///{tmp_path / 'firebreak.db'}")
    assert (leadership.state, leadership.alive) == ("stopped", False)
    leadership.start()
    assert (leadership.state, leadership.is_leader, leadership.alive) == ("leader", True, True)
    assert recorder.events == ["elected"]
    leadership.stop()
    leadership.stop()
    assert leadership.state == "stopped" and not leadership.is_leader and not leadership.alive
    assert recorder.events == ["elected", "lost"]


def test_on_sqlite_a_scheduler_that_cannot_start_fails_start(
    tmp_path: Path, leaderships: Callable[..., tuple[Leadership, Recorder]]
) -> None:
    leadership, recorder = leaderships(f"sqlite:///{tmp_path / 'firebreak.db'}")
    recorder.elected_fails = 1
    with pytest.raises(RuntimeError, match="would not start"):
        leadership.start()
    assert not leadership.is_leader
    leadership.stop()
    assert recorder.events == ["elected"]


def test_start_twice_is_refused(tmp_path: Path) -> None:
    leadership = Leadership(f"sqlite:///{tmp_path / 'x.db'}", lambda: None, lambda: None)
    leadership.start()
    with pytest.raises(RuntimeError):
        leadership.start()
    leadership.stop()


def test_a_takeover_delay_shorter_than_a_poll_is_refused() -> None:
    with pytest.raises(ValueError, match="takeover_delay"):
        Leadership("sqlite://", lambda: None, lambda: None, poll_interval=2, takeover_delay=3)


def test_an_unreachable_database_keeps_the_election_trying_and_hides_the_password(
    caplog: pytest.LogCaptureFixture, leaderships: Callable[..., tuple[Leadership, Recorder]]
) -> None:
    caplog.set_level(logging.DEBUG, logger="bot.leader")
    # Port 1 on the loopback refuses at once: the database is down.
    leadership, recorder = leaderships("postgresql://firebreak:hunter2@127.0.0.1:1/firebreak")
    leadership.start()
    wait_for(lambda: "failed (1 in a row)" in caplog.text, timeout=5)
    time.sleep(3 * POLL)
    assert (leadership.state, leadership.alive) == ("standby", True)
    assert recorder.events == []
    assert caplog.text.count("failed (") == 1, "one warning per outage, not one per poll"
    assert "hunter2" not in caplog.text
    leadership.stop()
    assert (leadership.state, leadership.alive) == ("stopped", False)


# -- PostgreSQL: exactly one of several leads -----------------------------------------------


@pytest.mark.postgresql
def test_exactly_one_leads_and_the_other_takes_over_when_it_stops(
    database_url: str, leaderships: Callable[..., tuple[Leadership, Recorder]]
) -> None:
    (a, a_calls), (b, b_calls) = leaderships(database_url), leaderships(database_url)
    with never_two_leaders(a, b):
        a.start()
        b.start()
        wait_for(lambda: leaders(a, b), timeout=5)
        time.sleep(5 * POLL)  # the other stays a standby
        [leader] = leaders(a, b)
        other, other_calls = (b, b_calls) if leader is a else (a, a_calls)
        leader_calls = a_calls if leader is a else b_calls
        assert other.state == "standby" and other.alive and other_calls.events == []
        assert lock_holder(database_url) is not None

        leader.stop()
        assert leader.state == "stopped" and leader_calls.events == ["elected", "lost"]
        took = wait_for(lambda: other.is_leader, timeout=5)
    print(f"takeover after a clean stop: {took:.2f} s")
    assert other_calls.events == ["elected"]


@pytest.mark.postgresql
def test_a_terminated_backend_loses_leadership_and_exactly_one_leads_again(
    database_url: str,
    leaderships: Callable[..., tuple[Leadership, Recorder]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="bot.leader")
    (a, a_calls), (b, b_calls) = leaderships(database_url), leaderships(database_url)
    with never_two_leaders(a, b):
        a.start()
        b.start()
        wait_for(lambda: leaders(a, b), timeout=5)
        [old] = leaders(a, b)
        old_calls = a_calls if old is a else b_calls
        pid = lock_holder(database_url)
        assert pid is not None

        terminate_backend(database_url, pid)
        noticed = wait_for(lambda: old_calls.count("lost") == 1, timeout=5)
        assert not old.is_leader
        took = wait_for(lambda: leaders(a, b), timeout=15)
        time.sleep(3 * POLL)
        assert len(leaders(a, b)) == 1
    print(f"loss noticed after {noticed:.2f} s; a leader again after {noticed + took:.2f} s")
    assert a.alive and b.alive
    assert lock_holder(database_url) not in (None, pid)
    assert "lost leadership" in caplog.text


@pytest.mark.postgresql
def test_callbacks_that_raise_never_stop_the_election(
    database_url: str,
    leaderships: Callable[..., tuple[Leadership, Recorder]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    leadership, recorder = leaderships(database_url)
    recorder.elected_fails = 1
    recorder.lost_fails = True
    leadership.start()
    # on_elected raised: undone with on_lost, lock released, tried again a few polls later.
    wait_for(lambda: leadership.is_leader, timeout=10)
    assert recorder.events == ["elected", "lost", "elected"]
    assert "on_elected failed" in caplog.text

    terminate_backend(database_url, leadership_pid(database_url))
    wait_for(lambda: recorder.count("lost") == 2, timeout=5)
    wait_for(lambda: leadership.is_leader, timeout=15)
    assert "on_lost failed" in caplog.text
    assert leadership.alive
    assert recorder.events == ["elected", "lost", "elected", "lost", "elected"]


class Proxy:
    """A TCP forwarder to PostgreSQL. `freeze()` stops forwarding but keeps every socket open,
    which is what a partition behind a proxy or a frozen peer looks like to the client: sends
    succeed, answers never come, keepalives are answered. `sever()` closes everything."""

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.frozen = threading.Event()
        self.severed = threading.Event()
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, url: str) -> str:
        proxied = make_url(url).set(host="127.0.0.1", port=self.port)
        return proxied.render_as_string(hide_password=False)

    def freeze(self) -> None:
        self.frozen.set()

    def sever(self) -> None:
        self.severed.set()
        self.listener.close()
        with self.lock:
            for sock in self.sockets:
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in recv
                sock.close()

    def _accept(self) -> None:
        while not self.severed.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.upstream)
            with self.lock:
                self.sockets += [client, upstream]
            for source, target in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, target), daemon=True).start()

    def _pipe(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                while self.frozen.is_set():
                    if self.severed.wait(0.01):
                        return
                target.sendall(data)
            if not self.frozen.is_set():
                target.shutdown(socket.SHUT_WR)
        except OSError:
            pass


@pytest.fixture
def proxy(database_url: str) -> Iterator[Proxy]:
    url = make_url(database_url)
    forwarder = Proxy(url.host or "127.0.0.1", url.port or 5432)
    yield forwarder
    forwarder.sever()


@pytest.mark.postgresql
def test_a_leader_cut_off_from_the_database_steps_down_before_another_can_lead(
    database_url: str, leaderships: Callable[..., tuple[Leadership, Recorder]], proxy: Proxy
) -> None:
    """Its check hangs (no error, no answer); the server has already freed its lock."""
    (cut_off, cut_off_calls), (other, other_calls) = (
        leaderships(proxy.url(database_url)),
        leaderships(database_url),
    )
    with never_two_leaders(cut_off, other):
        cut_off.start()
        wait_for(lambda: cut_off.is_leader, timeout=5)
        other.start()
        pid = leadership_pid(database_url)

        proxy.freeze()
        frozen = time.monotonic()
        terminate_backend(database_url, pid)  # the lock is free; the cut-off leader can't know
        stepped_down = wait_for(lambda: cut_off_calls.count("lost") == 1, timeout=5)
        assert not cut_off.is_leader
        took = wait_for(lambda: other.is_leader, timeout=15) + stepped_down
    print(
        f"cut-off leader stepped down after {stepped_down:.2f} s; "
        f"the other leads after {took:.2f} s"
    )
    assert stepped_down < POLL + CHECK + 0.5, "stepped down within one poll and check timeout"
    assert time.monotonic() - frozen < 15
    assert cut_off.alive, "its thread is blocked or retrying, never dead"
    assert other_calls.events == ["elected"]
    proxy.sever()  # the blocked query fails; the thread goes back to trying
    time.sleep(3 * POLL)
    assert cut_off.alive and cut_off.state == "standby"


def leadership_pid(url: str) -> int:
    pid = lock_holder(url)
    assert pid is not None
    return pid


CHILD = """
import sys, threading, time
from bot.leader import Leadership

elected = threading.Event()
leadership = Leadership(sys.argv[1], elected.set, lambda: None, poll_interval=0.2,
                        check_timeout=0.3, takeover_delay=0.8)
leadership.start()
elected.wait()
print("leader", flush=True)
time.sleep(120)
"""


@pytest.mark.postgresql
def test_a_killed_leader_process_is_replaced_within_15_seconds(
    database_url: str, leaderships: Callable[..., tuple[Leadership, Recorder]]
) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, database_url],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "leader"
        survivor, calls = leaderships(database_url)
        survivor.start()
        time.sleep(TAKEOVER + 3 * POLL)
        assert survivor.state == "standby", "the child still leads"

        killed = time.monotonic()
        child.send_signal(signal.SIGKILL)
        wait_for(lambda: survivor.is_leader, timeout=15)
        took = time.monotonic() - killed
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(timeout=10)
    print(f"takeover after SIGKILL of the leader process: {took:.2f} s")
    assert calls.events == ["elected"]
