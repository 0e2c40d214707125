"""The `/incident` and `/page` grammars, parsed without any database or Slack call."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.config import FileConfig
from bot.incidents.config import IncidentsSection
from bot.people import Person
from bot.slack import grammar, page_grammar
from bot.slack.grammar import ParseError
from tests.conftest import PEOPLE

CONFIG = FileConfig(people={"dana": Person(slack="U0DANA")})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", grammar.Help()),
        ("help", grammar.Help()),
        ("declare", grammar.Declare(title="")),
        ("declare sev1 API down", grammar.Declare(title="API down", severity="sev1")),
        (
            "DECLARE SEV2 Disk full on db-3",
            grammar.Declare(title="Disk full on db-3", severity="sev2"),
        ),
        ("declare Severe latency", grammar.Declare(title="Severe latency")),
        ("declare sev1", grammar.Declare(title="", severity="sev1")),
        ("sev SEV3", grammar.SetSeverity("sev3")),
        ("status Monitoring", grammar.SetStatus("monitoring")),
        ("role comms <@U0BOB|bob>", grammar.AssignRole("comms", "U0BOB")),
        ("role ops <@W0ENT>", grammar.AssignRole("ops", "W0ENT")),
        ("role scribe @dana", grammar.AssignRole("scribe", "U0DANA")),
        ("note  multi word   note ", grammar.AddNote("multi word   note")),
        ("resolve", grammar.Resolve("")),
        ("resolve Fixed by restart", grammar.Resolve("Fixed by restart")),
        ("timeline", grammar.ShowTimeline()),
        ("list", grammar.ListOpen()),
    ],
)
def test_parses(text: str, expected: grammar.Command) -> None:
    assert grammar.parse(text, CONFIG) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sev", "Usage: `/incident sev <sevN>`"),
        ("sev critical", "`critical` is not a severity"),
        ("status done", "`done` is not a status"),
        ("role", "Usage: `/incident role <role> <@person>`"),
        ("role ops <@U0BOB> extra", "Usage"),
        ("role ops <#C0123|general>", "is not a person I know"),
        ("timeline now", "takes no arguments"),
        ("close", "`close` is not an `/incident` command"),
    ],
)
def test_errors_say_what_was_wrong(text: str, message: str) -> None:
    with pytest.raises(ParseError, match=None) as error:
        grammar.parse(text, CONFIG)
    assert message in str(error.value)


def test_configured_names_are_what_the_grammar_accepts() -> None:
    config = FileConfig(
        incidents=IncidentsSection(
            severities={"p1": "Page now", "p2": "Business hours"},
            default_severity="p2",
            statuses=["open", "mitigated", "resolved"],
            roles=["commander", "liaison"],
        )
    )
    assert grammar.parse("declare p1 Pager storm", config) == grammar.Declare("Pager storm", "p1")
    assert grammar.parse("status mitigated", config) == grammar.SetStatus("mitigated")
    with pytest.raises(ParseError, match="Choose one of: p1, p2"):
        grammar.parse("sev sev1", config)


# --- limits and hostile input -----------------------------------------------------------------

MIB = 1024 * 1024
PAGE_CONFIG = FileConfig(people=PEOPLE)


def error_of(parse: Callable[[], object]) -> str:
    with pytest.raises(ParseError) as error:
        parse()
    return str(error.value)


@pytest.mark.parametrize("first", ["sev9", "SEV9", "sev0", "sev-1", "sev12"])
def test_an_unknown_severity_is_refused_not_taken_into_the_title(first: str) -> None:
    message = error_of(lambda: grammar.parse(f"declare {first} x", CONFIG))
    assert f"`{first.lower()}` is not a severity" in message
    assert "Choose one of: sev1, sev2, sev3, sev4, sev5" in message


def test_a_title_may_start_with_a_severity_word_after_the_severity() -> None:
    assert grammar.parse("declare sev3 sev9 x", CONFIG) == grammar.Declare("sev9 x", "sev3")


def test_severity_shapes_follow_the_configured_names() -> None:
    config = FileConfig.model_validate(
        {"incidents": {"severities": {"p1": "Now", "p2": "Soon"}, "default_severity": "p2"}}
    )
    assert "`p7` is not a severity" in error_of(lambda: grammar.parse("declare p7 x", config))
    assert "`sev2` is not a severity" in error_of(lambda: grammar.parse("declare sev2 x", config))
    # Not shaped like p1..p9: a title.
    assert grammar.parse("declare p99 latency", config) == grammar.Declare("p99 latency")
    assert grammar.parse("declare several things", config) == grammar.Declare("several things")


def test_titles_are_one_line_without_control_characters_and_at_most_200() -> None:
    parsed = grammar.parse("declare sev2 API\x07 down\n\ton eu-1\x1b", CONFIG)
    assert parsed == grammar.Declare("API down on eu-1", "sev2")
    assert grammar.parse("declare " + "x" * 200, CONFIG) == grammar.Declare("x" * 200)
    message = error_of(lambda: grammar.parse("declare sev1 " + "x" * 201, CONFIG))
    assert "The title is 201 characters long; the limit is 200." in message
    assert "title contains a NUL byte" in error_of(lambda: grammar.parse("declare a\x00b", CONFIG))


@pytest.mark.parametrize(
    ("verb", "what", "limit"), [("note", "note", 3000), ("resolve", "resolution summary", 3000)]
)
def test_notes_and_summaries_have_limits(verb: str, what: str, limit: int) -> None:
    assert f"The {what} contains a NUL byte" in error_of(
        lambda: grammar.parse(f"{verb} a\x00b", CONFIG)
    )
    message = error_of(lambda: grammar.parse(f"{verb} " + "y" * (limit + 1), CONFIG))
    assert f"The {what} is {limit + 1:,} characters long; the limit is {limit:,}." in message
    kept = grammar.parse(f"{verb} line one\x01\n\tline two", CONFIG)
    assert kept in (
        grammar.AddNote("line one\n\tline two"),
        grammar.Resolve("line one\n\tline two"),
    )


def test_a_note_of_control_characters_only_is_empty() -> None:
    assert "The note is empty" in error_of(lambda: grammar.parse("note \x01\x02", CONFIG))


def test_an_unknown_verb_is_answered_with_help_not_echoed() -> None:
    message = error_of(lambda: grammar.parse("x" * MIB, CONFIG))
    assert message.startswith("`" + "x" * 30 + "…` is not an `/incident` command.")
    assert message.endswith(grammar.HELP)
    assert len(message) < 4000


@pytest.mark.parametrize(
    ("text", "quoted"),
    [
        ("<!channel>", "`&lt;!channel&gt;` is not an `/incident` command"),
        ("sev <!here>", "`&lt;!here&gt;` is not a severity"),
        ("status <https://evil|fake>", "`&lt;https://evil|fake&gt;` is not a status"),
        ("role ops <!subteam^S1>", "`&lt;!subteam^S1&gt;` is not a person I know"),
        ("status " + "z" * MIB, "`" + "z" * 40 + "…` is not a status"),
    ],
)
def test_errors_quote_input_short_and_escaped(text: str, quoted: str) -> None:
    message = error_of(lambda: grammar.parse(text, CONFIG))
    assert quoted in message
    assert "<!" not in message and len(message) < 4000


def test_an_unknown_person_is_refused_with_the_names() -> None:
    message = error_of(lambda: grammar.parse("role ops zed", CONFIG))
    assert "`zed` is not a person I know" in message and "`dana`" in message


# --- /page ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ack 12", page_grammar.Act("ack", 12)),
        ("acknowledge P-12", page_grammar.Act("ack", 12)),
        ("resolve p-2147483647", page_grammar.Act("resolve", 2147483647)),
        ("escalate 007", page_grammar.Act("escalate", 7)),
        (
            "@alice disk\x07 full\nsee graph",
            page_grammar.Trigger("user:alice", "disk full\nsee graph"),
        ),
        ("<@U0BOB|bob> " + "m" * 1000, page_grammar.Trigger("user:bob", "m" * 1000)),
    ],
)
def test_page_parses(text: str, expected: page_grammar.PageCommand) -> None:
    assert page_grammar.parse(text, PAGE_CONFIG) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ack 2147483648", "`2147483648` is not a page id: ids are numbers from 1 to 2147483647"),
        ("resolve 99999999999999999999999", "is not a page id"),
        ("ack 0", "`0` is not a page id"),
        ("ack P-0", "`P-0` is not a page id"),
        ("ack -3", "`-3` is not a page id"),
        ("ack ١٢", "`١٢` is not a page id"),
        ("ack 12 13", "Usage: `/page ack <id>`"),
        ("@alice a\x00b", "The message contains a NUL byte"),
        ("@alice " + "m" * 1001, "The message is 1,001 characters long; the limit is 1,000."),
        ("@alice \x01\x02", "Say what it is about"),
        ("<!channel> hi", "`&lt;!channel&gt;` is not something I can page"),
        ("<@U0NOBODY|x> hi", "<@U0NOBODY|x> is not in `people:`"),
        ("schedule:<!here> hi", "There is no schedule `&lt;!here&gt;`. Known: none configured."),
    ],
)
def test_page_limits(text: str, message: str) -> None:
    assert message in error_of(lambda: page_grammar.parse(text, PAGE_CONFIG))


def test_page_unknown_target_is_answered_with_help_not_echoed() -> None:
    message = error_of(lambda: page_grammar.parse("q" * MIB + " hello", PAGE_CONFIG))
    assert message.startswith("`" + "q" * 30 + "…` is not something I can page.")
    assert message.endswith(page_grammar.HELP)
    assert len(message) < 4000


# --- any input: a command or a ParseError, never anything else --------------------------------

TOKENS = [
    *grammar.SUBCOMMANDS,
    *("ack", "acknowledge", "escalate", "resolve", "help", "override", "cancel", "until"),
    *("sev1", "SEV9", "sev-2", "p7", "investigating", "ops", "commander", "@dana", "dana"),
    *("<@U0DANA>", "<@U0BOB|bob>", "<@U0DANA|", "<!channel>", "<https://evil|fake>", "&lt;"),
    *("P-12", "p-0", "#12", "#", "0", "-1", "2147483647", "2147483648", "9" * 40, "١٢", "²"),
    *("99999999999w", "1h30m", "0s", "52w", "53w", "18:00", "tomorrow", "mon", "T"),
    *("9999-12-31", "2026-02-30", "0001-01-01", "2099-12-31", "2100-01-01", "2026-11-22T09:00"),
    *("primary", "@alice", "schedule:primary", "policy:x", "user:", "service:", ":"),
    *("\x00", "\x07", "\x85", "\u202e", "\ud800", "🔥", "é", "\n", "\t", " ", "`", "*"),
]

# Beginnings of valid commands, so the rest of a command is reached too.
STARTS = [
    *("declare", "declare sev1", "sev", "status", "role ops", "role", "note", "resolve"),
    *("ack", "escalate", "resolve", "@alice", "<@U0BOB|bob>", "schedule:primary"),
    *("override primary alice", "override primary @bob until", "override cancel", "override"),
]


def hostile_text() -> st.SearchStrategy[str]:
    words = st.lists(st.sampled_from(TOKENS), max_size=8).map(" ".join)
    joined = st.lists(st.sampled_from(TOKENS), max_size=8).map("".join)
    huge = st.builds(
        lambda start, piece, times: f"{start} {piece * times}",
        st.sampled_from(TOKENS),
        st.text(min_size=1, max_size=3),
        st.integers(min_value=0, max_value=40_000),
    )
    numbers = st.builds(
        lambda start, number: f"{start} {number}",
        st.sampled_from(TOKENS),
        st.integers(min_value=-(10**40), max_value=10**40),
    )
    commands = st.builds(lambda start, rest: f"{start} {rest}", st.sampled_from(STARTS), words)
    return st.one_of(st.text(), words, joined, huge, numbers, commands)


def only_commands_or_parse_errors(parse: Callable[[], object]) -> object:
    try:
        return parse()
    except ParseError as error:
        assert len(str(error)) <= 4000
        assert "\x00" not in str(error)
        return None


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile_text())
def test_any_incident_text_is_a_command_or_a_parse_error(text: str) -> None:
    parsed = only_commands_or_parse_errors(lambda: grammar.parse(text, CONFIG))
    assert parsed is None or isinstance(parsed, grammar.Command)
    if isinstance(parsed, grammar.Declare):
        assert len(parsed.title) <= 200 and "\x00" not in parsed.title
    if isinstance(parsed, grammar.AddNote | grammar.Resolve):
        value = parsed.text if isinstance(parsed, grammar.AddNote) else parsed.summary
        assert len(value) <= 3000 and "\x00" not in value


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile_text())
def test_any_page_text_is_a_command_or_a_parse_error(text: str) -> None:
    parsed = only_commands_or_parse_errors(lambda: page_grammar.parse(text, PAGE_CONFIG))
    assert parsed is None or isinstance(parsed, page_grammar.PageCommand)
    if isinstance(parsed, page_grammar.Act):
        assert 1 <= parsed.page_id <= 2147483647
    if isinstance(parsed, page_grammar.Trigger):
        assert 0 < len(parsed.message) <= 1000 and "\x00" not in parsed.message
