"""The `/oncall` grammar: pure parsing, and "until" read in a time zone at an instant."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings

from bot.config import FileConfig
from bot.oncall.configuration import Schedule
from bot.slack import oncall_grammar as grammar
from bot.slack.grammar import ParseError
from tests.conftest import PEOPLE
from tests.test_grammar import hostile_text

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


# Saturday 2026-03-28 20:00 in Berlin (CET); the clocks go forward that night.
SATURDAY_EVENING = datetime(2026, 3, 28, 19, 0, tzinfo=UTC)
TODAY = SATURDAY_EVENING.date()


def until(text: str) -> grammar.Until:
    parsed = grammar.parse(f"override primary alice until {text}", CONFIG, today=TODAY)
    assert isinstance(parsed, grammar.AddOverride) and parsed.until is not None
    return parsed.until


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


# --- limits and hostile input -----------------------------------------------------------------


def error_of(text: str, today: date = TODAY) -> str:
    with pytest.raises(ParseError) as error:
        grammar.parse(text, CONFIG, today=today)
    return str(error.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("override cancel 2147483647", grammar.CancelOverride(2147483647)),
        ("override cancel #007", grammar.CancelOverride(7)),
        (
            "override primary alice 52w",
            grammar.AddOverride("primary", "alice", timedelta(weeks=52)),
        ),
        (
            "override primary alice 365d",
            grammar.AddOverride("primary", "alice", timedelta(days=365)),
        ),
        (
            "override primary alice until 2099-12-31 23:59",
            grammar.AddOverride(
                "primary", "alice", until=grammar.Until(time(23, 59), date(2099, 12, 31))
            ),
        ),
        (  # somewhere on Earth it is still yesterday
            "override primary alice until 2026-03-27 23:00",
            grammar.AddOverride(
                "primary", "alice", until=grammar.Until(time(23, 0), date(2026, 3, 27))
            ),
        ),
    ],
)
def test_values_at_the_limits_are_accepted(text: str, expected: grammar.Command) -> None:
    assert grammar.parse(text, CONFIG, today=TODAY) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "override cancel 2147483648",
            "`2147483648` is not an override id: ids are numbers from 1 to 2147483647",
        ),
        ("override cancel #99999999999999999999", "is not an override id"),
        ("override cancel 0", "`0` is not an override id"),
        ("override cancel ²", "`²` is not an override id"),  # isdigit() said yes, int() no
        ("override cancel ١٢", "`١٢` is not an override id"),
        ("override primary alice 99999999999w", "`99999999999w` is longer than a year"),
        ("override primary alice " + "9" * 5000 + "s", "is not a duration"),
        ("override primary alice 53w", "`53w` is longer than a year"),
        ("override primary alice 366d", "`366d` is longer than a year"),
        ("override primary alice 0s", "`0s` is not a duration"),
        ("override primary alice until 9999-12-31 09:00", "`9999-12-31` is too far ahead"),
        ("override primary alice until 2100-01-01 00:00", "must end before 2100"),
        ("override primary alice until 2026-03-26 09:00", "`2026-03-26` is in the past"),
        ("override primary alice until 0001-01-01 09:00", "is in the past"),
        (  # Arabic-Indic digits: 2026-11-22
            "override primary alice until \u0662\u0660\u0662\u0666-\u0661\u0661-\u0662\u0662 09:00",
            "After `until` write a time",
        ),
    ],
)
def test_values_beyond_the_limits_are_refused(text: str, message: str) -> None:
    assert message in error_of(text)


def test_an_unknown_verb_is_answered_with_help_not_echoed() -> None:
    message = error_of("primary " + "x" * 1024 * 1024)
    assert message.startswith("`primary " + "x" * 22 + "…` is not a command I know.")
    assert message.endswith(grammar.HELP) and len(message) < 4000


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<!channel>", "`&lt;!channel&gt;` is not a schedule. Schedules: `primary`."),
        ("override primary <!here> 2h", "&lt;!here&gt; is not someone in `people:`"),
        ("override <https://evil|x> alice 2h", "`&lt;https://evil|x&gt;` is not a schedule"),
        ("override primary alice <!channel>", "`&lt;!channel&gt;` is not a duration"),
        ("override cancel <!subteam^S1>", "`&lt;!subteam^S1&gt;` is not an override id"),
    ],
)
def test_errors_quote_input_escaped(text: str, message: str) -> None:
    error = error_of(text)
    assert message in error and "<!" not in error


def test_the_until_date_bound_uses_the_clock_by_default() -> None:
    with pytest.raises(ParseError, match="is in the past"):
        grammar.parse("override primary alice until 2001-01-01 09:00", CONFIG)


def only_commands_or_parse_errors(parse: Callable[[], object]) -> object:
    try:
        return parse()
    except ParseError as error:
        assert len(str(error)) <= 4000 and "\x00" not in str(error)
        return None


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile_text())
def test_any_oncall_text_is_a_command_or_a_parse_error(text: str) -> None:
    parsed = only_commands_or_parse_errors(lambda: grammar.parse(text, CONFIG, today=TODAY))
    assert parsed is None or isinstance(parsed, grammar.Command)
    if isinstance(parsed, grammar.CancelOverride):
        assert 1 <= parsed.override_id <= 2147483647
    if isinstance(parsed, grammar.AddOverride):
        if parsed.length is not None:
            assert timedelta(0) < parsed.length <= timedelta(days=365)
            assert SATURDAY_EVENING + parsed.length > SATURDAY_EVENING  # no overflow
        else:
            assert parsed.until is not None
            assert parsed.until.resolve(SATURDAY_EVENING, BERLIN).year < 2101
