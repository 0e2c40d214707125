"""The postmortem follow-up: due times in working days in the team's zone (a DST week, a
weekend), reminders sent by the leader's job exactly once across a restart, reopening
cancels and resolving again re-arms, `/incident postmortem done` stops them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from bot.app import Firebreak, build
from bot.config import FileConfig, Settings
from bot.config import SlackSection as SlackSection
from bot.postmortem.config import DueAfter, PostmortemSection
from bot.postmortem.followup import add_working_days, due_time
from bot.sandbox import SlackSandbox
from tests.conftest import PEOPLE, Slack, last_response_text

BERLIN = ZoneInfo("Europe/Berlin")


def test_five_working_days_across_the_spring_dst_change_keep_the_wall_clock() -> None:
    resolved = datetime(2026, 3, 27, 9, 0, tzinfo=UTC)  # Friday 10:00 CET
    due = due_time(resolved, DueAfter(5, "working_days"), BERLIN)
    assert due == datetime(2026, 4, 3, 8, 0, tzinfo=UTC)  # Friday 10:00 CEST
    assert due.astimezone(BERLIN).hour == 10


def test_a_weekend_is_skipped_and_a_weekend_resolution_counts_from_monday() -> None:
    friday = datetime(2026, 5, 8, 15, 0, tzinfo=UTC)
    assert add_working_days(friday, 1, BERLIN) == datetime(2026, 5, 11, 15, 0, tzinfo=UTC)
    saturday = datetime(2026, 5, 9, 10, 0, tzinfo=UTC)
    assert add_working_days(saturday, 1, BERLIN) == datetime(2026, 5, 11, 10, 0, tzinfo=UTC)
    # 23:30 UTC on Friday is already Saturday 01:30 in Berlin: one working day is Monday.
    late = datetime(2026, 5, 8, 23, 30, tzinfo=UTC)
    assert add_working_days(late, 1, BERLIN) == datetime(2026, 5, 10, 23, 30, tzinfo=UTC)


def test_days_and_hours() -> None:
    resolved = datetime(2026, 10, 24, 10, 0, tzinfo=UTC)  # Saturday 12:00 CEST
    assert due_time(resolved, DueAfter(2, "days"), BERLIN) == datetime(
        2026, 10, 26, 11, 0, tzinfo=UTC
    )  # Monday 12:00 CET: the autumn change kept the wall clock
    assert due_time(resolved, DueAfter(48, "hours"), BERLIN) == datetime(
        2026, 10, 26, 10, 0, tzinfo=UTC
    )


@pytest.fixture
def file_config(announce_channel: str, tmp_path: object) -> FileConfig:
    return FileConfig(
        slack=SlackSection(announce_channel=announce_channel),
        people=PEOPLE,
        postmortem=PostmortemSection(timezone="Europe/Berlin", due_after="2 working days"),
    )


RESOLVED = datetime(2026, 3, 26, 9, 0, tzinfo=UTC)  # Thursday 10:00 CET
DUE = datetime(2026, 3, 30, 8, 0, tzinfo=UTC)  # Monday 10:00 CEST (DST on Sunday)


def at(moment: datetime) -> Callable[[], datetime]:
    return lambda: moment


@pytest.fixture
def resolved_channel(
    slack: Slack, sandbox: SlackSandbox, firebreak: Firebreak, general: str
) -> str:
    firebreak.clock.use(at(datetime(2026, 3, 26, 8, 0, tzinfo=UTC)))
    slack.run("declare sev2 Checkout latency above 2s", channel=general)
    channel = sandbox.channel_by_name("inc-1-checkout-latency-above-2s")
    assert channel is not None
    slack.run("role commander <@U0BOB|bob>", channel=channel.id)
    firebreak.clock.use(at(RESOLVED))
    slack.run("resolve Rolled back", channel=channel.id)
    return channel.id


def reminders(sandbox: SlackSandbox, channel: str) -> list[str]:
    return [m.text for m in sandbox.messages(channel) if "postmortem of INC-1" in m.text]


def dms(sandbox: SlackSandbox) -> list[str]:
    return [
        c.params["text"]
        for c in sandbox.calls_to("chat.postMessage")
        if c.params.get("channel") == "U0BOB" and c.response.get("ok")
    ]


def test_reminders_across_a_restart_exactly_once(
    slack: Slack,
    sandbox: SlackSandbox,
    firebreak: Firebreak,
    settings: Settings,
    resolved_channel: str,
) -> None:
    firebreak.clock.use(at(datetime(2026, 3, 27, 12, 0, tzinfo=UTC)))
    firebreak.jobs.remind_postmortems()
    assert reminders(sandbox, resolved_channel) == []  # not due yet

    firebreak.clock.use(at(DUE))
    firebreak.jobs.remind_postmortems()
    firebreak.jobs.remind_postmortems()
    [due] = reminders(sandbox, resolved_channel)
    assert due.startswith(
        ":alarm_clock: The postmortem of INC-1 is due now (Mon 30 Mar 10:00 CEST)"
    )
    assert "<@U0BOB>" in due
    assert len(dms(sandbox)) == 1

    firebreak.close()  # a restart: a new app and job runner on the same database
    again = build(settings)
    try:
        again.clock.use(at(DUE))
        again.jobs.remind_postmortems()
        assert len(reminders(sandbox, resolved_channel)) == 1, "not repeated after the restart"
        again.clock.use(at(datetime(2026, 3, 31, 7, 59, tzinfo=UTC)))
        again.jobs.remind_postmortems()
        assert len(reminders(sandbox, resolved_channel)) == 1, "the next one is a working day on"
        again.clock.use(at(datetime(2026, 4, 3, 9, 0, tzinfo=UTC)))  # Friday, days later
        again.jobs.remind_postmortems()
        texts = reminders(sandbox, resolved_channel)
        assert len(texts) == 2, "one reminder for the days missed, not one per day"
        assert texts[-1].startswith(":warning: The postmortem of INC-1 is overdue")
        assert "reminder 2" in texts[-1]
        assert len(dms(sandbox)) == 2

        again_slack = Slack(again, sandbox)
        again_slack.run("postmortem done", channel=resolved_channel, user="U0BOB")
        again.clock.use(at(datetime(2026, 4, 10, 9, 0, tzinfo=UTC)))
        again.jobs.remind_postmortems()
        assert len(reminders(sandbox, resolved_channel)) == 2, "done: no more reminders"
        again_slack.run("postmortem done", channel=resolved_channel, user="U0BOB")
        assert "already marked done" in last_response_text(sandbox)
    finally:
        again.close()


def test_reopening_cancels_and_resolving_again_rearms(
    slack: Slack, sandbox: SlackSandbox, firebreak: Firebreak, resolved_channel: str
) -> None:
    firebreak.clock.use(at(datetime(2026, 3, 27, 9, 0, tzinfo=UTC)))
    slack.run("status monitoring", channel=resolved_channel)  # reopened
    firebreak.clock.use(at(DUE))
    firebreak.jobs.remind_postmortems()
    assert reminders(sandbox, resolved_channel) == []
    slack.run("resolve", channel=resolved_channel)  # Monday 30 Mar 10:00 CEST: due Wed
    firebreak.jobs.remind_postmortems()
    assert reminders(sandbox, resolved_channel) == []
    firebreak.clock.use(at(datetime(2026, 4, 1, 8, 0, tzinfo=UTC)))
    firebreak.jobs.remind_postmortems()
    assert len(reminders(sandbox, resolved_channel)) == 1


def test_done_on_an_open_incident_is_refused(
    slack: Slack, sandbox: SlackSandbox, general: str
) -> None:
    slack.run("declare sev2 Still burning", channel=general)
    channel = sandbox.channel_by_name("inc-1-still-burning")
    assert channel is not None
    slack.run("postmortem done", channel=channel.id)
    assert "still open; resolve it first" in last_response_text(sandbox)
