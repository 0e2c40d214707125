"""The calendar feed over HTTP into the real app: the token before the name, whole shifts.

`primary` hands off weekly on Monday 09:00 Berlin (alice, bob, carol from 2026-01-05);
`office` is bob and carol, daily, only 09:00-17:00 Berlin on weekdays. The first poll is at
Wednesday 2026-03-25 11:00 UTC, so the window's far edge, 8 weeks on, is Wednesday
2026-05-20 11:00 UTC: inside bob's primary week (to Monday 2026-05-25 07:00 UTC) and inside
an office day (to 15:00 UTC).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from icalendar import Calendar  # type: ignore[import-untyped]
from werkzeug.test import Client

from bot.app import Firebreak
from bot.config import FileConfig, SlackSection
from bot.oncall.configuration import Schedule
from bot.oncall.ics import ics_token
from tests.conftest import PEOPLE, SECRET

FIRST_POLL = datetime(2026, 3, 25, 11, 0, tzinfo=UTC)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.fixture
def file_config(announce_channel: str) -> FileConfig:
    weekly = {"name": "weekly", "users": ["alice", "bob", "carol"], "rotation": "weekly"}
    weekly |= {"handoff": "mon 09:00", "start": "2026-01-05"}
    office = {"name": "office", "users": ["bob", "carol"], "rotation": "daily"}
    office |= {"handoff": "09:00", "start": "2026-01-05", "restrict": ["mon-fri 09:00-17:00"]}
    return FileConfig(
        slack=SlackSection(announce_channel=announce_channel),
        people=PEOPLE,
        schedules={
            "primary": Schedule.model_validate({"timezone": "Europe/Berlin", "layers": [weekly]}),
            "office": Schedule.model_validate({"timezone": "Europe/Berlin", "layers": [office]}),
        },
    )


class Poller:
    """GETs the feed at chosen instants of the app's own clock."""

    def __init__(self, app: Firebreak) -> None:
        self.app = app
        self.web = Client(app.web)

    def get(self, path: str, at: datetime = FIRST_POLL) -> Any:
        self.app.clock.use(lambda: at)
        return self.web.get(path)

    def events(self, schedule: str, at: datetime) -> list[dict[str, str]]:
        """Each VEVENT's properties as text, without DTSTAMP (the time the feed was made)."""
        answer = self.get(f"/oncall/{schedule}.ics?token={ics_token(SECRET, schedule)}", at)
        assert answer.status_code == 200, answer.get_data(as_text=True)
        calendar = Calendar.from_ical(answer.get_data())
        return [
            {name: event[name].to_ical().decode() for name in event if name != "DTSTAMP"}
            for event in calendar.walk("VEVENT")
        ]


@pytest.fixture
def poller(firebreak: Firebreak) -> Iterator[Poller]:
    yield Poller(firebreak)


def ends(events: list[dict[str, str]]) -> list[str]:
    return [event["DTEND"] for event in events]


# -- the token comes before the name -----------------------------------------------------


def test_an_unknown_schedule_with_a_wrong_or_missing_token_is_403_like_a_known_one(
    poller: Poller,
) -> None:
    known_wrong = poller.get("/oncall/primary.ics?token=" + "0" * 32)
    assert known_wrong.status_code == 403
    primary_token = ics_token(SECRET, "primary")
    for path in (
        "/oncall/nope.ics?token=" + "0" * 32,
        "/oncall/nope.ics",
        "/oncall/nope.ics?token=",
        f"/oncall/nope.ics?token={primary_token}",  # another schedule's token
        "/oncall/primary.ics?token=%C3%A9t%C3%A9",  # not ASCII: still a plain 403, not a 500
    ):
        answer = poller.get(path)
        assert (answer.status_code, answer.get_data()) == (403, known_wrong.get_data()), path


def test_an_unknown_schedule_is_404_only_with_the_token_for_that_name(poller: Poller) -> None:
    answer = poller.get(f"/oncall/nope.ics?token={ics_token(SECRET, 'nope')}")
    assert answer.status_code == 404
    assert answer.get_data(as_text=True) == "no such schedule\n"
    assert poller.get(f"/oncall/primary.ics?token={ics_token(SECRET, 'primary')}").status_code == (
        200
    )


# -- whole shifts ---------------------------------------------------------------------------


def test_two_polls_minutes_apart_give_identical_events_ending_on_a_handoff(
    poller: Poller,
) -> None:
    first = poller.events("primary", FIRST_POLL)
    again = poller.events("primary", FIRST_POLL + timedelta(minutes=7))
    assert again == first
    # From the start of carol's current week to the end of the week holding 2026-05-20 11:00
    # UTC (8 weeks on), not cut at that instant.
    assert first[0]["DTSTART"] == "20260323T080000Z"  # Monday 09:00 CET
    assert ends(first)[-1] == "20260525T070000Z"  # Monday 09:00 CEST, a real hand-off
    assert len(first) == 9  # the weeks from 2026-03-23 to 2026-05-18
    assert [e["SUMMARY"] for e in first[-2:]] == [
        "On call: alice (primary)",
        "On call: bob (primary)",
    ]


def test_events_two_polls_share_are_identical_as_the_window_moves(poller: Poller) -> None:
    """A later poll drops shifts that are over and adds whole new ones; a shift both polls
    show is the same event in both, so a subscriber never sees a hand-off move."""
    for later in (timedelta(hours=5), timedelta(days=3), timedelta(days=5, hours=1)):
        first = poller.events("primary", FIRST_POLL)
        second = poller.events("primary", FIRST_POLL + later)
        by_uid = {event["UID"]: event for event in first}
        shared = [event for event in second if event["UID"] in by_uid]
        assert shared, later
        assert all(event == by_uid[event["UID"]] for event in shared), later
        assert all(end.endswith("T070000Z") for end in ends(second)), later  # Mondays 09:00
    # After Monday's hand-off the feed starts with alice's week and has one more at the end.
    moved = poller.events("primary", FIRST_POLL + timedelta(days=5, hours=1))
    assert (moved[0]["DTSTART"], ends(moved)[-1]) == ("20260330T070000Z", "20260601T070000Z")


def test_the_last_event_is_the_whole_shift_or_the_one_before_a_gap(poller: Poller) -> None:
    # 8 weeks on is 13:00 Berlin on a weekday: the feed ends with that day's whole shift.
    inside = poller.events("office", FIRST_POLL)
    assert (inside[-1]["DTSTART"], inside[-1]["DTEND"]) == ("20260520T070000Z", "20260520T150000Z")
    # 8 weeks on is 20:00 Berlin, when nobody is on call: the feed ends with the day's shift,
    # before that instant, and nothing is invented after it.
    evening = FIRST_POLL.replace(hour=18)
    in_gap = poller.events("office", evening)
    assert in_gap[-1]["DTEND"] == "20260520T150000Z"
    assert in_gap[-1] == inside[-1]
    assert utc("2026-05-20 15:00") < evening + timedelta(weeks=8)
