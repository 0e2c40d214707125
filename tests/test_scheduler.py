"""The real scheduler: second-long waits, and a restart in the middle of an escalation."""

from __future__ import annotations

import itertools
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select

from bot.app import Firebreak
from bot.config import FileConfig
from bot.db import Database, utcnow
from bot.oncall import paging
from bot.oncall.models import Page, PageNotification
from bot.oncall.targets import Target
from bot.sandbox import SlackSandbox
from bot.sandbox.outbound import OutboundSlack, http_transport
from tests.conftest import PEOPLE, PROXY_VARIABLES, SECRET, TOKEN
from tests.test_paging import dms

FIREBREAK = str(Path(sys.executable).parent / "firebreak")
LISTENING = re.compile(r"Firebreak listening on (http://127\.0\.0\.1:\d+)")


def chain_config(announce_channel: str, wait: str) -> dict[str, Any]:
    """alice, then bob, then carol, `wait` apart; then give up."""
    return {
        "slack": {"announce_channel": announce_channel},
        "people": {name: person.model_dump() for name, person in PEOPLE.items()},
        "escalation_policies": {
            "chain": {
                "steps": [
                    {"targets": ["user:alice"], "wait": wait},
                    {"targets": ["user:bob"], "wait": wait},
                    {"targets": ["user:carol"], "wait": wait},
                ],
                "repeat": 0,
            }
        },
    }


def wait_for(condition: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


@pytest.fixture
def file_config(announce_channel: str) -> FileConfig:
    return FileConfig.model_validate(chain_config(announce_channel, "1s"))


def test_the_real_scheduler_escalates_after_each_wait_and_stops_on_ack(
    firebreak: Firebreak, sandbox: SlackSandbox
) -> None:
    firebreak.jobs.start()
    try:
        started = time.monotonic()
        page = firebreak.pager.page(target="policy:chain", message="live", created_by="U0CAROL")
        assert len(dms(sandbox, "U0ALICE")) == 1
        wait_for(lambda: dms(sandbox, "U0BOB"), timeout=10)
        assert time.monotonic() - started >= 0.9, "step 2 waited its second"
        firebreak.pager.acknowledge(page.id, "U0BOB")
        time.sleep(2.5)  # carol's step would have been due by now
        assert dms(sandbox, "U0CAROL") == []
        assert len(dms(sandbox, "U0BOB")) == 1
    finally:
        firebreak.jobs.stop()


def test_escalations_do_not_wait_behind_the_schedulers_other_jobs(
    firebreak: Firebreak, sandbox: SlackSandbox
) -> None:
    """A burst's one-shot jobs (a delivery each, a Slack call) can fill every thread the
    scheduler's jobs share; the `escalations` job runs on threads of its own, so bob's step
    is not held back until they finish."""
    jobs = firebreak.jobs
    jobs.start()
    release, busy, lock = threading.Event(), [0], threading.Lock()

    def occupy() -> None:
        with lock:
            busy[0] += 1
        release.wait(30)

    try:
        assert jobs.scheduler is not None
        for number in range(12):  # more than the shared threads: some wait for a thread
            jobs.scheduler.add_job(occupy, "date", run_date=datetime.now(UTC), id=f"busy-{number}")
        wait_for(lambda: busy[0] >= 8, timeout=10)
        firebreak.pager.page(target="policy:chain", message="live", created_by="U0CAROL")
        assert len(dms(sandbox, "U0ALICE")) == 1
        wait_for(lambda: dms(sandbox, "U0BOB"), timeout=10)
        assert not release.is_set() and busy[0] == 8, "the shared threads were still busy"
    finally:
        release.set()
        jobs.stop()


def test_reconcile_recreates_the_job_a_crash_left_missing(
    firebreak: Firebreak, sandbox: SlackSandbox
) -> None:
    """A page and its first step committed, then the process died before it sent the
    notification or scheduled the next step."""
    jobs = firebreak.jobs
    with firebreak.db.session_scope() as session:
        triggered = paging.trigger(
            session,
            firebreak.settings.file.oncall,
            target=Target.parse("policy:chain"),
            message="orphan",
            created_by="U0CAROL",
            now=utcnow(),
        )
        page_id, step = triggered.page.id, triggered.step
    assert step is not None and step.next_at is not None  # bob is due in 1 s; no job exists
    assert step.generation == 2
    assert dms(sandbox, "U0ALICE") == []
    jobs.start()
    try:
        # Reconcile rebuilds bob's escalation (due in 1 s) and, once it is GRACE overdue,
        # sends alice's notification that nobody sent: each exactly once, bob not early.
        wait_for(lambda: dms(sandbox, "U0BOB") and dms(sandbox, "U0ALICE"), timeout=10)
        time.sleep(1.5)  # room for a duplicate to show up, if there were one
        assert len(dms(sandbox, "U0BOB")) == 1
        assert len(dms(sandbox, "U0ALICE")) == 1
        with firebreak.db.session_scope() as session:
            page = paging.get(session, page_id)
            rows = session.scalars(select(PageNotification).order_by(PageNotification.step))
            sent = {row.person: row.sent_at for row in rows}
        assert page.step >= 2 and {"alice", "bob"} <= set(sent)
        assert sent["bob"] is not None and sent["bob"] >= step.next_at, "bob's step ran early"
    finally:
        jobs.stop()


# -- a restart in the middle of an escalation ---------------------------------------------


def chain_serve_env(
    sandbox: SlackSandbox, announce_channel: str, database_url: str, tmp_path: Path, wait: str
) -> dict[str, str]:
    """The environment of a `firebreak serve` on `database_url` and the sandbox, with the
    alice-bob-carol chain (`wait` apart) as its configuration."""
    config = tmp_path / "firebreak.yaml"
    config.write_text(yaml.safe_dump(chain_config(announce_channel, wait)))
    env = {key: value for key, value in os.environ.items() if key not in PROXY_VARIABLES}
    env.update(
        DATABASE_URL=database_url,
        FIREBREAK_CONFIG=str(config),
        SLACK_API_URL=sandbox.api_url,
        SLACK_BOT_TOKEN=TOKEN,
        SLACK_SIGNING_SECRET=SECRET,
        NO_PROXY="127.0.0.1,localhost",
    )
    return env


def assert_the_chain_paged_each_once(
    sandbox: SlackSandbox, announce_channel: str, database_url: str
) -> list[tuple[int, str, str, int, datetime | None, datetime]]:
    """alice, bob and carol each DMed once, one exhausted announcement, the page exhausted;
    returns the notification rows as (step, person, status, attempts, sent_at, created_at):
    created_at is when the escalation reached the step, sent_at when its DM went out."""
    assert [len(dms(sandbox, user)) for user in ("U0ALICE", "U0BOB", "U0CAROL")] == [1, 1, 1]
    exhausted = [
        m.text for m in sandbox.messages(announce_channel) if "Nobody acknowledged" in m.text
    ]
    assert len(exhausted) == 1
    db = Database(database_url)
    try:
        with db.session_scope() as session:
            assert session.scalars(select(Page)).one().state == "exhausted"
            rows = session.scalars(select(PageNotification).order_by(PageNotification.step))
            return [(r.step, r.person, r.status, r.attempts, r.sent_at, r.created_at) for r in rows]
    finally:
        db.dispose()


@contextmanager
def firebreak_serve(env: dict[str, str], log: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    process = subprocess.Popen(
        [FIREBREAK, "serve", "--port", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=log.open("a"),
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None
    stdout = process.stdout
    threading.Thread(target=lambda: [lines.put(line) for line in stdout], daemon=True).start()
    try:
        deadline = time.monotonic() + 30
        url = None
        while url is None and time.monotonic() < deadline:
            try:
                match = LISTENING.search(lines.get(timeout=0.5))
            except queue.Empty:
                assert process.poll() is None, log.read_text()
                continue
            url = match.group(1) if match else None
        assert url, "serve did not start: " + log.read_text()
        yield url, process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=20)


def test_a_restart_mid_escalation_resumes_on_schedule_and_notifies_each_step_once(
    sandbox: SlackSandbox, announce_channel: str, database_url: str, tmp_path: Path
) -> None:
    env = chain_serve_env(sandbox, announce_channel, database_url, tmp_path, "2s")
    log = tmp_path / "serve.log"

    with firebreak_serve(env, log) as (url, first):
        slack = OutboundSlack(http_transport(url + "/slack/events"), SECRET, sandbox)
        reply = slack.command(
            "policy:chain checkout down", user="U0CAROL", channel="C0ANY", command="/page"
        )
        assert reply.status == 200
        wait_for(lambda: dms(sandbox, "U0ALICE"))
        first.send_signal(signal.SIGTERM)  # stop in the middle of the escalation
        assert first.wait(timeout=20) == 0
    assert dms(sandbox, "U0BOB") == [], "the first process stopped before step 2"

    with firebreak_serve(env, log):
        wait_for(lambda: sandbox.messages(announce_channel))  # exhausted after carol's wait

    rows = assert_the_chain_paged_each_once(sandbox, announce_channel, database_url)
    assert [row[:3] for row in rows] == [
        (0, "alice", "sent"),
        (1, "bob", "sent"),
        (2, "carol", "sent"),
    ]
    # Each step ran on schedule: the escalation reached it no earlier than its wait after the
    # one before. (Not the DMs' send times: a DM delivered late on a busy machine must not
    # push the next step back, so two DMs may be closer together than the wait.)
    reached = [row[5] for row in rows]
    gaps = [later - earlier for earlier, later in itertools.pairwise(reached)]
    assert all(gap >= timedelta(seconds=1.9) for gap in gaps), gaps


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # injected
def test_a_scheduler_thread_that_dies_is_restarted_and_reported_meanwhile(
    firebreak: Firebreak, sandbox: SlackSandbox, caplog: pytest.LogCaptureFixture
) -> None:
    jobs = firebreak.jobs
    jobs.start()
    try:
        crashed = jobs.scheduler
        assert crashed is not None and jobs.running

        def crash() -> float:
            raise RuntimeError("injected: APScheduler's main loop fails")

        crashed._process_jobs = crash  # type: ignore[method-assign]  # a fault in APScheduler
        crashed.wakeup()
        wait_for(lambda: not crashed._thread.is_alive(), timeout=5)  # type: ignore[union-attr]
        # The dead thread is noticed and a new scheduler runs the jobs again.
        wait_for(lambda: jobs.scheduler is not crashed and jobs.running, timeout=10)
        assert "the scheduler's thread died; starting it again" in caplog.text
        page = firebreak.pager.page(target="policy:chain", message="after", created_by="U0CAROL")
        wait_for(lambda: dms(sandbox, "U0BOB"), timeout=10)
        assert page.state == "triggered"
    finally:
        jobs.stop()
