"""The `/oncall` grammar: pure parsing, and "until" read in a time zone at an instant."""

from __future__ import annotations

import re
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.config import FileConfig
from bot.oncall.configuration import Schedule
from bot.slack import oncall_grammar as grammar
from bot.slack.grammar import ParseError
from tests.conftest import PEOPLE

BERLIN = ZoneInfo("Europe/Berlin")
CONFIG = FileConfig(
    people=PEOPLE,
    schedules={
        "primary": Schedule.model_validate(
            {
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
        )
    },
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", grammar.ShowAll()),
        ("  primary ", grammar.Show("primary")),
        ("HELP", grammar.Help()),
        (
            "override primary <@U0BOB|bob> 1h30m",
            grammar.AddOverride("primary", "bob", length=timedelta(minutes=90)),
        ),
        (
            "override primary @carol until tomorrow 9:00",
            grammar.AddOverride("primary", "carol", until=grammar.Until(time(9, 0), days_ahead=1)),
        ),
        ("override cancel #12", grammar.CancelOverride(12)),
    ],
)
def test_parses(text: str, expected: grammar.Command) -> None:
    assert grammar.parse(text, CONFIG) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("secondary", "`secondary` is not a schedule. Schedules: `primary`."),
        ("primary now", "is not a command I know"),
        ("override primary dave 2h", "dave is not someone in `people:`"),
        ("override primary <@U0ALICE|alice> until 25:00", "After `until` write a time"),
        ("override primary alice until 2026-02-30 09:00", "After `until` write a time"),
        ("override primary alice 2h extra", "Usage: `/oncall override"),
        ("override cancel", "Usage: `/oncall override cancel <id>`"),
    ],
)
def test_mistakes_say_what_is_accepted(text: str, message: str) -> None:
    with pytest.raises(ParseError, match=re.escape(message)):
        grammar.parse(text, CONFIG)


def until(text: str) -> grammar.Until:
    parsed = grammar.parse(f"override primary alice until {text}", CONFIG)
    assert isinstance(parsed, grammar.AddOverride) and parsed.until is not None
    return parsed.until


# Saturday 2026-03-28 20:00 in Berlin (CET); the clocks go forward that night.
SATURDAY_EVENING = datetime(2026, 3, 28, 19, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "local"),
    [
        ("22:00", "Sat 2026-03-28 22:00 CET"),  # later today
        ("18:00", "Sun 2026-03-29 18:00 CEST"),  # already past today: tomorrow, after the change
        ("tomorrow 09:00", "Sun 2026-03-29 09:00 CEST"),
        ("today 18:00", "Sat 2026-03-28 18:00 CET"),  # in the past: the service refuses it
        ("mon 09:00", "Mon 2026-03-30 09:00 CEST"),
        ("sat 19:00", "Sat 2026-04-04 19:00 CEST"),  # this Saturday's 19:00 is past
        ("2026-11-22 09:00", "Sun 2026-11-22 09:00 CET"),
        ("2026-11-22T09:00", "Sun 2026-11-22 09:00 CET"),
    ],
)
def test_until_resolves_in_the_requesters_zone(text: str, local: str) -> None:
    moment = until(text).resolve(SATURDAY_EVENING, BERLIN)
    assert moment.tzinfo is UTC
    assert moment.astimezone(BERLIN).strftime("%a %Y-%m-%d %H:%M %Z") == local
