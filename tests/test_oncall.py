"""On call end to end: overrides on the real database, `/oncall`, the calendar feed,
hand-off announcements and `firebreak oncall`.

The frozen "now" is Wednesday 2026-03-25 12:00 in Berlin (11:00 UTC). Then `primary`
(weekly from Monday 2026-01-05: alice, bob, carol...) has carol, in turn 11, until Monday
2026-03-30 09:00 CEST, then alice; `secondary` (daily at 08:00 New York from 2026-01-05:
bob, carol...) has bob, in turn 78, until 08:00 EDT (12:00 UTC), then carol.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from freezegun import freeze_time
from icalendar import Calendar  # type: ignore[import-untyped]
from sqlalchemy import select
from werkzeug.test import Client

from bot.app import Firebreak
from bot.cli import main
from bot.config import FileConfig, SlackSection
from bot.db import Database, utcnow
from bot.jobs import JobRunner
from bot.oncall import OncallError, overrides, schedules
from bot.oncall.configuration import Schedule
from bot.oncall.handoffs import due_handoffs
from bot.oncall.ics import ics_token
from bot.oncall.models import Handoff, OncallOverride
from bot.sandbox import SlackSandbox
from bot.sandbox.outbound import Reply
from bot.slack.announcer import SlackAnnouncer
from bot.slack.outbox import SlackOutbox
from tests.conftest import PEOPLE, SECRET, Slack

NOW = "2026-03-25 11:00:00"  # Wed 12:00 CET
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "firebreak.yaml"


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def epoch(text: str) -> int:
    return int(utc(text).timestamp())


@pytest.fixture
def oncall_channel(sandbox: SlackSandbox) -> str:
    return sandbox.add_channel("oncall", members=[p.slack for p in PEOPLE.values()])


def make_schedules(handoff_channel: str | None) -> dict[str, Schedule]:
    layer: dict[str, Any] = {"name": "weekly", "users": ["alice", "bob", "carol"]}
    layer |= {"rotation": "weekly", "handoff": "mon 09:00", "start": "2026-01-05"}
    daily: dict[str, Any] = {"name": "daily", "users": ["bob", "carol"], "rotation": "daily"}
    daily |= {"handoff": "08:00", "start": "2026-01-05"}
    planned = {"user": "carol", "start": "2026-03-26T12:00", "end": "2026-03-26T14:00"}
    return {
        "primary": Schedule.model_validate(
            {"timezone": "Europe/Berlin", "layers": [layer], "handoff_channel": handoff_channel}
        ),
        "secondary": Schedule.model_validate(
            {"timezone": "America/New_York", "layers": [daily], "overrides": [planned]}
        ),
    }


@pytest.fixture
def file_config(announce_channel: str, oncall_channel: str) -> FileConfig:
    return FileConfig(
        slack=SlackSection(announce_channel=announce_channel),
        people=PEOPLE,
        schedules=make_schedules(oncall_channel),
    )


@pytest.fixture
def db(database_url: str) -> Any:
    database = Database(database_url)
    yield database
    database.dispose()


def now_person(db: Database, config: FileConfig, schedule: str, at: str) -> str | None:
    with db.session_scope() as session:
        shift = schedules.on_call(session, config.oncall, schedule, utc(at))
    return shift.person if shift else None


# -- overrides ------------------------------------------------------------------------------


@freeze_time(NOW)
def test_override_takes_over_until_cancelled(db: Database, file_config: FileConfig) -> None:
    with db.session_scope() as session:
        override = overrides.add(
            session,
            file_config.oncall,
            schedule="primary",
            person="bob",
            starts_at=utc("2026-03-25 12:00"),
            ends_at=utc("2026-03-25 18:00"),
            created_by="U0ALICE",
            now=utcnow(),
        )
        override_id = override.id
    assert now_person(db, file_config, "primary", "2026-03-25 11:59") == "carol"
    with db.session_scope() as session:
        shift = schedules.on_call(session, file_config.oncall, "primary", utc("2026-03-25 13:00"))
        assert shift is not None
        assert (shift.person, shift.source) == ("bob", f"override #{override_id}")
        assert (shift.start, shift.end) == (utc("2026-03-25 12:00"), utc("2026-03-25 18:00"))
        later = schedules.upcoming(session, file_config.oncall, "primary", utc("2026-03-25 13:00"))
        assert [(s.person, s.end) for s in later] == [
            ("bob", utc("2026-03-25 18:00")),
            ("carol", utc("2026-03-30 07:00")),
        ]
    with db.session_scope() as session:
        cancelled = overrides.cancel(session, override_id, by="U0BOB", now=utcnow())
        assert (cancelled.cancelled_by, cancelled.cancelled_at) == ("U0BOB", utc(NOW))
    assert now_person(db, file_config, "primary", "2026-03-25 13:00") == "carol"
    with db.session_scope() as session, pytest.raises(OncallError, match="already cancelled"):
        overrides.cancel(session, override_id, by="U0BOB", now=utcnow())
    with db.session_scope() as session, pytest.raises(OncallError, match="no override #99"):
        overrides.cancel(session, 99, by="U0BOB", now=utcnow())


@freeze_time(NOW)
@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"schedule": "tertiary"}, "no schedule 'tertiary'. Schedules: primary, secondary"),
        ({"person": "dave"}, "'dave' is not in people: .*alice, bob, carol"),
        ({"ends_at": utc("2026-03-25 11:30")}, "ends .* before it starts"),
        (
            {"starts_at": utc("2026-03-24 09:00"), "ends_at": utc("2026-03-25 10:00")},
            "already past",
        ),
    ],
)
def test_override_mistakes_are_explained(
    db: Database, file_config: FileConfig, fields: dict[str, Any], message: str
) -> None:
    request: dict[str, Any] = {
        "schedule": "primary",
        "person": "bob",
        "starts_at": utc("2026-03-25 12:00"),
        "ends_at": utc("2026-03-25 18:00"),
        "created_by": "U0ALICE",
        "now": utcnow(),
    }
    with db.session_scope() as session, pytest.raises(OncallError, match=message):
        overrides.add(session, file_config.oncall, **(request | fields))
    with db.session_scope() as session:
        assert overrides.active(session, "primary", utc("2026-01-01"), utc("2027-01-01")) == []


def test_config_overrides_are_in_the_schedule(db: Database, file_config: FileConfig) -> None:
    assert now_person(db, file_config, "secondary", "2026-03-26 15:59") == "bob"
    assert now_person(db, file_config, "secondary", "2026-03-26 16:00") == "carol"
    assert now_person(db, file_config, "secondary", "2026-03-26 18:00") == "bob"
    with db.session_scope() as session, pytest.raises(OncallError, match="no schedule 'nope'"):
        schedules.on_call(session, file_config.oncall, "nope", utc(NOW))


# -- /oncall --------------------------------------------------------------------------------


def oncall(slack: Slack, text: str, user: str = "U0ALICE") -> Reply:
    """`/oncall <text>` from `user`, then wait for the work it started."""
    reply = slack.command(text, user=user, channel="C0GENERAL", command="/oncall")
    slack.settle()
    return reply


def response(sandbox: SlackSandbox) -> str:
    payload = sandbox.responses()[-1].payload
    return str(payload.get("blocks") or payload.get("text"))


@freeze_time(NOW, tick=True)
def test_oncall_shows_every_schedule_now_and_next(slack: Slack, sandbox: SlackSandbox) -> None:
    reply = oncall(slack, "")
    assert reply.status == 200
    shown = response(sandbox)
    assert f"Now: <@U0CAROL> until <!date^{epoch('2026-03-30 07:00')}^" in shown
    assert f"Next: <@U0ALICE> until <!date^{epoch('2026-04-06 07:00')}^" in shown
    assert f"Now: <@U0BOB> until <!date^{epoch('2026-03-25 12:00')}^" in shown  # secondary
    assert f"Next: <@U0CAROL> until <!date^{epoch('2026-03-26 12:00')}^" in shown
    assert sandbox.responses()[-1].payload.get("response_type") == "ephemeral"


@freeze_time(NOW, tick=True)
def test_override_through_slack_shows_and_cancels(
    slack: Slack, sandbox: SlackSandbox, firebreak: Firebreak
) -> None:
    oncall(slack, "override primary <@U0BOB|bob> 2h")
    assert "Override #1: <@U0BOB> is on call for *primary*" in response(sandbox)
    with firebreak.db.session_scope() as session:
        row = session.get(OncallOverride, 1)
        assert row is not None
        assert (row.person, row.created_by) == ("bob", "U0ALICE")
        assert row.ends_at - row.starts_at == timedelta(hours=2)
    oncall(slack, "primary")
    shown = response(sandbox)
    assert "Now: <@U0BOB>" in shown and "#1 <@U0BOB>" in shown and "set by <@U0ALICE>" in shown
    oncall(slack, "override cancel 1", user="U0CAROL")
    assert "Cancelled override #1 (<@U0BOB> on *primary*)" in response(sandbox)
    oncall(slack, "override cancel 1")
    assert "Override #1 was already cancelled" in response(sandbox)


@freeze_time(NOW, tick=True)
def test_until_is_read_in_the_requesters_time_zone(slack: Slack, firebreak: Firebreak) -> None:
    oncall(slack, "override primary carol until tomorrow 09:00")  # from alice, in Berlin
    oncall(slack, "override secondary @alice until 18:00", user="U0BOB")  # in New York
    with firebreak.db.session_scope() as session:
        ends = {
            name: [o.ends_at for o in overrides.active(session, name, utc(NOW), utc("2027-01-01"))]
            for name in ("primary", "secondary")
        }
    assert ends == {
        "primary": [utc("2026-03-26 08:00")],  # tomorrow 09:00 CET, alice's zone
        "secondary": [utc("2026-03-25 22:00")],  # 18:00 EDT, bob's zone
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("nope", "`nope` is not a schedule. Schedules: `primary`, `secondary`."),
        ("override nope alice 2h", "`nope` is not a schedule. Schedules: `primary`, `secondary`."),
        ("override primary <@U0DAVE|dave> 2h", "not someone in `people:`"),
        ("override primary alice 2x", "`2x` is not a duration"),
        ("override primary alice until later", "After `until` write a time"),
        ("override primary alice", "Usage: `/oncall override <schedule>"),
        ("override cancel", "Usage: `/oncall override cancel <id>`"),
        ("override cancel x", "`x` is not an override id"),
        ("help", "*`/oncall` commands*"),
    ],
)
def test_bad_input_is_answered_in_the_acknowledgement(
    slack: Slack, sandbox: SlackSandbox, text: str, expected: str
) -> None:
    reply = oncall(slack, text)
    assert reply.status == 200
    assert expected in reply.json()["text"]
    assert sandbox.responses() == []


# -- the calendar feed ----------------------------------------------------------------------


@freeze_time(NOW)
def test_calendar_feed_with_right_wrong_and_missing_token(firebreak: Firebreak) -> None:
    with firebreak.db.session_scope() as session:
        overrides.add(
            session,
            firebreak.settings.file.oncall,
            schedule="primary",
            person="bob",
            starts_at=utc("2026-04-01 10:00"),
            ends_at=utc("2026-04-01 12:00"),
            created_by="U0ALICE",
            now=firebreak.clock(),
        )
    web = Client(firebreak.web)
    token = ics_token(SECRET, "primary")
    assert len(token) == 32
    answer = web.get(f"/oncall/primary.ics?token={token}")
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "text/calendar; charset=utf-8"
    text = answer.get_data(as_text=True)
    events = Calendar.from_ical(text).walk("VEVENT")
    summaries = [str(e["SUMMARY"]) for e in events]
    assert summaries[:4] == [
        "On call: carol (primary)",
        "On call: alice (primary)",
        "On call: bob (primary)",  # the override
        "On call: alice (primary)",
    ]
    assert "DTSTART:20260323T080000Z" in text and "DTEND:20260330T070000Z" in text
    # The week holding 2026-05-20 11:00 (8 weeks on), whole: to Monday 09:00 CEST.
    assert events[-1].decoded("DTEND") == utc("2026-05-25 07:00")
    assert len({str(e["UID"]) for e in events}) == len(events)
    again = web.get(f"/oncall/primary.ics?token={token}").get_data(as_text=True)
    uids = [str(e["UID"]) for e in Calendar.from_ical(again).walk("VEVENT")]
    assert uids == [str(e["UID"]) for e in events]
    assert web.get("/oncall/primary.ics?token=" + "0" * 32).status_code == 403
    assert web.get("/oncall/primary.ics").status_code == 403
    wrong_schedule = ics_token(SECRET, "secondary")
    assert web.get(f"/oncall/primary.ics?token={wrong_schedule}").status_code == 403
    assert web.get(f"/oncall/nope.ics?token={token}").status_code == 403  # primary's token
    assert web.get(f"/oncall/nope.ics?token={ics_token(SECRET, 'nope')}").status_code == 404


# -- hand-offs ------------------------------------------------------------------------------


def due_at(db: Database, config: FileConfig, at: str) -> list[tuple[str, str, str, str]]:
    with freeze_time(at), db.session_scope() as session:
        due = due_handoffs(session, config.oncall, datetime.now(UTC))
    return [(d.schedule, d.person, str(d.starts_at), str(d.ends_at)) for d in due]


def test_each_handoff_is_due_once(db: Database, file_config: FileConfig) -> None:
    assert due_at(db, file_config, "2026-03-30 06:59:30") == []
    first = [("primary", "alice", "2026-03-30 07:00:00+00:00", "2026-04-06 07:00:00+00:00")]
    assert due_at(db, file_config, "2026-03-30 07:00:30") == first
    assert due_at(db, file_config, "2026-03-30 07:01:30") == []
    # the planned override on secondary: carol 12:00-14:00 EDT, then bob again
    assert due_at(db, file_config, "2026-03-26 16:00:00") == [
        ("secondary", "carol", "2026-03-26 16:00:00+00:00", "2026-03-26 18:00:00+00:00")
    ]
    assert due_at(db, file_config, "2026-03-26 18:09:59") == [
        ("secondary", "bob", "2026-03-26 18:00:00+00:00", "2026-03-27 12:00:00+00:00")
    ]
    assert due_at(db, file_config, "2026-03-27 12:10:01") == []  # outside the lookback


def test_the_same_person_continuing_is_not_a_handoff(db: Database, file_config: FileConfig) -> None:
    with freeze_time(NOW), db.session_scope() as session:
        overrides.add(
            session,
            file_config.oncall,
            schedule="primary",
            person="carol",
            starts_at=utc("2026-03-30 07:00"),
            ends_at=utc("2026-03-30 09:00"),
            created_by="U0CAROL",
            now=utcnow(),
        )
    assert due_at(db, file_config, "2026-03-30 07:00:30") == []
    assert due_at(db, file_config, "2026-03-30 09:00:30") == [
        ("primary", "alice", "2026-03-30 09:00:00+00:00", "2026-04-06 07:00:00+00:00")
    ]


def handoffs(app: Firebreak) -> list[tuple[str, str | None, datetime]]:
    """The hand-offs recorded as announced."""
    with app.db.session_scope() as session:
        rows = session.scalars(select(Handoff).order_by(Handoff.id))
        return [(h.schedule, h.person, h.starts_at) for h in rows]


@freeze_time("2026-03-30 07:00:30", tick=True)
def test_announce_handoffs_dms_and_posts_once(
    firebreak: Firebreak, sandbox: SlackSandbox, oncall_channel: str
) -> None:
    firebreak.jobs.announce_handoffs()
    assert handoffs(firebreak) == [("primary", "alice", utc("2026-03-30 07:00"))]
    dms = [
        c.params for c in sandbox.calls_to("chat.postMessage") if c.params["channel"] == "U0ALICE"
    ]
    assert len(dms) == 1
    assert "You are now on call for *primary* until <!date^" in dms[0]["text"]
    posted = [m.text for m in sandbox.messages(oncall_channel)]
    assert len(posted) == 1 and "<@U0ALICE> is now on call for *primary*" in posted[0]
    firebreak.jobs.announce_handoffs()
    assert len(handoffs(firebreak)) == 1
    assert len(sandbox.calls_to("chat.postMessage")) == 2


@freeze_time("2026-03-30 07:00:30", tick=True)
def test_a_slack_failure_is_logged_not_raised(
    firebreak: Firebreak, sandbox: SlackSandbox, caplog: pytest.LogCaptureFixture
) -> None:
    broken = firebreak.settings.file.model_copy(update={"schedules": make_schedules("C0GONE")})
    outbox = SlackOutbox(firebreak.db, firebreak.client, firebreak.channels, firebreak.clock)
    announcer = SlackAnnouncer(firebreak.client, broken, outbox)
    JobRunner(firebreak.db, broken.oncall, {}, firebreak.clock, announcer).announce_handoffs()
    assert len(handoffs(firebreak)) == 1
    assert next(c.params["channel"] for c in sandbox.calls_to("chat.postMessage")) == "U0ALICE"
    assert "hand-off message in C0GONE for primary failed: channel_not_found" in caplog.text


# -- firebreak oncall -----------------------------------------------------------------------


def test_cli_oncall_at_a_time(database_url: str) -> None:
    env = {"FIREBREAK_CONFIG": str(EXAMPLE), "DATABASE_URL": database_url}
    result = CliRunner().invoke(main, ["oncall", "--at", "2026-03-25T12:00"], env=env)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "primary: carol until Thu 2026-03-26 09:00 CET, then bob until Thu 2026-03-26 17:00 CET",
        "follow-the-sun: bob until Wed 2026-03-25 20:00 EDT, "
        "then alice until Thu 2026-03-26 08:00 EDT",
    ]
    at_zone = ["oncall", "primary", "--at", "2026-12-24T12:00:00+01:00"]
    result = CliRunner().invoke(main, at_zone, env=env)
    assert result.output == (
        "primary: carol until Mon 2026-12-28 17:00 CET, then alice until Tue 2026-12-29 09:00 CET\n"
    )
    unknown = CliRunner().invoke(main, ["oncall", "nope"], env=env)
    assert unknown.exit_code == 2
    assert "there is no schedule 'nope'; schedules: primary, follow-the-sun" in unknown.output


def test_cli_prints_the_calendar_subscription_url(database_url: str) -> None:
    env: dict[str, str | None] = {"FIREBREAK_CONFIG": str(EXAMPLE), "DATABASE_URL": database_url}
    args = ["oncall", "primary", "--calendar-url", "https://firebreak.example.com/"]
    result = CliRunner().invoke(main, args, env=env | {"SLACK_SIGNING_SECRET": SECRET})
    token = ics_token(SECRET, "primary")
    assert f"  calendar: https://firebreak.example.com/oncall/primary.ics?token={token}\n" in (
        result.output
    )
    refused = CliRunner().invoke(main, args, env=env | {"SLACK_SIGNING_SECRET": None})
    assert refused.exit_code == 2 and "SLACK_SIGNING_SECRET is not set" in refused.output
