"""bot.priority: background work waits while requests and foreground transactions run.

Each test parks a thread and checks where it is parked (`Foreground.waiting`) instead of
timing it; the long patience in most tests means only the foreground ending can release it,
and every join has a timeout so a regression fails instead of hanging.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

import pytest
from sqlalchemy import text

from bot.db import Database
from bot.metrics import MeasuredWebClient, Metrics
from bot.priority import (
    FOREGROUND,
    Foreground,
    ServingRequests,
    background_writes,
    level,
    urgent_writes,
    yield_to_foreground,
)
from bot.sandbox import SlackSandbox
from tests.conftest import TOKEN

JOIN = 30.0  # a hang guard, not a timing assertion


def wait_for(condition: Callable[[], bool], what: str) -> None:
    event = threading.Event()
    for _ in range(3000):
        if condition():
            return
        event.wait(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def started(target: Callable[[], None], name: str) -> threading.Thread:
    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    return thread


def joined(thread: threading.Thread) -> None:
    thread.join(timeout=JOIN)
    assert not thread.is_alive(), f"{thread.name} did not finish"


def test_background_waits_until_the_foreground_ends() -> None:
    foreground = Foreground(patience=600)
    events: list[str] = []

    def background() -> None:
        with background_writes():
            yield_to_foreground(foreground)
            events.append(f"background ran; foreground active: {foreground.active}")

    foreground.enter()
    foreground.enter()  # two requests in flight
    thread = started(background, "background")
    wait_for(lambda: foreground.waiting == 1, "the background thread to wait")
    foreground.leave()
    assert foreground.waiting == 1 and events == []  # one request still in flight
    foreground.leave()
    joined(thread)
    assert events == ["background ran; foreground active: 0"]
    assert foreground.waiting == 0


def test_background_goes_on_after_its_patience_so_a_busy_foreground_never_starves_it() -> None:
    foreground = Foreground(patience=0.05)
    went_quiet: list[bool] = []

    def background() -> None:
        with background_writes():
            went_quiet.append(foreground.wait_quiet())

    with foreground.held():
        joined(started(background, "background"))
        assert foreground.active == 1
    assert went_quiet == [False]
    assert foreground.wait_quiet() is True  # nothing in the foreground: at once


@pytest.mark.parametrize("marked", ["normal", "urgent"])
def test_urgent_and_normal_work_never_waits(marked: str) -> None:
    foreground = Foreground(patience=600)
    passed: list[int] = []

    def work() -> None:
        if marked == "urgent":
            with urgent_writes():
                yield_to_foreground(foreground)
                passed.append(level())
        else:
            yield_to_foreground(foreground)
            passed.append(level())

    with foreground.held():
        joined(started(work, marked))
        assert foreground.waiting == 0
    assert passed == [0 if marked == "urgent" else 1]


def test_levels_nest_and_are_per_thread() -> None:
    seen: list[int] = []
    with background_writes():
        with urgent_writes():
            seen.append(level())
            other = started(lambda: seen.append(level()), "other")
            joined(other)
        seen.append(level())
    seen.append(level())
    assert seen == [0, 1, 2, 1]  # urgent; another thread normal; background; normal again


def test_leaving_more_than_entered_is_a_bug_that_says_so() -> None:
    foreground = Foreground()
    with pytest.raises(RuntimeError, match="without a matching enter"):
        foreground.leave()


def test_serving_requests_counts_each_request_while_it_is_handled() -> None:
    foreground = Foreground()
    seen: list[int] = []

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        seen.append(foreground.active)
        if environ.get("PATH_INFO") == "/boom":
            raise RuntimeError("boom")
        start_response("200 OK", [])
        return [b"ok"]

    wrapped = ServingRequests(app, foreground)
    assert list(wrapped({"PATH_INFO": "/"}, lambda *_: None)) == [b"ok"]
    with pytest.raises(RuntimeError):
        wrapped({"PATH_INFO": "/boom"}, lambda *_: None)
    assert seen == [1, 1]
    assert foreground.active == 0  # a failed request is no longer in the foreground either


@pytest.mark.postgresql
def test_a_background_transaction_waits_for_a_foreground_one_to_end(database_url: str) -> None:
    """PostgreSQL: a normal thread's transaction is foreground from BEGIN to COMMIT; a
    background thread's transaction does not begin meanwhile, and itself counts for nothing."""
    foreground = Foreground(patience=600)
    db = Database(database_url, foreground=foreground)
    release = threading.Event()
    observed: list[str] = []

    def request() -> None:
        with db.session_scope() as session:
            session.execute(text("SELECT 1"))
            release.wait(JOIN)

    def background() -> None:
        with background_writes(), db.session_scope() as session:
            session.execute(text("SELECT 2"))
            observed.append(f"background began; foreground active: {foreground.active}")

    try:
        holder = started(request, "request")
        wait_for(lambda: foreground.active == 1, "the request's transaction to begin")
        waiter = started(background, "background")
        wait_for(lambda: foreground.waiting == 1, "the background transaction to wait")
        assert observed == []
        release.set()
        joined(holder)
        joined(waiter)
        assert observed == ["background began; foreground active: 0"]
        assert foreground.active == 0
        # A transaction rolled back (an error in the block) leaves the foreground too.
        with pytest.raises(ZeroDivisionError), db.session_scope() as session:
            session.execute(text("SELECT 3"))
            assert foreground.active == 1
            raise ZeroDivisionError
        assert foreground.active == 0
    finally:
        release.set()
        db.dispose()


def test_a_background_slack_call_waits_while_a_request_is_served(sandbox: SlackSandbox) -> None:
    """The Slack Web API client is a checkpoint too: a background post waits for the
    request in flight (here, held by the test) to be answered."""
    channel = sandbox.add_channel("ops")
    client = MeasuredWebClient(token=TOKEN, base_url=sandbox.api_url, metrics=Metrics())
    posted: list[str] = []

    def background() -> None:
        with background_writes():
            posted.append(str(client.chat_postMessage(channel=channel, text="later")["ts"]))

    with FOREGROUND.held():
        thread = started(background, "background")
        wait_for(lambda: FOREGROUND.waiting >= 1, "the background post to wait")
        assert sandbox.messages(channel) == [] and posted == []
    joined(thread)
    assert [message.text for message in sandbox.messages(channel)] == ["later"]
    assert posted == [sandbox.messages(channel)[0].ts]
