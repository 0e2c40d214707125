"""The `/incident` grammar, parsed without any database or Slack call."""

from __future__ import annotations

import pytest

from bot.config import FileConfig, IncidentsSection, Person
from bot.slack import grammar
from bot.slack.grammar import ParseError

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
