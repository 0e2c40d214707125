"""Paging at scale: the leader escalates every due page in batches (`JobRunner.escalate_due`),
each page still once per step, one failing page never holds back the others, and passes
racing each other (a doubled job, a second replica's runner) page nobody twice."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from bot import timeline
from bot.app import Firebreak
from bot.config import FileConfig
from bot.jobs import ESCALATION_BATCH, JobRunner
from bot.oncall.models import Page, PageNotification
from bot.sandbox import SlackSandbox
from tests.test_paging import MONDAY, Clock, dms, oncall_config


@pytest.fixture
def file_config(announce_channel: str) -> FileConfig:
    return oncall_config(announce_channel, repeat=0)  # alice (on call), then carol, 5 min each


@pytest.fixture
def clock(firebreak: Firebreak) -> Clock:
    clock = Clock(MONDAY)
    firebreak.clock.use(clock)
    return clock


def trigger(firebreak: Firebreak, count: int) -> list[int]:
    return [
        firebreak.pager.trigger(
            target="policy:payments", message=f"burst {n}", created_by="U0BOB"
        ).page.id
        for n in range(count)
    ]


def carol_rows(firebreak: Firebreak) -> Counter[tuple[int, str]]:
    """Step 2 notification rows (carol's) per (page, status)."""
    with firebreak.db.session_scope() as session:
        rows = session.scalars(select(PageNotification).where(PageNotification.step == 1))
        return Counter((row.page_id, row.status) for row in rows)


def step_events(firebreak: Firebreak, page_id: int) -> list[int]:
    with firebreak.db.session_scope() as session:
        return [
            int(event.data["step"])
            for event in timeline.for_page(session, page_id)
            if event.kind == "page_step_notified"
        ]


def test_a_burst_larger_than_a_batch_escalates_in_one_pass_each_page_once(
    firebreak: Firebreak, sandbox: SlackSandbox, clock: Clock, announce_channel: str
) -> None:
    pages = trigger(firebreak, ESCALATION_BATCH + 7)  # two batches, the second partial
    assert len(dms(sandbox, "U0ALICE")) == len(pages)
    assert firebreak.jobs.escalate_due() == 0  # nothing is due yet

    clock.advance(minutes=5)
    assert firebreak.jobs.escalate_due() == len(pages)
    assert carol_rows(firebreak) == Counter({(page_id, "sent"): 1 for page_id in pages})
    carol = dms(sandbox, "U0CAROL")
    assert len(carol) == len(pages)
    assert sorted(int(text.split("burst ")[1].split("\n")[0]) for text in carol) == list(
        range(len(pages))
    )
    assert all(step_events(firebreak, page_id) == [1, 2] for page_id in pages)
    with firebreak.db.session_scope() as session:
        due = session.scalars(select(Page.next_escalation_at).distinct()).all()
    assert due == [MONDAY + timedelta(minutes=10)]  # each waits carol's 5 min from now

    # Run again at once: nothing is due, nothing is sent twice.
    assert firebreak.jobs.escalate_due() == 0
    assert len(dms(sandbox, "U0CAROL")) == len(pages)

    clock.advance(minutes=5)
    assert firebreak.jobs.escalate_due() == len(pages)  # every page exhausted, once
    with firebreak.db.session_scope() as session:
        states = Counter(session.scalars(select(Page.state)))
    assert states == Counter({"exhausted": len(pages)})
    exhausted = [m for m in sandbox.messages(announce_channel) if "Nobody acknowledged" in m.text]
    assert len(exhausted) == len(pages)
    assert firebreak.jobs.escalate_due() == 0


def test_a_page_that_cannot_be_escalated_does_not_hold_back_its_batch(
    firebreak: Firebreak,
    sandbox: SlackSandbox,
    clock: Clock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    good, broken, other = trigger(firebreak, 3)
    with firebreak.db.session_scope() as session:  # a policy snapshot nothing can read
        session.execute(update(Page).where(Page.id == broken).values(policy={"steps": 7}))

    clock.advance(minutes=5)
    with caplog.at_level(logging.ERROR, logger="bot.jobs"):
        assert firebreak.jobs.escalate_due() == 2
    assert any(f"could not escalate page {broken}" in r.getMessage() for r in caplog.records)
    assert carol_rows(firebreak) == Counter({(good, "sent"): 1, (other, "sent"): 1})
    assert len(dms(sandbox, "U0CAROL")) == 2

    # The next pass tries the broken page again and still pages the others only once.
    assert firebreak.jobs.escalate_due() == 0
    assert len(dms(sandbox, "U0CAROL")) == 2
    with firebreak.db.session_scope() as session:
        assert session.get(Page, broken).state == "triggered"  # type: ignore[union-attr]


def test_passes_racing_each_other_page_each_step_once(
    firebreak: Firebreak, sandbox: SlackSandbox, clock: Clock
) -> None:
    """Two runners (as on two replicas during a leader change) and a doubled job in one."""
    pages = trigger(firebreak, ESCALATION_BATCH + 3)
    jobs = firebreak.jobs
    other = JobRunner(jobs.db, jobs.config, jobs.notifiers, jobs.clock, jobs.announcer)
    clock.advance(minutes=5)
    barrier = threading.Barrier(3)
    ran: list[int] = []

    def run(runner: JobRunner) -> None:
        barrier.wait()
        ran.append(runner.escalate_due())

    threads = [threading.Thread(target=run, args=(r,)) for r in (jobs, jobs, other)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sum(ran) == len(pages), ran  # between them, each page escalated once
    assert carol_rows(firebreak) == Counter({(page_id, "sent"): 1 for page_id in pages})
    assert len(dms(sandbox, "U0CAROL")) == len(pages)
    assert all(step_events(firebreak, page_id) == [1, 2] for page_id in pages)
