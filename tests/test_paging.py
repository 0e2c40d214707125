"""Pages: escalation at fixed instants, exactly-once notifications, acknowledgement races,
retries with backoff, `/page` and the DM buttons, and the real scheduler."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from freezegun import freeze_time
from sqlalchemy import select

from bot import timeline
from bot.app import Firebreak
from bot.cli import main
from bot.config import FileConfig
from bot.incidents import service as incidents
from bot.jobs import GRACE
from bot.oncall import paging
from bot.oncall.models import Page, PageNotification
from bot.oncall.targets import Target
from bot.sandbox import SlackSandbox
from bot.slack import blocks
from bot.slack.timeline import sentence
from tests.conftest import PEOPLE, SECRET, TOKEN, Slack, last_response_text

MONDAY = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # alice's week on `primary`


def oncall_config(announce_channel: str, *, wait: str = "5m", repeat: int = 1) -> FileConfig:
    return FileConfig.model_validate(oncall_data(announce_channel, wait=wait, repeat=repeat))


def oncall_data(announce_channel: str, *, wait: str = "5m", repeat: int = 1) -> dict[str, Any]:
    """firebreak.yaml as data: alice and bob rotate weekly on `primary`; carol is step 2."""
    return {
        "slack": {"announce_channel": announce_channel},
        "people": {name: person.model_dump() for name, person in PEOPLE.items()},
        "schedules": {
            "primary": {
                "timezone": "Europe/Berlin",
                "layers": [
                    {
                        "name": "weekly",
                        "users": ["alice", "bob"],
                        "rotation": "weekly",
                        "handoff": "mon 09:00",
                        "start": "2026-01-05",
                    }
                ],
            }
        },
        "escalation_policies": {
            "payments": {
                "steps": [
                    {"targets": ["schedule:primary"], "wait": wait},
                    {"targets": ["user:carol"], "wait": wait},
                ],
                "repeat": repeat,
            }
        },
        "services": {"checkout": {"escalation_policy": "payments"}},
    }


@pytest.fixture
def file_config(announce_channel: str) -> FileConfig:
    return oncall_config(announce_channel)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@pytest.fixture
def clock(firebreak: Firebreak) -> Clock:
    clock = Clock(MONDAY)
    firebreak.clock.use(clock)
    return clock


def dms(sandbox: SlackSandbox, user: str) -> list[str]:
    """Texts of the bot's direct messages to `user`."""
    channels = [
        c for c in sandbox.snapshot()["channels"] if c.get("is_im") and user in c["members"]
    ]
    return [m["text"] for c in channels for m in c["messages"]]


def notifications(app: Firebreak, page_id: int = 1) -> list[tuple[int, int, str, str, str]]:
    with app.db.session_scope() as session:
        rows = session.scalars(
            select(PageNotification)
            .where(PageNotification.page_id == page_id)
            .order_by(PageNotification.id)
        )
        return [(r.cycle, r.step, r.person, r.channel, r.status) for r in rows]


def page_row(app: Firebreak, page_id: int = 1) -> Page:
    with app.db.session_scope() as session:
        return paging.get(session, page_id)


def test_a_policy_page_escalates_step_by_step_repeats_and_is_exhausted(
    firebreak: Firebreak, sandbox: SlackSandbox, clock: Clock, announce_channel: str
) -> None:
    jobs = firebreak.jobs
    page = firebreak.pager.page(
        target="policy:payments", message="Checkout 500s", created_by="U0BOB"
    )
    assert (page.state, page.step, page.generation) == ("triggered", 1, 2)
    assert page.next_escalation_at == MONDAY + timedelta(minutes=5)
    assert notifications(firebreak) == [(0, 0, "alice", "slack", "sent")]
    assert len(dms(sandbox, "U0ALICE")) == 1

    # A job for an old generation (a duplicate, or one that fired late) does nothing.
    assert jobs.run_escalation(page.id, 1) is None
    clock.advance(minutes=5)
    assert jobs.run_escalation(page.id, 2) is not None
    assert jobs.run_escalation(page.id, 2) is None
    clock.advance(minutes=5)
    jobs.run_escalation(page.id, 3)  # the chain starts again (repeat 1)
    clock.advance(minutes=5)
    jobs.run_escalation(page.id, 4)
    clock.advance(minutes=5)
    last = jobs.run_escalation(page.id, 5)
    assert last is not None and last.exhausted and last.next_at is None

    assert notifications(firebreak) == [
        (0, 0, "alice", "slack", "sent"),
        (0, 1, "carol", "slack", "sent"),
        (1, 0, "alice", "slack", "sent"),
        (1, 1, "carol", "slack", "sent"),
    ]
    assert (len(dms(sandbox, "U0ALICE")), len(dms(sandbox, "U0CAROL"))) == (2, 2)
    row = page_row(firebreak)
    assert (row.state, row.exhausted_at) == ("exhausted", MONDAY + timedelta(minutes=20))
    assert "Nobody acknowledged page P-1" in sandbox.messages(announce_channel)[-1].text


def test_acknowledging_stops_escalation_at_once_and_twice_is_harmless(
    firebreak: Firebreak, sandbox: SlackSandbox, clock: Clock
) -> None:
    pager = firebreak.pager
    page = pager.page(target="schedule:primary", message="Disk full", created_by="U0BOB")
    clock.advance(minutes=1)
    first = pager.acknowledge(page.id, "U0ALICE")
    assert first.changed and first.event is not None
    assert (first.event.kind, first.event.actor, first.event.page_id) == (
        "page_acknowledged",
        "U0ALICE",
        page.id,
    )
    assert "<@U0ALICE> acknowledged P-1" in sentence(first.event)
    again = pager.acknowledge(page.id, "U0BOB")
    assert not again.changed and again.event is None
    assert again.reason == "P-1 was already acknowledged."
    assert again.page.acknowledged_by == "U0ALICE"
    clock.advance(minutes=10)
    assert firebreak.jobs.run_escalation(page.id, 2) is None
    assert len(dms(sandbox, "U0ALICE")) == 1
    row = page_row(firebreak)
    assert (row.state, row.acknowledged_by, row.next_escalation_at) == (
        "acknowledged",
        "U0ALICE",
        None,
    )
    resolved = pager.resolve(page.id, "U0ALICE")
    assert resolved.changed
    assert "already resolved" in pager.acknowledge(page.id, "U0ALICE").reason


def race(app: Firebreak, page_id: int) -> None:
    """Acknowledge and run the due escalation job at the same moment."""
    barrier = threading.Barrier(2)

    def ack() -> None:
        barrier.wait()
        app.pager.acknowledge(page_id, "U0ALICE")

    def escalate() -> None:
        barrier.wait()
        app.jobs.run_escalation(page_id, 2)

    threads = [threading.Thread(target=ack), threading.Thread(target=escalate)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_an_acknowledgement_racing_an_escalation_job_never_pages_after_the_ack(
    firebreak: Firebreak, clock: Clock
) -> None:
    for _ in range(8):
        page = firebreak.pager.page(target="policy:payments", message="race", created_by="U0BOB")
        clock.advance(minutes=5)
        race(firebreak, page.id)
        assert page_row(firebreak, page.id).state == "acknowledged"
        with firebreak.db.session_scope() as session:
            events = timeline.for_page(session, page.id)
        acked = next(e.id for e in events if e.kind == "page_acknowledged")
        # Whichever committed first, no step is started after the acknowledgement, and a
        # step-2 notification that lost the race is cancelled rather than sent late.
        assert all(e.id < acked for e in events if e.kind == "page_step_notified")
        second = [n for n in notifications(firebreak, page.id) if n[1] == 1]
        assert all(status in ("sent", "cancelled") for *_, status in second)
        clock.advance(minutes=1)


def test_a_failing_notifier_is_retried_with_backoff_while_the_clock_goes_on(
    firebreak: Firebreak, sandbox: SlackSandbox, clock: Clock
) -> None:
    sandbox.inject_fault("chat.postMessage", status=500, times=3)  # outlasts the client's retries
    firebreak.pager.page(target="policy:payments", message="API down", created_by="U0BOB")
    assert notifications(firebreak) == [(0, 0, "alice", "slack", "retry")]
    row = page_row(firebreak)
    assert (row.step, row.next_escalation_at) == (1, MONDAY + timedelta(minutes=5))
    with firebreak.db.session_scope() as session:
        attempt = session.scalars(select(PageNotification)).one()
        assert attempt.next_attempt_at == MONDAY + timedelta(seconds=5)
        assert attempt.last_error is not None and "500" in attempt.last_error

    clock.advance(seconds=5)
    assert firebreak.jobs.deliver() == 1
    assert notifications(firebreak) == [(0, 0, "alice", "slack", "sent")]
    assert len(dms(sandbox, "U0ALICE")) == 1


def test_a_permanent_failure_is_recorded_logged_and_not_retried(
    firebreak: Firebreak, sandbox: SlackSandbox, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    sandbox.inject_fault("chat.postMessage", error="user_not_found")
    with caplog.at_level(logging.WARNING, logger="bot.jobs"):
        firebreak.pager.page(target="user:alice", message="hello?", created_by="U0BOB")
    assert notifications(firebreak) == [(0, 0, "alice", "slack", "failed")]
    warned = [r.getMessage() for r in caplog.records if r.name == "bot.jobs"]
    assert warned == [
        "P-1: could not reach alice by slack at step 1 (not retryable): "
        "Slack DM to U0ALICE failed: user_not_found (HTTP 200)"
    ], warned
    with firebreak.db.session_scope() as session:
        failed = [e for e in timeline.for_page(session, 1) if e.kind == "page_delivery_failed"]
    assert len(failed) == 1
    assert failed[0].data["final"] is True and "user_not_found" in failed[0].data["error"]
    assert (failed[0].data["channel"], failed[0].data["person"]) == ("slack", "alice")
    assert "failed for good" in sentence(failed[0]) and "user_not_found" in sentence(failed[0])


def test_reconcile_runs_what_is_overdue_and_nothing_twice(
    firebreak: Firebreak, sandbox: SlackSandbox, clock: Clock
) -> None:
    # A page recorded by another process (or just before a crash): its first step ran in
    # the triggering transaction, but nothing was sent and no job was scheduled.
    with firebreak.db.session_scope() as session:
        paging.trigger(
            session,
            firebreak.settings.file.oncall,
            target=Target.parse("user:bob"),
            message="orphan",
            created_by="U0ALICE",
            now=clock(),
        )
    assert notifications(firebreak) == [(0, 0, "bob", "slack", "pending")]
    firebreak.jobs.reconcile()  # just due: its maker is sending it; reconcile leaves it
    assert notifications(firebreak) == [(0, 0, "bob", "slack", "pending")]
    clock.advance(seconds=GRACE.total_seconds())
    firebreak.jobs.reconcile()
    firebreak.jobs.reconcile()
    assert notifications(firebreak) == [(0, 0, "bob", "slack", "sent")]
    assert len(dms(sandbox, "U0BOB")) == 1
    # The next step falls due with no job for it: reconcile runs it, once.
    clock.advance(minutes=5)
    firebreak.jobs.reconcile()
    firebreak.jobs.reconcile()
    assert notifications(firebreak) == [
        (0, 0, "bob", "slack", "sent"),
        (1, 0, "bob", "slack", "sent"),
    ]
    assert len(dms(sandbox, "U0BOB")) == 2


@freeze_time("2026-03-09 08:30:00")  # bob's week starts at 09:00 Berlin = 08:00 UTC
def test_schedule_pages_reach_whoever_is_on_call_at_that_instant(
    firebreak: Firebreak, sandbox: SlackSandbox
) -> None:
    firebreak.pager.page(target="schedule:primary", message="who's there", created_by="U0CAROL")
    assert notifications(firebreak) == [(0, 0, "bob", "slack", "sent")]


def test_unknown_targets_and_empty_messages_say_what_is_wrong(firebreak: Firebreak) -> None:
    for target, expected in (
        ("policy:nope", "There is no policy `nope`. Known: payments."),
        ("schedule:nope", "There is no schedule `nope`. Known: primary."),
        ("user:mallory", "There is no person `mallory`. Known: alice, bob, carol."),
        ("team:sre", "'team:sre' is not a target; write one of user:NAME, schedule:NAME"),
    ):
        with pytest.raises(paging.PagingError, match=None) as error:
            firebreak.pager.page(target=target, message="x", created_by="U0BOB")
        assert expected in str(error.value)
    with pytest.raises(paging.PagingError, match="Say what the page is about"):
        firebreak.pager.page(target="user:bob", message="  ", created_by="U0BOB")


# -- through Slack ----------------------------------------------------------------------


def test_page_command_in_an_incident_channel_links_the_page_to_its_timeline(
    slack: Slack, sandbox: SlackSandbox, firebreak: Firebreak, general: str, clock: Clock
) -> None:
    slack.run("declare sev1 Payments failing", channel=general)
    channel = sandbox.channel_by_name("inc-1-payments-failing")
    assert channel is not None
    reply = slack.command(
        "service:checkout card auths failing", user="U0BOB", channel=channel.id, command="/page"
    )
    slack.settle()
    assert reply.status == 200
    assert (
        ":pager: <@U0BOB> paged service:checkout: card auths failing (P-1) for INC-1."
        in last_response_text(sandbox)
    )
    assert ":pager: <@U0BOB> paged service:checkout" in sandbox.messages(channel.id)[-1].text
    assert len(dms(sandbox, "U0ALICE")) == 1
    slack.command("ack 1", user="U0ALICE", channel=channel.id, command="/page")
    slack.settle()
    with firebreak.db.session_scope() as session:
        events = incidents.events(session, incidents.get(session, 1))
        page_events = timeline.for_page(session, 1)
    assert [e.kind for e in events[-4:]] == [
        "page_triggered",
        "page_step_notified",
        "page_delivered",
        "page_acknowledged",
    ]
    # One fact each, in both the incident's timeline and the page's history.
    assert [e.id for e in events[-4:]] == [e.id for e in page_events]
    assert all((e.incident_id, e.page_id) == (1, 1) for e in page_events)
    assert (
        ":white_check_mark: <@U0ALICE> acknowledged P-1: card auths failing"
        in sandbox.messages(channel.id)[-1].text
    )


def test_dm_buttons_acknowledge_escalate_and_resolve(
    slack: Slack, sandbox: SlackSandbox, firebreak: Firebreak, clock: Clock
) -> None:
    slack.command(
        "policy:payments DB replication broken", user="U0BOB", channel="C0ANY", command="/page"
    )
    slack.settle()
    [alice_dm] = [
        c for c in sandbox.snapshot()["channels"] if c.get("is_im") and "U0ALICE" in c["members"]
    ]
    message = alice_dm["messages"][0]
    action_ids = [
        e["action_id"] for b in message["blocks"] if b["type"] == "actions" for e in b["elements"]
    ]
    assert action_ids == [
        blocks.ACTION_PAGE_ACK,
        blocks.ACTION_PAGE_ESCALATE,
        blocks.ACTION_PAGE_RESOLVE,
    ]

    slack.block_action(
        blocks.ACTION_PAGE_ESCALATE, user="U0ALICE", channel=alice_dm["id"], value="1"
    )
    slack.settle()
    assert len(dms(sandbox, "U0CAROL")) == 1, "escalate now ran step 2 at once"
    slack.block_action(blocks.ACTION_PAGE_ACK, user="U0CAROL", channel=alice_dm["id"], value="1")
    slack.settle()
    assert page_row(firebreak).acknowledged_by == "U0CAROL"
    slack.block_action(blocks.ACTION_PAGE_ACK, user="U0ALICE", channel=alice_dm["id"], value="1")
    slack.settle()
    assert "P-1 was already acknowledged by <@U0CAROL>." in last_response_text(sandbox)
    assert page_row(firebreak).acknowledged_by == "U0CAROL"
    slack.block_action(
        blocks.ACTION_PAGE_RESOLVE, user="U0CAROL", channel=alice_dm["id"], value="1"
    )
    slack.settle()
    assert page_row(firebreak).state == "resolved"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("schedule:nope help", "There is no schedule `nope`. Known: primary."),
        ("<@U0NOBODY> hi", "is not in `people:`"),
        ("schedule:primary", "Say what it is about"),
        ("ack", "Usage: `/page ack <id>`"),
        ("team:sre hi", "is not something I can page"),
    ],
)
def test_bad_page_commands_are_answered_at_once(slack: Slack, text: str, expected: str) -> None:
    reply = slack.command(text, user="U0BOB", channel="C0ANY", command="/page")
    assert reply.status == 200 and expected in reply.json()["text"]


def test_ack_of_an_unknown_page_says_so(slack: Slack, sandbox: SlackSandbox) -> None:
    slack.command("ack 42", user="U0BOB", channel="C0ANY", command="/page")
    slack.settle()
    assert "There is no page P-42" in last_response_text(sandbox)


def test_firebreak_page_from_the_terminal_notifies_the_first_step(
    sandbox: SlackSandbox, announce_channel: str, database_url: str, tmp_path: Path
) -> None:
    config = tmp_path / "firebreak.yaml"
    config.write_text(yaml.safe_dump(oncall_data(announce_channel)))
    env = {
        "DATABASE_URL": database_url,
        "FIREBREAK_CONFIG": str(config),
        "SLACK_API_URL": sandbox.api_url,
        "SLACK_BOT_TOKEN": TOKEN,
        "SLACK_SIGNING_SECRET": SECRET,
    }
    result = CliRunner().invoke(main, ["page", "carol", "Certificate", "expires", "today"], env=env)
    assert result.exit_code == 0, result.output
    assert "Paged user:carol (P-1), state triggered." in result.output
    assert dms(sandbox, "U0CAROL") and "Certificate expires today" in dms(sandbox, "U0CAROL")[0]

    unknown = CliRunner().invoke(main, ["page", "schedule:nope", "hello"], env=env)
    assert unknown.exit_code == 2
    assert "There is no schedule `nope`. Known: primary." in unknown.output
