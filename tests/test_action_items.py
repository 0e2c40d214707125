"""Action items: `/incident action`, `/incident actions` and its Done buttons, through signed
requests into the real app and the sandbox Slack; their facts and the draft's checklist."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from bot.app import Firebreak
from bot.config import FileConfig
from bot.incidents import service
from bot.people import Person
from bot.postmortem import actions
from bot.sandbox import SlackSandbox
from bot.slack import grammar
from bot.slack.grammar import ParseError
from tests.conftest import Slack, last_response_text

CONFIG = FileConfig(people={"dana": Person(slack="U0DANA")})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("action Write the runbook", grammar.AddAction("Write the runbook")),
        (
            "action Alert on queue depth <@U0BOB|bob> due 2026-12-01",
            grammar.AddAction("Alert on queue depth", "U0BOB", date(2026, 12, 1)),
        ),
        ("action Fix retries @dana", grammar.AddAction("Fix retries", "U0DANA")),
        (
            "action Add a dashboard due 2027-01-31",
            grammar.AddAction("Add a dashboard", None, date(2027, 1, 31)),
        ),
        ("actions", grammar.ListActions()),
        ("postmortem", grammar.Postmortem()),
        ("postmortem template:executive", grammar.Postmortem("executive")),
        ("postmortem done", grammar.PostmortemDone()),
        ("report", grammar.ShowReport()),
        ("report 30d", grammar.ShowReport(30)),
    ],
)
def test_parses(text: str, expected: grammar.Command) -> None:
    assert grammar.parse(text, CONFIG) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("action", "The action item has no text"),
        ("action Fix due 2026-13-01", "`2026-13-01` is not a date"),
        ("action Fix due tomorrow", "write the due date like `due 2026-12-01`"),
        ("action Fix @nobody", "is not a person I know"),
        ("actions all", "takes no arguments"),
        ("postmortem now", "Usage: `/incident postmortem [template:NAME]`"),
        ("postmortem template:../etc", "Usage"),
        ("report forever", "is not a period"),
        ("report 0d", "is not a period"),
    ],
)
def test_errors_say_what_was_wrong(text: str, message: str) -> None:
    with pytest.raises(ParseError) as error:
        grammar.parse(text, CONFIG)
    assert message in str(error.value)


def test_help_lists_the_new_commands() -> None:
    for usage in (
        "/incident action <text>",
        "/incident actions",
        "/incident postmortem [template:NAME]",
        "/incident postmortem done",
        "/incident report",
    ):
        assert usage in grammar.HELP


@pytest.fixture
def incident_channel(slack: Slack, sandbox: SlackSandbox, general: str) -> str:
    slack.run("declare sev2 Checkout latency above 2s", channel=general)
    channel = sandbox.channel_by_name("inc-1-checkout-latency-above-2s")
    assert channel is not None
    return channel.id


def facts(app: Firebreak) -> list[tuple[str, str, dict[str, Any]]]:
    with app.db.session_scope() as session:
        return [(e.kind, e.actor, e.data) for e in service.events(session, service.get(session, 1))]


def test_add_list_and_mark_done_after_the_incident(
    slack: Slack, sandbox: SlackSandbox, firebreak: Firebreak, incident_channel: str
) -> None:
    slack.run("action Alert on queue depth <@U0BOB|bob> due 2026-12-01", channel=incident_channel)
    slack.run("resolve", channel=incident_channel)
    slack.run("action Write the <!channel> runbook", channel=incident_channel, user="U0CAROL")
    assert facts(firebreak)[-1] == (
        "action_added",
        "U0CAROL",
        {"item": 2, "text": "Write the <!channel> runbook", "owner": None, "due": None},
    )
    posts = [m.text for m in sandbox.messages(incident_channel)]
    assert (
        ":ballot_box_with_check: <@U0ALICE> added action item A-1 for <@U0BOB>, due 2026-12-01: "
        "Alert on queue depth" in posts
    )
    assert any("&lt;!channel&gt;" in p for p in posts), "user text is escaped"

    slack.run("actions", channel=incident_channel)
    listing = sandbox.responses()[-1].payload
    buttons = [b["accessory"] for b in listing["blocks"] if "accessory" in b]
    assert [b["value"] for b in buttons] == ["1", "2"]
    assert listing.get("response_type", "ephemeral") == "ephemeral"

    slack.block_action("action_item_done", user="U0BOB", channel=incident_channel, value="1")
    slack.settle()
    assert facts(firebreak)[-1] == (
        "action_done",
        "U0BOB",
        {"item": 1, "text": "Alert on queue depth"},
    )
    updated = sandbox.responses()[-1].payload
    assert [b["accessory"]["value"] for b in updated["blocks"] if "accessory" in b] == ["2"]
    count = len(facts(firebreak))
    slack.block_action("action_item_done", user="U0BOB", channel=incident_channel, value="1")
    slack.settle()
    assert len(facts(firebreak)) == count, "a second click records nothing"
    with firebreak.db.session_scope() as session:
        items = actions.for_incident(session, 1)
        assert [(i.done, i.done_by) for i in items] == [(True, "U0BOB"), (False, None)]


def test_done_button_for_an_item_of_another_incident_is_refused(
    slack: Slack, sandbox: SlackSandbox, firebreak: Firebreak, incident_channel: str, general: str
) -> None:
    slack.run("action Mine", channel=incident_channel)
    slack.run("declare sev3 Other thing", channel=general, user="U0BOB")
    other = sandbox.channel_by_name("inc-2-other-thing")
    assert other is not None
    slack.block_action("action_item_done", user="U0BOB", channel=other.id, value="1")
    slack.settle()
    assert "not an action item of INC-2" in last_response_text(sandbox)
    with firebreak.db.session_scope() as session:
        assert not actions.for_incident(session, 1)[0].done


def test_no_items_yet_says_how_to_add_one(
    slack: Slack, sandbox: SlackSandbox, incident_channel: str
) -> None:
    slack.run("actions", channel=incident_channel)
    assert "no action items yet" in last_response_text(sandbox)
